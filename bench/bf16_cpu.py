"""``--precision bf16`` on the CPU against fp32: speed-up and deviation, per deep method, through the CLI.

    python bench/bf16_cpu.py WORK [--image IMG] [--rounds 2] [--threads 2]

``WORK`` is a folder prepared by ``bench/layout_parity.py prepare`` (seeded random networks of every
variant with calibrated batch norms, saved in mattecli's layout, and the inputs). The weights are
imported into a private ``HF_HOME`` under ``WORK/bf16-home`` with ``mattecli weights import`` and
every run is offline (``MATTECLI_OFFLINE=1``).

Each case is one ``mattecli matte ... --json --bit-depth 16 --device cpu`` call on two copies of the
image (default: ``WORK/images/photo.png``, a 720x480 crop of a real photo, with its elliptic trimap
for the trimap methods); its time is the second file's ``seconds`` from ``--json`` (steady state,
decode and write included). fp32 and bf16 alternate which goes first from one round to the next, and
the speed-up is taken within each round (``fp32 seconds / bf16 seconds``), then the median over
rounds. The deviation compares the bf16 alpha with the fp32 alpha of the same round (16-bit PNGs):
mean and max absolute difference over the image and the share of pixels off by more than 1/255.

Random weights: timings are those of the real networks; deviations are indicative only (trained
weights have other activation ranges), which is why the default stays fp32 unless bf16 is within the
project's equality tolerance (mean |diff| <= 1e-3).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

VARIANTS = ("aim", "sim-comp1k", "sim-classifier", "shm-mindspore", "shm", "msia")
#: case -> (method arguments, needs the trimap)
CASES = {
    "aim (hybrid)": (["-m", "aim"], False),
    "sim": (["-m", "sim"], True),
    "shm (mindspore)": (["-m", "shm"], False),
    "shm (paper)": (["-m", "shm", "--variant", "shm"], False),
    "msia": (["-m", "msia"], False),
}


def _env(home: Path, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATTECLI_"))}
    env.update(HF_HOME=str(home), MATTECLI_OFFLINE="1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _cli(args: list, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "mattecli", *map(str, args)], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"mattecli {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done


def _read16(path: Path) -> np.ndarray:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16, path
    return raw.astype(np.float64) / 65535.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("--image", type=Path, help="image (default WORK/images/photo.png)")
    p.add_argument("--trimap", type=Path, help="its trimap (default WORK/trimaps/<stem>.png)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    args = p.parse_args()
    work = args.work.resolve()
    image = (args.image or work / "images" / "photo.png").resolve()
    trimap = (args.trimap or work / "trimaps" / f"{image.stem}.png").resolve()
    env = _env(work / "bf16-home", args.threads)
    for v in VARIANTS:
        _cli(["weights", "import", v, work / "weights" / f"{v}.safetensors"], env)
    inputs = work / "bf16-in"
    (inputs / "images").mkdir(parents=True, exist_ok=True)
    (inputs / "trimaps").mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):  # two copies: the second file's time is the steady state
        (inputs / "images" / f"{name}{image.suffix}").write_bytes(image.read_bytes())
        (inputs / "trimaps" / f"{name}.png").write_bytes(trimap.read_bytes())
    print(f"image {image} ({args.threads} threads, {args.rounds} rounds); load before {os.getloadavg()}", file=sys.stderr)
    rows = []
    for case in args.cases.split(","):
        method_args, needs_trimap = CASES[case]
        seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
        ratios, devs = [], []
        for r in range(args.rounds):
            order = ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")
            outs = {}
            for precision in order:
                slug = "".join(c if c.isalnum() else "-" for c in case).strip("-")
                out = work / "bf16-out" / f"{slug}-{precision}-{r}"
                cmd = ["matte", inputs / "images", out, *method_args, "--precision", precision]
                cmd += ["--bit-depth", "16", "--device", "cpu", "--json", "--overwrite"]
                if needs_trimap:
                    cmd += ["--trimap", inputs / "trimaps"]
                done = _cli(cmd, env)
                per_file = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
                seconds[precision].append(float(per_file[-1]["seconds"]))
                outs[precision] = _read16(out / "b.png")
                print(f"{case} round {r + 1} {precision}: {seconds[precision][-1]:.2f} s", file=sys.stderr)
            ratios.append(seconds["fp32"][-1] / seconds["bf16"][-1])
            d = np.abs(outs["bf16"] - outs["fp32"])
            devs.append((d.mean(), d.max(), (d > 1 / 255).mean()))
        mean, mx, share = (max(x) for x in zip(*devs, strict=True))
        rows.append(
            f"| {case} | {statistics.median(seconds['fp32']):.2f} | {statistics.median(seconds['bf16']):.2f} "
            f"| **{statistics.median(ratios):.2f}** ({', '.join(f'{x:.2f}' for x in ratios)}) "
            f"| {mean:.2e} | {mx:.2e} | {share:.2%} | {'yes' if mean <= 1e-3 else 'no'} |"
        )
    print(f"load after {os.getloadavg()}\n", file=sys.stderr)
    print("| case | fp32 (s) | bf16 (s) | speed-up fp32 / bf16 (per round) | mean abs diff | max abs diff "
          "| pixels > 1/255 | within 1e-3 mean |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
