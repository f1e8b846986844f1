"""Seconds and peak memory of every method on one image, each in its own process.

    python bench/methods_cpu.py [IMAGE] [--trimap T] [--device cpu] [--repeat 3]

Deep methods run on random weights in our own layout (timings do not depend on weight
values); the image defaults to examples/images/fluffy.png with its trimap. Prints a markdown
table: method, variant, first call (model build + weights load + first forward), best of the
following calls, and the process's peak RSS (or CUDA max allocated).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("cf", None),
    ("knn", None),
    ("aim", "aim"),
    ("sim", "sim-comp1k"),
    ("shm", "shm-mindspore"),
    ("shm", "shm"),
    ("msia", "msia"),
]


def _child(
    phase: str, method: str, variant: str | None, image: str, trimap: str, device: str, repeat: int, tmp: str
) -> dict:
    import torch
    from huggingface_hub import constants as hf_constants
    from safetensors.torch import save_file

    hf_constants.HF_HUB_CACHE = str(Path(tmp) / "hub")
    from mattecli import io, methods
    from mattecli.methods.base import MethodOptions
    from mattecli.weights import get_architecture, import_checkpoint

    spec = methods.get(method)
    if phase == "import":  # its own process, so the timed one's peak memory is inference only
        variants = [variant] + [c.name for c in spec.companions] if variant else []
        for v in variants:
            torch.manual_seed(0)
            state = {k: t.contiguous() for k, t in get_architecture(v).build().state_dict().items()}
            path = Path(tmp) / f"{v}.safetensors"
            save_file(state, str(path))
            import_checkpoint(v, path)
        return {}
    img = io.read_image(image)
    tri = io.read_trimap(trimap, shape=img.shape[:2]) if spec.capabilities.takes_trimap else None
    start = time.perf_counter()
    matter = spec.create(MethodOptions(device=device, variant=variant))
    matter.predict(img, tri)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        matter.predict(img, tri)
        times.append(time.perf_counter() - start)
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    cuda = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return {"first": first, "best": min(times), "rss": hwm, "cuda": cuda}


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(_child(*json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("image", nargs="?", default=str(ROOT / "examples" / "images" / "fluffy.png"))
    parser.add_argument("--trimap", default=str(ROOT / "examples" / "trimaps" / "fluffy.png"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import cv2
    import torch

    h, w = cv2.imread(args.image).shape[:2]
    print(
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
        f"image {Path(args.image).name} {w}x{h}\n"
    )
    print("| method | variant | first call (s) | best of next (s) | peak RSS (MiB) | CUDA max alloc (MiB) |")
    print("|---|---|---:|---:|---:|---:|")
    for method, variant in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            for phase in ("import", "run"):
                payload = json.dumps([phase, method, variant, args.image, args.trimap, args.device, args.repeat, tmp])
                proc = subprocess.run([sys.executable, __file__, "--child", payload], capture_output=True, text=True)
                if proc.returncode:
                    break
        if proc.returncode:
            print(f"| {method} | {variant or '-'} | failed: {proc.stderr.strip().splitlines()[-1]} | | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        cuda = f"{r['cuda']:.0f}" if r["cuda"] is not None else "-"
        print(f"| {method} | {variant or '-'} | {r['first']:.2f} | {r['best']:.2f} | {r['rss']:.0f} | {cuda} |")


if __name__ == "__main__":
    main()
