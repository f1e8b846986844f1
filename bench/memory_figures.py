"""The declared memory figures of every method variant (``Footprint`` in each spec), measured on the CPU.

    python bench/memory_figures.py prepare WORK            # random calibrated weights into WORK/hf-home, scenes
    python bench/memory_figures.py measure WORK [--only REGEX]
    python bench/memory_figures.py table WORK              # bench/memory_figures.md (and the Footprint lines)

A run's memory plan (``mattecli/runtime/memory.py``) is made of three figures per variant, declared in
its spec so that the same image and options give the same plan on every machine:

* ``passes``: bytes per input pixel of each network pass at its peak (the activations, the pass's own
  encodings). Measured in a child process as the old start-up probes did, once, here: the pass on
  zero inputs of two square sizes (Winograd's bands as on a large image), peak RSS reset before each
  (``/proc/self/clear_refs``), the slope of the peak against the pixel count (fixed costs drop out);
  the larger of two repetitions.
* ``image``: bytes per image pixel held at full size beside the passes (the decoded image, full-size
  maps, blend accumulators, the output and its PNG encoding). Measured on whole ``mattecli matte``
  runs in child processes: ``--strategy tiled`` with one fixed tile size on two image sizes, the slope
  of the peak RSS (``wait4``) against the image's pixel count.
* ``fixed``: what the process holds once the method is loaded (interpreter, libraries, weights and
  their transformed copies): the peak of the same command on a 64 x 96 image.

Every child runs with glibc's default heap (as under ``--max-memory``, where the figures are used to
stay under a cap), two threads, ``--device cpu``, random calibrated weights of the real architectures
(``bench/layout_parity.py``) imported into a private ``HF_HOME``, and a synthetic photo-like scene
(``bench/memory_cap.py``). Results are appended to ``WORK/figures.jsonl``; ``table`` rounds them up
(passes to 50 B/px, image to 4 B/px, fixed to 64 MiB) into ``bench/memory_figures.md``, whose last
section is what the specs declare.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
MiB = 1 << 20

#: image sizes of the ``image`` slope (h, w), and the fixed tile of those runs
SIZES = ((640, 960), (1280, 1920))
#: larger sizes where a method's small-image peak is its loading, not its run (AIM: both the 0.6 MP runs
#: peaked while loading, which made the slope meaningless)
LARGE_SIZES = ((1280, 1920), (2160, 3840))
TINY = (64, 96)
TILE = 512

#: variant -> (method, CLI arguments besides the image, {pass name: (input channels, how to run it)})
VARIANTS: dict[str, tuple[str, list[str], dict[str, tuple[int, str]]]] = {
    "aim": ("aim", [], {"glance": (3, "aim-glance"), "focus": (3, "aim-focus")}),
    "sim-comp1k": ("sim", ["--trimap", "{tri}"], {"whole": (0, "sim-whole"), "tile": (34, "sim-tile")}),
    "shm-mindspore": ("shm", [], {"m_net": (6, "shm-m-net")}),
    "shm": ("shm", ["--variant", "shm"], {"m_net": (6, "shm-m-net")}),
    "msia": ("msia", [], {"whole": (3, "forward")}),
    # the authors' hub files are pinned by sha256: random weights are given with --weights, not imported
    "vitmatte-s-comp1k": ("vitmatte", ["--trimap", "{tri}", "--weights", "{weights}"], {"whole": (4, "forward")}),
    "vitmatte-b-comp1k": (
        "vitmatte",
        ["--variant", "vitmatte-b-comp1k", "--trimap", "{tri}", "--weights", "{weights}"],
        {"whole": (4, "forward")},
    ),
    "cf": ("cf", ["--trimap", "{tri}"], {}),
    "knn": ("knn", ["--trimap", "{tri}"], {}),
}
#: variants whose strategies keep different full-size maps: strategy -> extra arguments of its image
#: runs. AIM's glance (1/4 scale, capped at 1600 px a side) would otherwise grow with the image between
#: the two sizes and count as full-size memory: ``--scales`` makes it (and hybrid's focus) negligible.
IMAGE_RUNS: dict[str, dict[str, list[str]]] = {
    "aim": {"tiled": ["--scales", "0.05,1"], "hybrid": ["--scales", "0.05,0.05"]},
}
#: variants measured at LARGE_SIZES
LARGE = {"aim"}
WEIGHTS = ("aim", "sim-comp1k", "sim-classifier", "shm-mindspore", "shm", "msia")


def _env(work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATTECLI_"))}
    env.update(HF_HOME=str(work / "hf-home"), MATTECLI_OFFLINE="1", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    env["MATTECLI_KEEP_FREED_MEMORY"] = "0"
    return env


# ----------------------------------------------------------------------------- prepare
def prepare(work: Path) -> None:
    import cv2
    import numpy as np
    from layout_parity import _nets_and_calibrate
    from memory_cap import _scene

    for h, w in (TINY, *SIZES, *LARGE_SIZES):
        d = work / f"{w}x{h}"
        if (d / "images" / "scene.png").is_file():
            continue
        (d / "images").mkdir(parents=True, exist_ok=True)
        (d / "trimaps").mkdir(parents=True, exist_ok=True)
        image, trimap = _scene(h, w)
        cv2.imwrite(str(d / "images" / "scene.png"), image)
        cv2.imwrite(str(d / "trimaps" / "scene.png"), trimap)
        print(f"{w}x{h}: {np.count_nonzero(trimap == 128) / trimap.size:.1%} unknown", file=sys.stderr)
    weights = work / "weights"
    if not all((weights / f"{v}.safetensors").is_file() for v in WEIGHTS):
        _nets_and_calibrate(weights)
    for v in WEIGHTS:
        _import(work, v, weights / f"{v}.safetensors")
    _vitmatte_weights(work)


def _import(work: Path, variant: str, path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mattecli", "weights", "import", variant, str(path)],
        env=_env(work),
        capture_output=True,
        text=True,
    )
    if done.returncode and "already" not in done.stderr:
        raise SystemExit(f"weights import {variant} failed: {done.stderr}")


def _vitmatte_weights(work: Path) -> None:
    """Random ViTMatte weights in the hub's layout (our network's keys are the hub's), used with ``--weights``."""
    import torch
    from safetensors.torch import save_file

    try:
        from mattecli.methods.vitmatte import net as vnet
    except ImportError:
        return
    for variant, build in (("vitmatte-s-comp1k", vnet.vitmatte_small), ("vitmatte-b-comp1k", vnet.vitmatte_base)):
        path = work / "weights" / f"{variant}.safetensors"
        if not path.is_file():
            torch.manual_seed(0)
            net = build().eval()
            save_file({k: t.contiguous() for k, t in net.state_dict().items()}, str(path))


# ----------------------------------------------------------------------------- children
_PASS_CHILD = r"""
import json, sys
import numpy as np
import torch
from mattecli import methods
from mattecli.methods.base import EngineOptions, MethodOptions

method, variant, kind, channels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
weights = sys.argv[5] if len(sys.argv) > 5 else None
spec = methods.get(method)
options = MethodOptions(device="cpu", variant=None if variant == spec.variants[0].name else variant,
                        weights=weights, download=False, engine=EngineOptions(max_memory=1 << 50))
proc = spec.create(options).processor
stride = max(spec.stride, 8)

def trim():
    import ctypes
    ctypes.CDLL("libc.so.6").malloc_trim(0)

def status(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))

def scene(side):
    rng = np.random.default_rng(0)
    image = rng.random((side, side, 3), dtype=np.float32)
    tri = np.zeros((side, side), np.uint8)
    tri[:, side // 2:] = 255
    tri[:, side // 2 - side // 16: side // 2 + side // 16] = 128  # 12.5% unknown, as a portrait's hair band
    return image, tri

def run(side):
    from mattecli.runtime.winograd import single_row_bands
    x = torch.zeros(1, max(channels, 1), side, side)
    with torch.inference_mode(), single_row_bands():
        if kind == "aim-glance":
            proc._forward(x, focus=False)
        elif kind == "aim-focus":
            proc._forward(x, glance=False)
        elif kind == "sim-tile":
            from mattecli.methods.sim.processor import _SPLIT
            proc._forward(list(x.split(_SPLIT, dim=1)))
        elif kind == "sim-whole":
            image, tri = scene(side)
            proc._whole(image, tri, False)
        elif kind == "shm-m-net":
            proc.net.m_net(x)
        else:
            proc.forward(x)

def peak(side):
    trim()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = status("VmRSS")
    run(side)
    return status("VmHWM") - base

small, large = (256, 640)
small -= small % stride
large -= large % stride
run(large)  # warm caches and lazily built buffers
slopes = []
for _ in range(2):
    a, b = peak(small), peak(large)
    slopes.append((b - a) / (large * large - small * small))
print(json.dumps({"bytes_per_pixel": max(slopes), "slopes": slopes}))
"""


def _pass(work: Path, method: str, variant: str, kind: str, channels: int) -> dict:
    weights = work / "weights" / f"{variant}.safetensors"
    extra = [str(weights)] if method == "vitmatte" else []
    done = subprocess.run(
        [sys.executable, "-c", _PASS_CHILD, method, variant, kind, str(channels), *extra],
        env=_env(work),
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode:
        raise RuntimeError(f"{variant} {kind}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cli_run(
    work: Path, variant: str, size: tuple[int, int], strategy: str, tile: int | None, more: list[str] | None = None
) -> dict:
    """One ``matte`` run in a fresh process (its own peak: ``RUSAGE_CHILDREN`` of a fresh grandchild)."""
    method, extra, _ = VARIANTS[variant]
    extra = [*extra, *(more or [])]
    h, w = size
    d = work / f"{w}x{h}"
    out = work / "out" / f"{variant}-{w}x{h}-{strategy}-{tile}"
    args = ["matte", str(d / "images"), str(out), "-m", method, "--device", "cpu", "--max-memory", "1T"]
    weights = work / "weights" / f"{variant}.safetensors"
    args += ["--overwrite", "--strategy", strategy] + [a.format(tri=d / "trimaps", weights=weights) for a in extra]
    if tile is not None:
        args += ["--tile-size", str(tile)]
        if method not in ("cf", "knn"):
            args += ["--batch-size", "1"]
    code = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-m', 'mattecli', *sys.argv[1:]], capture_output=True, text=True)\n"
        "print(json.dumps({'rc': p.returncode, 'err': p.stderr[-2000:], "
        "'peak': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], env=_env(work), capture_output=True, text=True, cwd=ROOT)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if row["rc"]:
        raise RuntimeError(f"{variant} {strategy} {w}x{h}: exit {row['rc']}: {row['err']}")
    return {"peak": row["peak"], "seconds": round(time.perf_counter() - start, 1), "pixels": h * w}


def measure(work: Path, only: str | None) -> None:
    results = work / "figures.jsonl"
    for variant, (method, _, passes) in VARIANTS.items():
        if only and not re.search(only, variant):
            continue
        if method == "vitmatte" and not (work / "weights" / f"{variant}.safetensors").is_file():
            print(f"{variant}: no weights prepared (network missing?), skipped", file=sys.stderr)
            continue
        row: dict = {"variant": variant, "method": method, "passes": {}}
        for name, (channels, kind) in passes.items():
            row["passes"][name] = _pass(work, method, variant, kind, channels)
            print(f"{variant} {name}: {row['passes'][name]['bytes_per_pixel']:.0f} B/px", file=sys.stderr, flush=True)
        tile = 384 if method in ("cf", "knn") else TILE
        tiny = _cli_run(work, variant, TINY, "whole", None)
        row.update(tiny=tiny, tile=tile, fixed=tiny["peak"], runs={})
        sizes = LARGE_SIZES if variant in LARGE else SIZES
        for strategy, more in IMAGE_RUNS.get(variant, {"tiled": []}).items():
            size_tile = tile if strategy == "tiled" else None
            a = _cli_run(work, variant, sizes[0], strategy, size_tile, more)
            b = _cli_run(work, variant, sizes[1], strategy, size_tile, more)
            row["runs"][strategy] = [a, b]
        slopes = {k: (b["peak"] - a["peak"]) / (b["pixels"] - a["pixels"]) for k, (a, b) in row["runs"].items()}
        row["image"] = slopes if len(slopes) > 1 else next(iter(slopes.values()))
        a, b = row["tiled"] = next(iter(row["runs"].values()))
        row["machine"] = f"{os.uname().machine}, {os.cpu_count()} CPUs"
        print(
            f"{variant}: fixed {row['fixed'] / MiB:.0f} MiB, image {row['image']} B/px "
            f"({a['peak'] / MiB:.0f} -> {b['peak'] / MiB:.0f} MiB)",
            file=sys.stderr,
            flush=True,
        )
        with results.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------- table
def _up(value: float, grain: float) -> float:
    return -(-value // grain) * grain


def table(work: Path, out: Path) -> str:
    rows = {}
    for line in (work / "figures.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[r["variant"]] = r
    lines = [
        "# Declared memory figures (bench/memory_figures.py)",
        "",
        "Measured once on the CPU in fp32 and declared in each spec (`Footprint`): the memory plan of every",
        "run is made of them, never of what is free at run time. Machine: "
        + (next(iter(rows.values()))["machine"] if rows else "")
        + "; two threads, glibc's default heap, random calibrated weights of the real architectures.",
        "",
        "| variant | fixed MiB | image B/px (peak MiB at 0.6 / 2.5 MP; AIM 2.5 / 8.3 MP) "
        "| passes B/px (2 repetitions) |",
        "|---|---:|---|---|",
    ]
    declared = []
    for v, r in rows.items():
        a, b = r["tiled"]
        passes = ", ".join(
            f"{n} {p['bytes_per_pixel']:.0f} ({', '.join(f'{s:.0f}' for s in p['slopes'])})"
            for n, p in r["passes"].items()
        )
        if isinstance(r["image"], dict):
            runs = r["runs"]
            shown = ", ".join(
                f"{k} {v:.1f} ({runs[k][0]['peak'] / MiB:.0f} / {runs[k][1]['peak'] / MiB:.0f})"
                for k, v in r["image"].items()
            )
            image = {k: int(_up(max(v, 1.0), 4)) for k, v in r["image"].items()}
        else:
            shown = f"{r['image']:.1f} ({a['peak'] / MiB:.0f} / {b['peak'] / MiB:.0f})"
            image = int(_up(max(r["image"], 1.0), 4))
        lines.append(f"| {v} | {r['fixed'] / MiB:.0f} | {shown} | {passes or '(pymatting model: see the spec)'} |")
        fixed = int(_up(r["fixed"], 64 * MiB)) // MiB
        figures = {n: int(_up(p["bytes_per_pixel"], 50)) for n, p in r["passes"].items()}
        declared.append(f"- `{v}`: `Footprint(fixed={fixed} << 20, image={image}, passes={figures})`")
    lines += ["", "Measured, rounded up (fixed to 64 MiB, image to 4 B/px, passes to 50 B/px):", "", *declared]
    lines += [
        "",
        "Declared in the specs: these, except",
        "",
        "- ViTMatte: `fixed` plus 256 MiB, the attention's bias buffer (`net.MASK_BYTES`), which the",
        "  small measuring sizes never fill but global attention over a large image does; `image` 60 B/px",
        "  for both sizes (the larger of the two measurements); the Distinctions-646 variants share their",
        "  size's figures.",
        "- AIM: `glance` and `focus` the largest of three measurements (819 / 902 / 722 and 1283 / 1393 /",
        "  1264 B/px), rounded up.",
        "- knn: `image` 32 B/px, cf's: the two share the tiled pipeline and its full-size planes; knn's",
        "  slope (153 B/px) came from larger anchored crops on the larger image, which its `solve` figure",
        "  bounds per crop (at 33 MP the run held 44 B/px, tile solve included).",
        "- cf / knn: `solve` and `unknown` are pymatting's own memory model (440 B per pixel plus 2600 B",
        "  per unknown pixel for cf, 3700 B per pixel for knn: least-squares fits of subprocess peaks over",
        "  0.25-1.4 MP images with 5-50% unknown, rounded up), not a pass measured here.",
        "",
        "What the default budget (10 GiB) then runs whole, the same on every machine of 16 GB or more:",
        "SIM up to about 5.5 MP, ViTMatte-S about 9 MP (ViTMatte-B 8.5 MP), MSIA 18 MP, SHM's M-Net",
        "(`--strategy whole`) 19 MP, AIM's hybrid always (its focus pass is at most 1600 px a side: it",
        "fits up to the 200 MP pixel limit), cf 3-10 MP (by the unknown share), knn 2.3 MP; above, tiles.",
    ]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "measure", "table"):
        s = sub.add_parser(name)
        s.add_argument("work", type=Path)
        if name == "measure":
            s.add_argument("--only", default=None, help="regex on variant names")
        if name == "table":
            s.add_argument("--out", type=Path, default=ROOT / "bench" / "memory_figures.md")
    args = p.parse_args()
    if args.cmd == "prepare":
        prepare(args.work)
    elif args.cmd == "measure":
        measure(args.work, args.only)
    else:
        print(table(args.work, args.out))


if __name__ == "__main__":
    main()
