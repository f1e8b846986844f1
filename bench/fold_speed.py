"""Batch-norm folding's and Winograd's speed-ups per network, at equal inputs (issue 22, SHM and MSIA).

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/fold_speed.py

Each variant's network with seeded random weights whose batch norms are calibrated (tests/helpers.py),
plain, folded (``mattecli.runtime.fold.fold_batchnorm``) and folded with its large 3x3 convolutions
on Winograd's path (``mattecli.runtime.winograd.use_winograd``), all channels-last as the processors
run them; three rounds, the order rotating; prints a markdown row per network: best seconds of each,
the medians over rounds of plain / folded and folded / Winograd (with the per-round ratios), and
the largest difference of the Winograd network's outputs from the folded one's, relative to the
output's scale.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import copy
import time

import torch
from helpers import calibrate, random_net

from mattecli.runtime.fold import fold_batchnorm  # noqa: E402 (after the tests path)
from mattecli.runtime.winograd import use_winograd
from mattecli.weights import get_architecture


def _time(nets: dict, x, rounds: int = 3) -> dict[str, list[float]]:
    """Seconds per forward of each network, the order alternating from round to round."""
    times: dict[str, list[float]] = {name: [] for name in nets}
    order = list(nets)
    with torch.inference_mode():
        for net in nets.values():
            net(x)  # warm-up
        for r in range(rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                start = time.perf_counter()
                nets[name](x)
                times[name].append(time.perf_counter() - start)
    return times


def _median_ratio(times: dict, num: str, den: str) -> str:
    ratios = [p / f for p, f in zip(times[num], times[den], strict=True)]
    return f"{sorted(ratios)[len(ratios) // 2]:.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"


def _outputs(out) -> list[torch.Tensor]:
    return [t.float() for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]


def main() -> None:
    torch.set_num_threads(1)
    print(
        "| network | input | plain (s) | folded (s) | + Winograd (s) | plain / folded | folded / Winograd "
        "| convs on Winograd | max diff (rel.) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for variant, (h, w) in (("shm-mindspore", (320, 320)), ("shm", (512, 512)), ("msia", (512, 512))):
        net = random_net(get_architecture(variant).build(), 3).eval()
        x = torch.randn(1, 3, h, w)
        calibrate(net, x)
        plain = copy.deepcopy(net).to(memory_format=torch.channels_last)
        fold_batchnorm(net)
        folded = net.to(memory_format=torch.channels_last)
        wino = copy.deepcopy(folded)
        converted = use_winograd(wino)
        xc = x.contiguous(memory_format=torch.channels_last)
        t = _time({"plain": plain, "folded": folded, "winograd": wino}, xc)
        with torch.inference_mode():
            a, b = _outputs(folded(xc)), _outputs(wino(xc))
        dev = max(float((p - q).abs().max()) / max(1.0, float(p.abs().max())) for p, q in zip(a, b, strict=True))


        print(
            f"| {variant} | {w}x{h} | {min(t['plain']):.3f} | {min(t['folded']):.3f} "
            f"| {min(t['winograd']):.3f} | {_median_ratio(t, 'plain', 'folded')} "
            f"| {_median_ratio(t, 'folded', 'winograd')} | {converted} | {dev:.1e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
