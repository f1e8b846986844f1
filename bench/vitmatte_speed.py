"""ViTMatte's network against transformers' ``VitMatteForImageMatting`` on the CPU, at equal output.

    .venv/bin/python bench/vitmatte_speed.py [--size 1920x1080] [--rounds 3] [--threads 2] [--variant small]

The parent process makes transformers' model with the hub's configuration (``hustvl/vitmatte-small-
composition-1k`` / ``-base-``) and seeded, spread-out random weights (as ``tests/test_vitmatte_net.py``),
saves its state dict to a temporary folder, with a photo-like uint8 image and a trimap with a realistic
unknown band (a wavy blob's outline, ``--band`` pixels either side). Every measurement is one child
process, so that each side has its own peak RSS (``os.wait4``): ``hf`` loads the state dict into
transformers' model and encodes with ``VitMatteImageProcessor``; ``ours`` loads it strictly into
``mattecli.methods.vitmatte.net`` and folds the batch norms (as the loader does), and encodes with
``mattecli.methods.vitmatte.encode``. Each child runs a small warm-up forward, then one timed forward
at the full size under ``torch.inference_mode`` (the encoding is not timed), and saves its cropped
alpha. ``--keep-freed-memory`` makes both children keep freed heap memory for reuse
(``mattecli.runtime.allocator``, what the CLI does on the CPU); by default glibc's defaults. The
sides alternate (hf first in even rounds, ours first in odd ones); ``OMP_NUM_THREADS`` and
``torch.set_num_threads`` are ``--threads`` for both. Prints per-round seconds, the median ratio
transformers / ours, the peak RSS of each side (and its RSS before the forward), and the max / mean
|diff| of the alphas. Needs transformers (a test-only dependency).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

_ROOT = Path(__file__).resolve().parents[1]
_SIZES = {"small": (384, 6), "base": (768, 12)}


def _hf_config(variant: str):
    import transformers

    dim, heads = _SIZES[variant]
    backbone = transformers.VitDetConfig(
        num_channels=4,
        image_size=512,
        pretrain_image_size=224,
        patch_size=16,
        hidden_size=dim,
        num_attention_heads=heads,
        use_absolute_position_embeddings=True,
        use_relative_position_embeddings=True,
        window_size=14,
        window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10],
        residual_block_indices=[2, 5, 8, 11],
        out_features=["stage12"],
    )
    return transformers.VitMatteConfig(
        backbone_config=backbone,
        hidden_size=dim,
        convstream_hidden_sizes=[48, 96, 192],
        fusion_hidden_sizes=[256, 128, 64, 32],
    )


def _random_state(variant: str, seed: int) -> dict:
    """transformers' model's state dict, seeded and spread out (the alpha is not all 0 or 1)."""
    import transformers

    model = transformers.VitMatteForImageMatting(_hf_config(variant)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("position_embeddings"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        model.decoder.matting_head.matting_convs[3].weight.mul_(8.0)
    return model.state_dict()


def _scene(w: int, h: int, band: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like uint8 RGB image (gradients, texture, noise) and its trimap: a wavy blob, 128 within
    ``band`` pixels of its outline."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx, radius = 0.55 * h, 0.5 * w, 0.35 * min(h, w)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    outline = radius * (1 + 0.15 * np.sin(5 * theta) + 0.05 * np.sin(13 * theta + 1))
    signed = np.hypot(dy, dx) - outline  # < 0 inside
    bg = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 97 + yy / 61)], -1)
    fg = np.stack([0.6 + 0.3 * np.sin(xx / 7), 0.4 + 0.3 * np.cos(yy / 5), 0.3 + 0.2 * np.sin((xx + yy) / 11)], -1)
    alpha = np.clip(0.5 - signed / (2 * band), 0, 1)[..., None]
    image = (alpha * fg + (1 - alpha) * bg) * 255 + rng.normal(0, 6, (h, w, 3))
    trimap = np.where(signed < -band, 255, np.where(signed > band, 0, 128)).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), trimap


def _child(args) -> None:
    """One measured side: load, warm up, time one forward, save the alpha and the numbers."""
    torch.set_num_threads(args.threads)
    if args.keep_freed_memory:
        from mattecli.runtime.allocator import keep_freed_memory

        keep_freed_memory()
    work = Path(args.work)
    image = np.load(work / "image.npy")
    trimap = np.load(work / "trimap.npy")
    state = torch.load(work / "state.pt", weights_only=True)
    h, w = trimap.shape
    small_image, small_trimap = image[:256, :256], trimap[:256, :256]
    if args.child == "hf":
        import transformers

        model = transformers.VitMatteForImageMatting(_hf_config(args.variant)).eval()
        model.load_state_dict(state, strict=True)
        processor = transformers.VitMatteImageProcessor(
            do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3,
            do_pad=True, size_divisor=32,
        )  # fmt: skip

        def encode_(img, tri):
            return processor(images=img, trimaps=tri, return_tensors="pt")["pixel_values"]

        def forward(x):
            return model(pixel_values=x).alphas
    else:
        from mattecli.methods.vitmatte import net as vitmatte_net
        from mattecli.methods.vitmatte.encode import encode
        from mattecli.runtime.fold import fold_batchnorm

        model = getattr(vitmatte_net, f"vitmatte_{args.variant}")().eval()
        model.load_state_dict(state, strict=True)
        fold_batchnorm(model)

        def encode_(img, tri):
            return encode(img.astype(np.float32) / 255, tri)

        forward = model
    del state
    with torch.inference_mode():
        forward(encode_(small_image, small_trimap))  # warm-up: threads, allocator, kernels
        x = encode_(image, trimap)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        alpha = forward(x)
        seconds = time.perf_counter() - start
    np.save(work / f"alpha_{args.child}.npy", alpha[0, 0, :h, :w].float().numpy())
    (work / f"result_{args.child}.json").write_text(json.dumps({"seconds": seconds, "rss_before": rss_before}))


def _run_child(args, side: str, work: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(_ROOT))
    cmd = [sys.executable, __file__, "--child", side, "--work", str(work), "--threads", str(args.threads)]
    cmd += ["--variant", args.variant] + (["--keep-freed-memory"] if args.keep_freed_memory else [])
    proc = subprocess.Popen(cmd, env=env, cwd=_ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"the {side} child failed ({proc.returncode})")
    result = json.loads((work / f"result_{side}.json").read_text())
    result["peak_rss"] = usage.ru_maxrss * 1024  # Linux: kilobytes
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1920x1080", help="WxH of the image")
    parser.add_argument("--band", type=int, default=24, help="unknown band: pixels either side of the outline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variant", choices=sorted(_SIZES), default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="glibc keeps freed memory in both children (as the CLI does)"
    )
    parser.add_argument("--child", choices=["hf", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="vitmatte_speed_") as tmp:
        work = Path(tmp)
        image, trimap = _scene(w, h, args.band, args.seed)
        np.save(work / "image.npy", image)
        np.save(work / "trimap.npy", trimap)
        torch.save(_random_state(args.variant, args.seed), work / "state.pt")
        print(
            f"ViTMatte-{args.variant[0].upper()} {w}x{h} ({w * h / 1e6:.1f} MP, unknown {np.mean(trimap == 128):.1%}),"
            f" {args.threads} threads, torch {torch.__version__}"
            + (", freed memory kept" if args.keep_freed_memory else ""),
            flush=True,
        )
        times: dict[str, list[float]] = {"hf": [], "ours": []}
        rss: dict[str, list[tuple[int, int]]] = {"hf": [], "ours": []}
        diffs = []
        for r in range(args.rounds):
            for side in ("hf", "ours") if r % 2 == 0 else ("ours", "hf"):
                result = _run_child(args, side, work)
                times[side].append(result["seconds"])
                rss[side].append((result["rss_before"], result["peak_rss"]))
            a, b = np.load(work / "alpha_hf.npy"), np.load(work / "alpha_ours.npy")
            diff = np.abs(a.astype(np.float64) - b)
            diffs.append((diff.max(), diff.mean()))
            print(
                f"round {r}: transformers {times['hf'][-1]:.2f} s, ours {times['ours'][-1]:.2f} s, "
                f"ratio {times['hf'][-1] / times['ours'][-1]:.2f}; max |diff| {diff.max():.2e}, "
                f"alpha std {a.std():.3f}",
                flush=True,
            )
    ratios = [t / o for t, o in zip(times["hf"], times["ours"], strict=True)]
    gib = 1 << 30
    print(f"median transformers / ours: {statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})")
    for side, label in (("hf", "transformers"), ("ours", "ours")):
        before = max(b for b, _ in rss[side]) / gib
        peak = max(p for _, p in rss[side]) / gib
        print(
            f"{label}: median {statistics.median(times[side]):.2f} s, best {min(times[side]):.2f} s; "
            f"peak RSS {peak:.2f} GiB (before the forward {before:.2f} GiB)"
        )
    print(f"max |diff| {max(d[0] for d in diffs):.2e}, mean |diff| {max(d[1] for d in diffs):.2e}")


if __name__ == "__main__":
    main()
