"""Batch-norm folding's speed-up per network, at equal inputs (issue 22, SHM and MSIA).

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/fold_speed.py

Each variant's network with seeded random weights whose batch norms are calibrated (tests/helpers.py),
plain and folded (``mattecli.runtime.fold.fold_batchnorm``), both channels-last as the processors run
them; three rounds alternating which goes first; prints a markdown row per network: best seconds of
each, and the median over rounds of plain / folded (with the per-round ratios).
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
from mattecli.weights import get_architecture


def _time(nets: dict, x, rounds: int = 3) -> dict[str, list[float]]:
    """Seconds per forward of each network, the order alternating from round to round."""
    times: dict[str, list[float]] = {name: [] for name in nets}
    order = list(nets)
    with torch.inference_mode():
        for net in nets.values():
            net(x)  # warm-up
        for r in range(rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                nets[name](x)
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    torch.set_num_threads(1)
    for variant, (h, w) in (("shm-mindspore", (320, 320)), ("shm", (512, 512)), ("msia", (512, 512))):
        net = random_net(get_architecture(variant).build(), 3).eval()
        x = torch.randn(1, 3, h, w)
        calibrate(net, x)
        plain = copy.deepcopy(net).to(memory_format=torch.channels_last)
        fold_batchnorm(net)
        folded = net.to(memory_format=torch.channels_last)
        t = _time({"plain": plain, "folded": folded}, x.contiguous(memory_format=torch.channels_last))
        ratios = [p / f for p, f in zip(t["plain"], t["folded"], strict=True)]
        per_round = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"| {variant} | {w}x{h} | {min(t['plain']):.3f} | {min(t['folded']):.3f} "
            f"| {sorted(ratios)[len(ratios) // 2]:.2f} ({per_round}) |",
            flush=True,
        )


if __name__ == "__main__":
    main()
