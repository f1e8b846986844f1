"""Throughput with 1 vs N worker processes (`--device cpu,cpu,...` or `cuda:0,cuda:1,...`).

    python bench/scaling.py [--n 12] [--size 960x720] [--method aim] [--devices cpu,cpu]

Writes N synthetic photos, installs random weights for deep methods, and times `mattecli matte`
(a real subprocess, as a user runs it) once on a single device and once with one worker per
listed device. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument("--size", default="960x720")
    parser.add_argument("--method", default="aim")
    parser.add_argument("--devices", default="cpu,cpu")
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    devices = args.devices.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        (root / "in").mkdir()
        for i in range(args.n):
            img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
            cv2.imwrite(str(root / "in" / f"{i:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        env = dict(os.environ, HF_HOME=str(root / "hf"))
        if args.method == "aim":
            import torch

            from mattecli.methods.aim.net import AimNet

            torch.manual_seed(0)
            torch.save({"state_dict": AimNet().state_dict()}, root / "aim.pth")
            subprocess.run(
                [sys.executable, "-m", "mattecli", "weights", "import", "aim", str(root / "aim.pth")],
                env=env,
                check=True,
                capture_output=True,
            )
        rows = []
        for label, device in (("1 process", devices[0]), (f"{len(devices)} processes", args.devices)):
            out = root / label.replace(" ", "_")
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mattecli",
                    "matte",
                    "-m",
                    args.method,
                    str(root / "in"),
                    str(out),
                    "--device",
                    device,
                    "-q",
                ],
                env=env,
                check=True,
            )
            rows.append((label, device, time.perf_counter() - start))
    print(f"{args.n} photos {w}x{h}, matte --method {args.method}, {os.cpu_count()} CPU cores\n")
    print("| workers | --device | seconds (incl. start-up) | images/s |\n|---|---|---:|---:|")
    for label, device, seconds in rows:
        print(f"| {label} | {device} | {seconds:.1f} | {args.n / seconds:.2f} |")


if __name__ == "__main__":
    main()
