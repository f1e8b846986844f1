"""Freed memory kept for reuse against handed back: SIM's matting network, time and peak RSS.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python bench/allocator_speed.py [--size 1152x1728] [--rounds 2]

Each side runs in its own child process (glibc's settings cannot be undone in a process): the
network with random weights (folded, channels-last, Winograd, as ``matte`` loads it), random
inputs with the whole decoder tail, one warm-up call, then the timed call. ``kept`` calls
:func:`mattecli.runtime.allocator.keep_freed_memory` first (what a CPU run without
``--max-memory`` does); ``released`` leaves glibc as it is (a run under ``--max-memory``).
The sides alternate their order from round to round; the ratio is taken within each round.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def child(mode: str, h: int, w: int) -> None:
    import torch

    from mattecli.methods.sim.net import SIMNet
    from mattecli.runtime.allocator import keep_freed_memory
    from mattecli.runtime.fold import fold_batchnorm
    from mattecli.runtime.winograd import use_winograd

    if mode == "kept":
        keep_freed_memory()
    torch.manual_seed(0)
    net = SIMNet().eval().fold_weight_standardization()
    fold_batchnorm(net)
    net = net.to(memory_format=torch.channels_last)
    use_winograd(net)
    args = [torch.rand(1, c, h, w).contiguous(memory_format=torch.channels_last) for c in (3, 2, 3, 6, 20)]
    with torch.inference_mode():
        net(*args)
        t = time.perf_counter()
        net(*args)
        dt = time.perf_counter() - t
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    print(json.dumps({"mode": mode, "seconds": dt, "peak": hwm}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1152x1728", help="HxW of the inputs")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "H", "W"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return
    h, w = (int(v) for v in args.size.lower().split("x"))
    print(f"SIM matting network at {h}x{w}, second call; peak RSS of the child process\n")
    print("| round | kept (s) | released (s) | released / kept | peak RSS kept / released (GB) |")
    print("|---|---:|---:|---:|---:|")
    for r in range(args.rounds):
        order = ("kept", "released") if r % 2 == 0 else ("released", "kept")
        res = {}
        for mode in order:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(h), str(w)], capture_output=True, text=True, check=True
            )
            res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        k, rel = res["kept"], res["released"]
        print(
            f"| {r} | {k['seconds']:.2f} | {rel['seconds']:.2f} | {rel['seconds'] / k['seconds']:.2f} "
            f"| {k['peak'] / 1e9:.2f} / {rel['peak'] / 1e9:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
