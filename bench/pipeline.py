"""Folder throughput: decoding/writing overlapped with the model (Stages) vs one file after another.

    python bench/pipeline.py [--n 16] [--size 1600x1200] [--method aim]

Writes N synthetic JPEG photos to a temporary folder, installs random AIM weights (timings do
not depend on weight values) and mattes the folder twice through `mattecli.pipelines.matte.matte_files`:
once with the pipelined runner (`--jobs` I/O threads) and once with every stage on one thread
(`mattecli.pipelines.runner.run_jobs` replaced here by a stage-after-stage version).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch


def _photos(folder: Path, n: int, w: int, h: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 3)
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])


def _install_random_aim(root: Path) -> None:
    from huggingface_hub import constants as hf_constants

    from mattecli.methods.aim.net import AimNet
    from mattecli.weights import import_checkpoint

    hf_constants.HF_HUB_CACHE = str(root / "hub")
    torch.manual_seed(0)
    path = root / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": AimNet().state_dict()}, path)
    import_checkpoint("aim", path)


def _run(folder: Path, out: Path, jobs: int, pipelined: bool) -> float:
    from mattecli.pipelines import runner
    from mattecli.pipelines.matte import MatteSettings, matte_files

    real = runner.run_jobs
    if not pipelined:  # the same stages, run in order on one thread

        def sequential(jobs_, work, **kw):
            def one(job):
                inputs = work.load(job)
                return work.save(job, work.compute(job, inputs))

            return real(jobs_, one, overwrite=kw.get("overwrite", False), method=kw.get("method"))

        runner.run_jobs = sequential
    try:
        _, results = matte_files([folder], out, method="aim", settings=MatteSettings(io_workers=jobs, cutout=True))
        start = time.perf_counter()
        statuses = [r["status"] for r in results]
        seconds = time.perf_counter() - start
    finally:
        runner.run_jobs = real
    assert statuses.count("ok") == len(statuses), statuses
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--size", default="1600x1200")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _photos(root / "in", args.n, w, h)
        _install_random_aim(root)
        _run(root / "in", root / "warm", args.jobs, True)  # warm-up: model load, numba, allocator
        seq = _run(root / "in", root / "seq", args.jobs, False)
        pipe = _run(root / "in", root / "pipe", args.jobs, True)
    print(f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print(f"{args.n} JPEG photos {w}x{h}, matte --method aim --cutout (hybrid)")
    print("| runner | seconds | images/s |\n|---|---:|---:|")
    print(f"| one thread, stage after stage | {seq:.1f} | {args.n / seq:.2f} |")
    print(f"| pipelined, --jobs {args.jobs} | {pipe:.1f} | {args.n / pipe:.2f} |")


if __name__ == "__main__":
    main()
