"""Engine benchmark: throughput and peak memory of every method, whole-image vs tiled, per size and precision.

    python bench/speed.py [--methods aim,sim,...] [--sizes 0.5,2,8,33] [--modes whole,tiled]
        [--device cpu|cuda] [--precisions fp32,bf16,...] [--max-memory 5G] [--timeout SECONDS]
        [--rss-limit 20G] [--out bench/speed.jsonl] [--repeat N] [--folder N] [--folder-jobs 1,4]
        [--set KEY=VALUE ...] [--redo-failed] [--workdir DIR]

e.g. ``--methods cf,aim --sizes 0.5,2`` on CPU, or ``--device cuda --folder 32`` on a GPU (fp32, fp16
and bf16 by default there). ``--sizes ""`` runs only the folder measurement.

Methodology
- Test images are synthetic and deterministic, the same scene at every size (3:2 below 8 MP,
  16:9 from 8 MP: 33 MP is 7680x4320): smooth gradients, a sine texture and noise behind a soft
  ellipse with hair-like strands; the trimap is 0/255 from the true alpha with an unknown band
  (every pixel within 1% of the short side of a 0.01 < alpha < 0.99 pixel). They are written once
  as .npy files to a work folder (a temp folder unless --workdir).
- Deep methods run on random weights (timings and memory do not depend on weight values), built
  and imported into an isolated Hugging Face cache in the work folder by a separate subprocess.
  AIM's glance classes and SHM's T-Net classes are steered to the synthetic trimap (their passes
  still run): random weights call every pixel alike, so tiles would be skipped everywhere (AIM)
  or nowhere (SHM), unlike with trained weights. MSIA, trimap-free, is given the trimap (which
  it accepts), so tiles with only known pixels are skipped.
- Each (method, variant, size, mode, precision) runs in a fresh subprocess: one warm-up call (its
  time is `first_s`), then --repeat timed calls; `seconds` is the best of those. Peak memory is the
  process's VmHWM (so it includes the loaded image) and, on CUDA, torch.cuda.max_memory_allocated.
  mode is passed as the strategy ("whole" or "tiled", EngineOptions.strategy); --max-memory goes to
  tiled runs only. The options dict recorded per result (strategy, max_memory in bytes, --set keys)
  is turned into mattecli.methods.base.EngineOptions in the child.
  The trimap is passed to methods that need or accept one (msia accepts it).
- The parent kills a child past --timeout or above --rss-limit (VmRSS polled 5 times a second) and
  records why. "whole" is skipped where a linear-in-pixels extrapolation of the smaller sizes
  predicts it cannot fit (RSS limit, GPU memory or timeout), or where it already failed smaller.
- Where whole and tiled both finished, the tiled row gets max/mean |tiled - whole| of the alphas
  and overhead = tiled seconds / whole seconds - 1.
- --folder N mattes N synthetic 2 MP JPEGs through mattecli.pipelines.matte.matte_files (method default
  strategy) with --jobs 1 and 4 I/O threads; MatteRunner.compute is wrapped (monkeypatched here)
  with a timer, synchronising CUDA before the end time, and busy % = sum(compute) / wall time
  (wall time without the one-off model build).
- One JSON line per result (with the machine) is appended to --out; configurations already there
  are skipped (resume; --redo-failed reruns those that did not finish; diffs of a resumed pair
  need both alphas, so keep them with --workdir). A markdown table, the machine and the issue's
  targets (met / not met) go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "cf": [None],
    "knn": [None],
    "aim": ["aim"],
    "sim": ["sim-comp1k"],
    "shm": ["shm-mindspore", "shm"],
    "msia": ["msia"],
}
EXTRA_WEIGHTS = {"sim-comp1k": ["sim-classifier"]}
CLASSICAL = {"cf", "knn"}
GIB = 1 << 30
MARK = "@@RESULT "
CONSTANT = " (whole alpha is constant, e.g. random weights seeing no foreground: the diff proves little)"


# ----------------------------------------------------------------------------- synthetic data
def image_size(mp: float) -> tuple[int, int]:
    """(height, width) of about ``mp`` megapixels, sides multiples of 32."""
    aspect = 16 / 9 if mp >= 8 else 3 / 2
    h = max(32, round((mp * 1e6 / aspect) ** 0.5 / 32) * 32)
    w = max(32, round(h * aspect / 32) * 32)
    return h, w


def scene(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic float32 RGB image and its alpha (built in row blocks to bound memory)."""
    rng = np.random.default_rng(seed)
    s = min(h, w)
    image, alpha = np.empty((h, w, 3), np.float32), np.empty((h, w), np.float32)
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    cx, cy = 0.5 + 0.06 * (seed % 3 - 1), 0.62
    for y0 in range(0, h, 512):
        y = np.linspace(0, 1, h, dtype=np.float32)[y0 : y0 + 512, None]
        dx, dy = (x - cx) * (w / s), (y - cy) * (h / s)  # in short sides
        r = np.sqrt(dx**2 / 0.09 + dy**2 / 0.16)  # 1 on the ellipse (radii 0.3 and 0.4)
        core = np.clip((1 - r) / 0.01 + 0.5, 0, 1)
        strands = np.clip(np.cos(120 * np.arctan2(dy, dx) + 4 * np.sin(9 * r + seed)), 0, 1) ** 8
        fade = np.exp(-np.maximum(r - 1, 0) / 0.15) * (r > 0.97) * np.clip((1.35 - r) / 0.05, 0, 1)
        fade *= np.clip((0.15 - dy) / 0.1, 0, 1)  # hair on the upper part only
        a = np.maximum(core, 0.9 * strands * fade).astype(np.float32)
        texture = 0.06 * np.sin(2 * np.pi * 40 * x) * np.sin(2 * np.pi * 25 * y)
        bg = np.stack([0.25 + 0.5 * x + 0 * y, 0.35 + 0.3 * y + 0 * x, 0.55 - 0.25 * x + 0.1 * y], -1)
        bg += (texture + 0.02 * rng.standard_normal(texture.shape, dtype=np.float32))[..., None]
        fg = np.array([0.8, 0.55, 0.35], np.float32) + 0.05 * np.sin(2 * np.pi * 60 * (x + y))[..., None]
        image[y0 : y0 + 512] = np.clip(a[..., None] * fg + (1 - a[..., None]) * bg, 0, 1)
        alpha[y0 : y0 + 512] = a
    return image, alpha


def trimap_from(alpha: np.ndarray) -> np.ndarray:
    import cv2

    known = ((alpha <= 0.01) | (alpha >= 0.99)).astype(np.uint8)
    dist = cv2.distanceTransform(known, cv2.DIST_L2, 3)  # distance to the nearest unknown pixel
    trimap = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    trimap[dist <= max(3, round(min(alpha.shape) / 100))] = 128
    return trimap


def ensure_image(work: Path, mp: float) -> Path:
    path = work / f"img_{mp:g}mp.npy"
    if not path.exists():
        image, alpha = scene(*image_size(mp))
        np.save(work / f"tri_{mp:g}mp.npy", trimap_from(alpha))
        np.save(path, image)
    return path


def ensure_folder(work: Path, n: int) -> Path:
    import cv2

    folder = work / f"folder{n}"
    if not (folder / "trimaps" / f"{n - 1:03d}.png").exists():
        for sub in ("images", "trimaps"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, alpha = scene(*image_size(2), seed=i)
            bgr = (image[..., ::-1] * 255 + 0.5).astype(np.uint8)
            cv2.imwrite(str(folder / "images" / f"{i:03d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(folder / "trimaps" / f"{i:03d}.png"), trimap_from(alpha))
    return folder


# ----------------------------------------------------------------------------- child processes
def _hwm_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024


def child_info(cfg: dict) -> dict:
    import torch

    info = {"torch": torch.__version__, "threads_torch": torch.get_num_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_gib=round(props.total_memory / GIB, 1))
    return info


def child_import(cfg: dict) -> dict:
    """Random weights in our layout, imported into the work folder's hub cache (its own process,
    so that the timed processes' peak memory is inference only)."""
    import torch
    from safetensors.torch import save_file

    import mattecli.methods  # noqa: F401  (plugs every variant's network into mattecli.weights)
    from mattecli.weights import get_architecture, import_checkpoint

    for v in cfg["variants"]:
        torch.manual_seed(0)
        path = Path(cfg["work"]) / f"{v}.safetensors"
        save_file({k: t.contiguous() for k, t in get_architecture(v).build().state_dict().items()}, str(path))
        import_checkpoint(v, path)
    if cfg.get("calibrate"):
        _calibrate_imported(cfg)
    return {"status": "ok"}


def _calibrate_imported(cfg: dict) -> None:
    """Rescale the imported random weights' batch norms on one small scene, then import them again.

    Uncalibrated random networks saturate (alphas of exactly 0 or 1), which makes tiled-vs-whole
    differences meaningless; calibrated ones behave numerically like trained networks.
    """
    from safetensors.torch import load_file, save_file

    from mattecli import methods
    from mattecli.methods.base import EngineOptions, MethodOptions
    from mattecli.methods.calibration import calibrating
    from mattecli.weights import import_checkpoint

    spec = methods.get(cfg["method"])
    options = MethodOptions(
        variant=cfg["variants"][0], device="cpu", precision="fp32", engine=EngineOptions(strategy="whole")
    )
    matter = spec.create(options)
    image, alpha = scene(256, 384)
    nets = {cfg["variants"][0]: matter.processor.net}
    if hasattr(matter.processor, "analyzer"):  # SIM's patch classifier
        nets["sim-classifier"] = matter.processor.analyzer.net
    with calibrating(*nets.values()):
        matter.predict(image, trimap_from(alpha) if spec.needs_trimap else None)
    for variant, net in nets.items():
        path = Path(cfg["work"]) / f"{variant}.safetensors"
        state = load_file(str(path))
        bn = {n for n, m in net.named_modules() if isinstance(m, torch_bn())}
        for key, value in net.state_dict().items():
            if key.rsplit(".", 1)[0] in bn and key in state:
                state[key] = value.detach().cpu().contiguous()
        save_file(state, str(path))
        import_checkpoint(variant, path)


def torch_bn():
    import torch

    return torch.nn.BatchNorm2d


def engine_options(options: dict):
    """The recorded options dict (strategy, max_memory in bytes, --set keys) as EngineOptions."""
    from dataclasses import fields

    from mattecli.methods.base import EngineOptions

    known = {f.name for f in fields(EngineOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown engine option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = dict(options)
    if "compile" in values:
        values["compile"] = bool(values["compile"])
    if isinstance(values.get("scales"), (int, float)):
        values["scales"] = str(values["scales"])
    return EngineOptions(**values)


def _method(cfg: dict):
    from mattecli import methods
    from mattecli.methods.base import MethodOptions

    options = MethodOptions(
        variant=cfg["variant"],
        device=cfg["device"],
        precision=cfg["precision"],
        engine=engine_options(cfg["options"]),
    )
    return methods.get(cfg["method"]), options, cfg["device"].startswith("cuda")


def _steer_aim_glance(matter, trimap: np.ndarray) -> None:
    """Make AIM's glance argmax follow the synthetic trimap (the glance pass itself still runs).

    Random weights classify every pixel alike (all background here), so the focus stage would
    skip every tile and the fused alpha would be constant: timings and tiled-vs-whole diffs
    would say nothing. Trained weights find a transition band; this stands in for it.
    """
    import cv2
    import torch

    processor = matter.processor  # mattecli.methods.aim.processor.AimProcessor
    real = processor._glance

    def glance(x_full, h, w):
        g, focus, fusion = real(x_full, h, w)
        small = cv2.resize(trimap, (g.shape[-1], g.shape[-2]), interpolation=cv2.INTER_NEAREST)
        cls = torch.from_numpy((small // 127).astype(np.int64))  # 0, 128, 255 -> 0, 1, 2
        onehot = torch.nn.functional.one_hot(cls, 3).permute(2, 0, 1)[None].to(g.device, g.dtype)
        return onehot, focus, fusion

    processor._glance = glance


def _steer_shm_tnet(matter, trimap: np.ndarray) -> None:
    """Make SHM's T-Net classes follow the synthetic trimap (the T-Net itself still runs).

    A random T-Net gives every pixel some unknown probability, so no M-Net tile would be
    skipped; a trained one is certain away from the person's edge. Logits of +-20 stand in.
    """
    import cv2
    import torch

    def steered(_module, _inputs, logits):
        small = cv2.resize(trimap, (logits.shape[-1], logits.shape[-2]), interpolation=cv2.INTER_NEAREST)
        cls = torch.from_numpy((small // 127).astype(np.int64))  # 0, 128, 255 -> 0, 1, 2 (bg, unknown, fg)
        onehot = torch.nn.functional.one_hot(cls, 3).permute(2, 0, 1)[None].to(logits.device, logits.dtype)
        return 40 * onehot - 20

    matter.processor.net.t_net.register_forward_hook(steered)


def child_run(cfg: dict) -> dict:
    import torch

    spec, options, cuda = _method(cfg)
    image = np.load(cfg["image"])
    trimap = np.load(cfg["trimap"]) if spec.capabilities.takes_trimap else None
    matter = spec.create(options)
    if cfg["method"] == "aim":
        _steer_aim_glance(matter, np.load(cfg["trimap"]))
    if cfg["method"] == "shm":
        _steer_shm_tnet(matter, np.load(cfg["trimap"]))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(1 + cfg["repeat"]):  # warm-up call first
        start = time.perf_counter()
        alpha = matter.predict(image, trimap).alpha
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    alpha = np.asarray(alpha, np.float32)
    np.save(cfg["alpha"], alpha)
    out = {"status": "ok", "first_s": times[0], "times_s": times[1:], "seconds": min(times[1:] or times)}
    out.update(alpha_mean=float(alpha.mean()), alpha_soft=float(((alpha > 0.01) & (alpha < 0.99)).mean()))
    if cuda:
        out.update(cuda_peak_mib=torch.cuda.max_memory_allocated() / 2**20)
        out.update(cuda_reserved_mib=torch.cuda.max_memory_reserved() / 2**20)
    return out | {"peak_rss_mib": _hwm_mib()}


def child_folder(cfg: dict) -> dict:
    import torch

    from mattecli.pipelines import matte

    spec, options, cuda = _method(cfg)
    real, stats = matte.MatteRunner.compute, {"compute": 0.0, "build": 0.0}

    def timed(self, job, inputs):  # MatteRunner.compute with a timer around it
        if self.matter is None:  # the one-off model build is not device work on an image
            start = time.perf_counter()
            self.matter = self.spec.create(self.resolved)
            stats["build"] += time.perf_counter() - start
        start = time.perf_counter()
        out = real(self, job, inputs)
        if cuda:
            torch.cuda.synchronize()
        stats["compute"] += time.perf_counter() - start
        return out

    matte.MatteRunner.compute = timed
    folder, settings = Path(cfg["folder"]), matte.MatteSettings(io_workers=cfg["jobs"], options=options)
    trimaps = folder / "trimaps" if spec.needs_trimap else None
    start = time.perf_counter()
    out = Path(cfg["work"]) / f"out_{os.getpid()}"
    _, results = matte.matte_files([folder / "images"], out, method=cfg["method"], trimap=trimaps, settings=settings)
    bad = [r for r in results if r["status"] != "ok"]
    wall = time.perf_counter() - start - stats["build"]
    status = f"{len(bad)} failed: {bad[0]['error']}"[:300] if bad else "ok"
    out = {"status": status, "seconds": wall, "images_per_s": cfg["images"] / wall, "busy": stats["compute"] / wall}
    return out | {"build_s": stats["build"], "peak_rss_mib": _hwm_mib()}


CHILDREN = {"info": child_info, "import": child_import, "run": child_run, "folder": child_folder}


def _child_main(payload: str) -> None:
    try:
        cfg = json.loads(payload)
        result = CHILDREN[cfg["phase"]](cfg)
    except Exception as err:  # recorded as the status, the benchmark goes on
        result = {"status": f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
    print(MARK + json.dumps(result), flush=True)


def _vmrss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def spawn(cfg: dict, env: dict, log: Path, timeout: float = 3600, rss_limit: float = float("inf")) -> dict:
    """Run one child under the watchdog; its result dict, or why it was stopped."""
    with open(Path(f"{log}.out"), "w") as out, open(Path(f"{log}.err"), "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(cfg)], stdout=out, stderr=err, env=env)
    start, peak, why = time.monotonic(), 0, None
    while proc.poll() is None:
        rss = _vmrss_kib(proc.pid) * 1024
        peak = max(peak, rss)
        if rss > rss_limit:
            why = f"killed above {rss_limit / GIB:g} GiB"
        elif time.monotonic() - start > timeout:
            why = f"timeout after {timeout:g} s"
        if why:
            proc.kill()
            proc.wait()
            return {"status": why, "peak_rss_mib": peak / 2**20}
        time.sleep(0.2)
    lines = Path(f"{log}.out").read_text().splitlines()
    found = [json.loads(line[len(MARK) :]) for line in lines if line.startswith(MARK)]
    if found:
        return found[-1]
    tail = (Path(f"{log}.err").read_text().strip().splitlines() or [""])[-1]
    return {"status": f"crashed (exit {proc.returncode}): {tail}"[:300], "peak_rss_mib": peak / 2**20}


# ----------------------------------------------------------------------------- parent
def machine_info(info: dict) -> dict:
    blocks = [
        dict(map(str.strip, line.split(":", 1)) for line in b.splitlines() if ":" in line)
        for b in Path("/proc/cpuinfo").read_text().split("\n\n")
        if b.strip()
    ]
    cores = {(b.get("physical id"), b.get("core id")) for b in blocks if "core id" in b}
    ram = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal:")) * 1024
    return {
        "cpu": blocks[0].get("model name", "unknown CPU"),
        "cores": len(cores) or os.cpu_count(),
        "threads": os.cpu_count(),
        "ram_gib": round(ram / GIB, 1),
        "python": sys.version.split()[0],
        "torch": info.get("torch", "?"),
        "threads_torch": info.get("threads_torch"),
        "gpu": info.get("gpu"),
        "gpu_gib": info.get("gpu_gib"),
    }


def skip_whole(results: list[dict], rec: dict, args, machine: dict) -> str | None:
    """Why "whole" at rec's size cannot work, judged from the smaller sizes' whole runs."""
    keys = ("method", "variant", "precision", "device")
    same = [r for r in results if r["kind"] == "size" and r["mode"] == "whole" and r["mp"] < rec["mp"]]
    same = [r for r in same if all(r[k] == rec[k] for k in keys)]
    for r in same:
        if any(w in r["status"].lower() for w in ("killed", "timeout", "memory", "skipped")):
            return f"skipped: whole failed at {r['mp']:g} MP ({r['status'][:60]})"
    ok = sorted((r for r in same if r["status"] == "ok"), key=lambda r: r["mp"])
    if not ok:
        return None

    def extrapolate(field: str) -> float | None:
        pts = [(r["mp"], r[field]) for r in ok[-2:] if r.get(field) is not None]
        if not pts:
            return None
        if len(pts) == 1:
            return pts[0][1] * rec["mp"] / pts[0][0]
        (x0, y0), (x1, y1) = pts
        return y1 + (y1 - y0) / (x1 - x0) * (rec["mp"] - x1)

    rss, gpu, secs = extrapolate("peak_rss_mib"), extrapolate("cuda_reserved_mib"), extrapolate("seconds")
    if rss and rss * 2**20 > args.rss_limit:
        return f"skipped: whole needs ~{rss / 1024:.1f} GiB RSS (linear from {ok[-1]['mp']:g} MP) > --rss-limit"
    if gpu and machine.get("gpu_gib") and gpu / 1024 > machine["gpu_gib"]:
        return f"skipped: whole needs ~{gpu / 1024:.1f} GiB GPU memory > {machine['gpu_gib']} GiB"
    if secs and secs * (1 + args.repeat) > args.timeout:
        return f"skipped: whole needs ~{secs * (1 + args.repeat):.0f} s > --timeout"
    return None


def compare(work: Path, whole: dict, tiled: dict) -> None:
    a, b = work / whole["alpha"], work / tiled["alpha"]
    if whole["status"] == "ok" and tiled["status"] == "ok" and a.exists() and b.exists():
        whole_alpha = np.load(a)
        diff = np.abs(np.load(b) - whole_alpha)
        overhead = tiled["seconds"] / whole["seconds"] - 1
        tiled.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()), overhead=overhead)
        if whole_alpha.min() == whole_alpha.max():  # e.g. random weights that see no foreground at all
            tiled["constant_alpha"] = True


def parse_bytes(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = {"K": 1 << 10, "M": 1 << 20, "G": GIB, "T": 1 << 40}.get(text[-1:], 1)
    return int(float(text.rstrip("KMGT")) * unit)


def _f(value, spec: str, scale: float = 1) -> str:
    return "-" if value is None else format(value * scale, spec)


def report(results: list[dict], m: dict, args) -> None:
    gpu = f"{m['gpu']} ({m['gpu_gib']} GiB)" if m["gpu"] else "none"
    print(
        f"Machine: {m['cpu']}, {m['cores']} cores / {m['threads']} threads, {m['ram_gib']} GiB RAM, torch "
        f"{m['torch']} ({m['threads_torch']} threads), GPU: {gpu}; device {args.device}\n"
    )
    sizes = [r for r in results if r["kind"] == "size"]
    folders = [r for r in results if r["kind"] == "folder"]
    if sizes:
        print(
            "| method | variant | MP | mode | precision | seconds | MP/s | peak RSS (MiB) | CUDA peak (MiB) "
            "| max abs(tiled-whole) | overhead % | status |\n|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"
        )
    for r in sizes:
        mps = r["pixels"] / 1e6 / r["seconds"] if r.get("seconds") else None
        print(
            f"| {r['method']} | {r['variant'] or '-'} | {r['pixels'] / 1e6:.2f} | {r['mode']} | {r['precision']} "
            f"| {_f(r.get('seconds'), '.2f')} | {_f(mps, '.3f')} | {_f(r.get('peak_rss_mib'), '.0f')} "
            f"| {_f(r.get('cuda_peak_mib'), '.0f')} | {_f(r.get('max_abs_diff'), '.1e')} "
            f"| {_f(r.get('overhead'), '+.1f', 100)} | {r['status']}{CONSTANT * bool(r.get('constant_alpha'))} |"
        )
    if folders:
        print(
            f"\nFolder of {folders[0]['images']} images of 2 MP (method default strategy):\n\n| method | variant "
            "| precision | --jobs | seconds | images/s | busy % | peak RSS (MiB) | status |\n"
            "|---|---|---|---:|---:|---:|---:|---:|---|"
        )
    for r in folders:
        print(
            f"| {r['method']} | {r['variant'] or '-'} | {r['precision']} | {r['jobs']} | {_f(r.get('seconds'), '.1f')} "
            f"| {_f(r.get('images_per_s'), '.2f')} | {_f(r.get('busy'), '.1f', 100)} "
            f"| {_f(r.get('peak_rss_mib'), '.0f')} | {r['status']} |"
        )

    def verdict(rows: list[tuple[str, bool]], none: str) -> str:
        bad = [name for name, good in rows if not good]
        return f"not measured ({none})" if not rows else f"NOT met: {', '.join(bad)}" if bad else "met"

    def name(r: dict) -> str:
        return f"{r['method']}/{r['variant'] or '-'}/{r['precision']}@{r['mp']:g}MP"

    cuda = args.device.startswith("cuda")
    pairs = [r for r in sizes if r.get("max_abs_diff") is not None]
    trivial = sum(bool(r.get("constant_alpha")) for r in pairs)
    limit, field = (8, "cuda_peak_mib") if cuda else (6, "peak_rss_mib")
    best = {}  # (method, variant) -> lowest peak of a finished run at >= 30 MP, any mode or precision
    for r in sizes:
        if r["mp"] >= 30:
            peak = r.get(field) if r["status"] == "ok" else None
            key = (r["method"], r["variant"] or "-")
            best[key] = min((p for p in (best.get(key), peak) if p is not None), default=None)
    big = [(f"{k[0]}/{k[1]}", v is not None and v < limit * 1024) for k, v in best.items()]
    over = [(name(r), r["overhead"] < 0.15) for r in pairs if abs(r["mp"] - 2) < 0.01 and r["device"] == "cpu"]
    busy = [(f"{r['method']}/{r['precision']}/jobs {r['jobs']}", (r.get("busy") or 0) > 0.9) for r in folders]
    print("\nTargets:")
    parity = verdict([(name(r), r["max_abs_diff"] <= 1e-3) for r in pairs if not r.get("constant_alpha")], "no pair")
    print(
        f"- tiled within 1e-3 of whole: {parity}"
        + (f" ({trivial} pair(s) with a constant alpha left out)" * bool(trivial))
    )
    print(f"- 33 MP by every method, {field} < {limit} GiB: {verdict(big, 'no 33 MP run')}")
    capped = [
        (name(r), r[field] * 2**20 <= r["options"]["max_memory"])
        for r in sizes
        if r["status"] == "ok" and r["mode"] == "tiled" and (r.get("options") or {}).get("max_memory") and r.get(field)
    ]
    print(f"- tiled peak ({field}) within --max-memory: {verdict(capped, 'no tiled run with a cap')}")
    print(f"- CPU tiling overhead < 15% at 2 MP: {verdict(over, 'no 2 MP pair on CPU')}")
    print(f"- folder busy > 90% on GPU: {verdict(busy, 'no folder run') if cuda else 'not applicable on CPU'}")


class Runner:
    """Runs (or finds in --out) each configuration and keeps every result for the report."""

    def __init__(self, args, work: Path, machine: dict):
        self.args, self.work, self.machine = args, work, machine
        self.env = dict(
            os.environ,
            HF_HUB_CACHE=str(work / "hub"),
            HF_HUB_OFFLINE="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        )
        self.done = {}
        if args.out.exists():
            lines = [line for line in args.out.read_text().splitlines() if line.strip()]
            self.done = {r["key"]: r for r in map(json.loads, lines) if r["status"] == "ok" or not args.redo_failed}
        self.results: list[dict] = []
        self.imported: dict[str, dict] = {}

    def spawn(self, cfg: dict, tag: str) -> dict:
        variant = cfg.get("variant")
        if variant and variant not in self.imported:
            variants = [variant, *EXTRA_WEIGHTS.get(variant, [])]
            imp = {"phase": "import", "work": str(self.work), "variants": variants}
            imp |= {"calibrate": self.args.calibrate, "method": cfg["method"]}
            self.imported[variant] = spawn(imp, self.env, self.work / f"import_{variant}")
        if variant and self.imported[variant]["status"] != "ok":
            return {"status": f"weights import failed: {self.imported[variant]['status']}"}
        return spawn(cfg, self.env, self.work / tag, self.args.timeout, self.args.rss_limit)

    def record(self, rec: dict, run, post=None) -> dict:
        rec["key"] = json.dumps(rec, sort_keys=True)  # the configuration identifies the result
        if rec["key"] in self.done:
            rec = self.done[rec["key"]]
        else:
            what = [rec.get(k) for k in ("method", "variant", "mp", "mode", "precision", "jobs") if rec.get(k)]
            print(f"[speed] {rec['kind']} {' '.join(map(str, what))} ...", file=sys.stderr, flush=True)
            rec.update(run(), machine=self.machine, date=time.strftime("%Y-%m-%d %H:%M:%S"))
            took = f" ({rec['seconds']:.2f} s)" if rec.get("seconds") else ""
            print(f"[speed]   {rec['status']}{took}", file=sys.stderr, flush=True)
            if post:
                post(rec)
            with open(self.args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")
        self.results.append(rec)
        return rec

    def size(self, base: dict, mp: float, mode: str, options: dict) -> None:
        (h, w), tag = image_size(mp), f"{base['method']}_{base['variant']}_{mp:g}_{mode}_{base['precision']}"
        rec = {"kind": "size", **base, "mp": mp, "pixels": h * w, "width": w, "height": h, "mode": mode}
        rec.update(options=options, repeat=self.args.repeat, alpha=f"alpha_{tag}.npy")
        why = skip_whole(self.results, rec, self.args, self.machine) if mode == "whole" else None
        paths = {"trimap": str(self.work / f"tri_{mp:g}mp.npy"), "alpha": str(self.work / rec["alpha"])}

        def run() -> dict:  # the image is only made when a configuration actually runs
            if why:
                return {"status": why}
            return self.spawn(rec | paths | {"phase": "run", "image": str(ensure_image(self.work, mp))}, tag)

        wholes = [r for r in self.results if r["kind"] == "size" and r["mode"] == "whole" and r["mp"] == mp]
        wholes = [r for r in wholes if all(r[k] == base[k] for k in base)]
        post = (lambda r: compare(self.work, wholes[-1], r)) if mode != "whole" and wholes else None
        self.record(rec, run, post)

    def folder(self, base: dict, folder: Path, jobs: int, options: dict) -> None:
        rec = {"kind": "folder", **base, "images": self.args.folder, "jobs": jobs, "options": options}
        cfg = rec | {"phase": "folder", "folder": str(folder), "work": str(self.work)}
        self.record(rec, lambda: self.spawn(cfg, f"folder_{base['method']}_{base['precision']}_{jobs}"))


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return _child_main(sys.argv[2])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default=",".join(VARIANTS))
    p.add_argument("--sizes", default="0.5,2,8,33", help="megapixels")
    p.add_argument("--modes", default="whole,tiled")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", default=None, help="default fp32 on CPU, fp32,fp16,bf16 on CUDA")
    p.add_argument("--max-memory", default=None, help="given to tiled runs; default 5G (CPU) / 7G (CUDA); 'none'")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per child process")
    p.add_argument("--rss-limit", default="20G")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "speed.jsonl")
    p.add_argument("--repeat", type=int, default=1, help="timed calls after the warm-up call")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="rescale the random weights' batch norms on a small scene (for meaningful tiled-vs-whole diffs)",
    )
    p.add_argument("--folder", type=int, default=0, help="also matte a folder of N 2 MP images")
    p.add_argument("--folder-jobs", default="1,4")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra engine option, an EngineOptions field: tile_size, tile_overlap, batch_size, scales, compile "
        "(int if numeric)",
    )
    p.add_argument("--redo-failed", action="store_true", help="rerun configurations in --out that did not finish")
    p.add_argument("--workdir", type=Path, default=None, help="keep images, alphas and weights here")
    args = p.parse_args()
    args.rss_limit = parse_bytes(args.rss_limit)
    cuda = args.device.startswith("cuda")
    precisions = (args.precisions or ("fp32,fp16,bf16" if cuda else "fp32")).split(",")
    max_memory = args.max_memory or ("7G" if cuda else "5G")
    extra = {k: int(v) if v.isdigit() else v for k, v in (s.split("=", 1) for s in args.set)}
    with tempfile.TemporaryDirectory(prefix="mattecli-speed-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        info = spawn({"phase": "info"}, os.environ | {"PYTHONPATH": str(ROOT)}, work / "info")
        runner = Runner(args, work, machine_info(info))
        folder = ensure_folder(work, args.folder) if args.folder else None
        for method in args.methods.split(","):
            precs = ["fp32"] if method in CLASSICAL else precisions  # classical solvers ignore the precision
            for variant, precision in [(v, prec) for v in VARIANTS[method] for prec in precs]:
                base = {"method": method, "variant": variant, "precision": precision, "device": args.device}
                for mp in sorted(float(s) for s in args.sizes.split(",") if s):
                    for mode in args.modes.split(","):
                        options = {"strategy": mode, **(extra if mode != "whole" else {})}  # tile flags: tiled only
                        if mode != "whole" and max_memory.lower() != "none":
                            options["max_memory"] = parse_bytes(max_memory)
                        runner.size(base, mp, mode, options)
                for jobs in map(int, args.folder_jobs.split(",")) if folder else []:
                    runner.folder(base, folder, jobs, dict(extra))
        report(runner.results, runner.machine, args)


if __name__ == "__main__":
    main()
