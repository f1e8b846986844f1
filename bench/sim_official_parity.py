"""SIM: mattecli against the authors' own test pipeline, on the same image, trimap and weights.

Not part of the test suite. It needs the official code (github.com/nowsyn/SIM @ dc5ed5a, never
copied into this project) extracted to a folder outside the repo, and a separate environment
for it (the authors used Python 3.7, PyTorch 1.9, OpenCV of 2021; their code runs unchanged on
PyTorch 2.13):

    python3 -m venv /work/simenv
    /work/simenv/bin/pip install torch==2.13.0 numpy==1.26.4 opencv-python-headless==4.5.5.64 easydict toml
    # the fetch tool's bare mirror of nowsyn/SIM -> plain files (figures/ are absent from the mirror)
    G=/work/.mirror/nowsyn+SIM/repo; mkdir -p /work/sim-official && cd /work/sim-official
    git --git-dir=$G ls-tree -r --name-only dc5ed5a | grep -v '^figures/' | while read f; do
        mkdir -p "$(dirname "$f")"; git --git-dir=$G show "dc5ed5a:$f" > "$f"; done
    cd /work/main
    /work/simenv/bin/python bench/sim_official_parity.py --official /work/sim-official \\
        ../shared/data/aim-samples/1.jpg@1728x1152 ../shared/data/aim-samples/1.jpg ../shared/data/lemur/lemur.png

mattecli is used only through its CLI (``--mattecli``, default ``.venv/bin/mattecli``), so the
script does not depend on the package's module layout. This script's own process needs only
numpy and OpenCV (it runs under the official venv); each side runs in its own subprocess, so wall
time and peak RSS (``wait4`` of that child) are its own.

What the official side needs here: ``networks/spatial_gradient_2d.py`` imports three kernels
from ``kornia.filters.kernels`` for a training loss (never called at test time): a stub module
with those names is installed, kornia is not. ``networks/resnet_bn.py l_resnet50(pretrained=True)``
loads ``pretrained/resnet50_v1c.pth``, which the authors do not ship: it is called with
``pretrained=False`` (the workaround of the authors' issue #4; the checkpoint replaces every
weight anyway). ``scripts/main.py`` hard-codes ``.cuda()`` in ``main()``, so its functions are
called as ``run()`` calls them, on the CPU: ``preprocess``, ``extract_semantic_trimap_whole``
(its 320 and 800 px patches), the matting module with ``is_training=False``, the clamp, the
known-region overwrite, the crop and ``save_prediction``. No torchvision is imported.

Weights: no released checkpoint can be downloaded here, so both sides run the same *random*
networks. ``build_classifier`` / ``build_sim_model`` of the authors' code (config/adobe.toml)
build them; every batch norm is calibrated on the first image at half size (running mean /
variance set to its input's statistics on the first forward, a 1x1 input using the statistics
over all its channels), and the alpha head's last 1x1 convolution is refitted (least squares)
so that the raw output over the unknown region has mean 0.5 and spread 0.3 (random weights
otherwise clamp most of it to 0 or 1). The matting net is written by the authors'
``utils/util.py save_checkpoint`` (``{'epoch', 'state_dict', 'best_sad'}``, no ``module.``), the
classifier as ``{'state_dict': DataParallel(net).state_dict()}`` (``module.`` prefix), and both
are imported with ``mattecli weights import sim-comp1k|sim-classifier FILE`` into a private
``HF_HOME`` (``MATTECLI_OFFLINE=1``: nothing is downloaded).

Inputs: ``PATH[@WxH]``, the image resized to WxH (``cv2.INTER_AREA``) or at its own size; both
sides read the same lossless RGB PNG written from it. Trimap: ``<stem>_trimap.png`` beside the
image if there is one (hand-drawn; every value strictly between 0 and 255 becomes 128), else a
band around the 0.5 contour of ``<stem>_alpha*.png`` (resized like the image): a pixel is
unknown when its Euclidean distance (OpenCV precise L2) to the other side of the contour is at
most the ``--unknown`` quantile of those distances (default 12%), foreground 255 / background 0
elsewhere. Deterministic.

Timing: each side processes the image twice in one process (the official side: two iterations
of ``run()``'s loop body, from reading the PNGs to writing the 8-bit prediction; mattecli: one
``mattecli matte`` call on two copies of the image, the per-file ``seconds`` of ``--json``, which
include decoding and writing the 16-bit PNG). Neither includes building the networks; the
process column does (imports, weights). ``--rounds`` repeats both sides, alternating which goes
first; the table shows the median over rounds. Ratio = official / mattecli, second calls.
Other work on the same 2 cores moves wall times a lot, so CPU seconds (user + system, all
threads) of the second call are given too, a steadier basis: the official side's
``time.process_time()`` around the call; mattecli's process CPU from when ``a.png`` (the first
output) appears to the exit, read from ``/proc/PID/stat`` (approximate: ``b.png``'s decoding may
have been prefetched during the first call, and the first output's write overlaps the second).

Equality over the unknown region (trimap == 128): mattecli's 16-bit PNG against the official
float alpha clipped to [0, 1] and quantised the way mattecli writes it, round(a * 65535); so a
difference is a whole number of 16-bit levels, reported / 65535.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- official side (child processes)
def _import_official(root: Path):
    """The authors' scripts/main.py as a module (its imports: networks.*, utils.*, data.util)."""
    import importlib.util

    kernels = types.ModuleType("kornia.filters.kernels")

    def _unused(*_a, **_k):  # a training loss's kernels; never called at test time
        raise RuntimeError("kornia stub: not available")

    for name in ("get_spatial_gradient_kernel2d", "get_spatial_gradient_kernel3d", "normalize_kernel2d"):
        setattr(kernels, name, _unused)
    filters = types.ModuleType("kornia.filters")
    filters.kernels = kernels
    kornia = types.ModuleType("kornia")
    kornia.filters = filters
    sys.modules.update({"kornia": kornia, "kornia.filters": filters, "kornia.filters.kernels": kernels})
    sys.path.insert(0, str(root))
    import networks.resnet_bn as resnet_bn

    real = resnet_bn.l_resnet50
    resnet_bn.l_resnet50 = lambda pretrained=False: real(pretrained=False)  # pretrained/resnet50_v1c.pth is not shipped
    spec = importlib.util.spec_from_file_location("sim_official_main", root / "scripts" / "main.py")
    main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main)
    return main


def _config(main, root: Path, classifier_ckpt, matting_ckpt):
    from utils.config import load_config

    cfg = load_config(str(root / "config" / "adobe.toml"))
    cfg.classifier.resume_checkpoint = str(classifier_ckpt)
    cfg.model.resume_checkpoint = str(matting_ckpt)
    return cfg


def _logger(folder: Path):
    import logging

    logger = logging.getLogger("sim_official_parity")
    logger.addHandler(logging.FileHandler(folder / "official.log"))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def _official_forward(main, cfg, classifier, model, image_png, trimap_png, save_png):
    """One iteration of scripts/main.py run()'s loop body (device cpu; SAD left out)."""
    import torch

    device = torch.device("cpu")
    with torch.no_grad():
        inputs = main.preprocess(str(trimap_png), str(trimap_png), str(image_png))  # 'alpha' only feeds SAD
        trimap = inputs["trimap"].float().to(device)
        image_scale = inputs["image_scale"].float().to(device)
        image_trans = inputs["image_trans"].float().to(device)
        trimap_2chn = inputs["trimap_2chn"].float().to(device)
        trimap_clks = inputs["trimap_clks"].float().to(device)
        oh, ow = inputs["origin_h"], inputs["origin_w"]
        semantic_trimap = main.extract_semantic_trimap_whole(cfg.classifier, classifier, image_trans, trimap)
        out = model(image_scale, trimap_2chn, image_trans, trimap_clks, semantic_trimap, is_training=False)
        out["alpha"] = torch.clamp(out["alpha"], 0, 1)
        pred = out["alpha"]
        pred[trimap == 0] = 0
        pred[trimap == 255] = 1
        pred = pred[:, :, 0:oh, 0:ow]
        if save_png is not None:
            main.save_prediction(pred, str(save_png))
    return pred, semantic_trimap


def _calibrate_bn(*nets):
    """Forward pre-hooks: each eval-mode BatchNorm2d takes its input's statistics as running stats, once."""
    import torch

    done, handles = set(), []

    def hook(bn, inputs):
        if id(bn) in done:
            return
        done.add(id(bn))
        x = inputs[0].detach().double()
        if x.shape[0] * x.shape[2] * x.shape[3] > 1:
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
        else:  # ASPP image pooling: one value per channel
            mean, var = x.mean().expand(x.shape[1]), x.var(unbiased=False).expand(x.shape[1])
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float().clamp_min(1e-6))

    for net in nets:
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                handles.append(m.register_forward_pre_hook(hook))
    return handles


def _make_weights(root: Path, image_png: Path, trimap_png: Path, folder: Path, threads: int) -> dict:
    """Random official networks, calibrated on one image, saved in the authors' checkpoint formats."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    main = _import_official(root)
    from utils.util import save_checkpoint

    logger = _logger(folder)
    cfg = _config(main, root, "", "")
    classifier = main.resnet_models.__dict__[cfg.classifier.arch](
        cfg.classifier.n_channel, num_classes=cfg.classifier.num_classes, pretrained=False
    ).eval()
    model = main.build_model(cfg.model).eval()
    for net in (classifier, model):
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # some spread in the affine parameters, as trained nets have
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    handles = _calibrate_bn(classifier, model)
    _official_forward(main, cfg, classifier, model, image_png, trimap_png, None)
    for h in handles:
        h.remove()
    # refit the alpha head's last 1x1 conv: raw output over the unknown region ~ 0.5 + 0.3 z
    head = model.decoder.conv_up4_alpha
    seen = {}
    handle = head[3].register_forward_hook(lambda m, i, o: seen.setdefault("h", o.detach()))
    _official_forward(main, cfg, classifier, model, image_png, trimap_png, None)
    handle.remove()
    tri = cv2.imread(str(trimap_png), cv2.IMREAD_GRAYSCALE)
    h, w = tri.shape
    feats = seen["h"][0, :, :h, :w].reshape(16, -1).T.double()  # (pixels, 16)
    unknown = torch.from_numpy((tri == 128).reshape(-1))
    feats = feats[unknown][:: max(1, int(unknown.sum()) // 200_000)]
    raw = feats @ head[4].weight.detach().double().reshape(16)
    target = 0.5 + 0.3 * (raw - raw.mean()) / raw.std()
    fit = torch.linalg.lstsq(feats, target[:, None]).solution.reshape(1, 16, 1, 1)
    head[4].weight.data.copy_(fit.float())
    pred, _ = _official_forward(main, cfg, classifier, model, image_png, trimap_png, None)
    a = pred[0, 0].numpy()[tri == 128]
    # the authors' formats
    save_checkpoint(str(folder / "Adobe"), torch.nn.DataParallel(model), -1, 0.0, logger, mname="best")
    torch.save(
        {"state_dict": torch.nn.DataParallel(classifier).state_dict()}, folder / "classifier_resnet50_best.pth.tar"
    )
    return {
        "matting": str(folder / "Adobe" / "ckpt_best.pth"),
        "classifier": str(folder / "classifier_resnet50_best.pth.tar"),
        "calibration_alpha": {
            "mean": float(a.mean()),
            "std": float(a.std()),
            "at_0": float((a <= 0).mean()),
            "at_1": float((a >= 1).mean()),
        },
    }


def _official_side(root: Path, image_png: Path, trimap_png: Path, weights: dict, out: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    main = _import_official(root)
    logger = _logger(out.parent)
    cfg = _config(main, root, weights["classifier"], weights["matting"])
    classifier = main.build_classifier(cfg.classifier, logger)
    model = main.build_sim_model(cfg.model, logger)
    model.eval()
    classifier.eval()
    setup = time.perf_counter() - start
    seconds, cpu = [], []
    for i in range(2):
        start, start_cpu = time.perf_counter(), time.process_time()
        pred, smap = _official_forward(
            main, cfg, classifier, model, image_png, trimap_png, out.with_suffix(f".{i}.png")
        )
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    np.save(out, pred[0, 0].numpy().astype(np.float32))
    h, w = pred.shape[2:]
    s = smap[0, :, :h, :w]
    return {
        "first": seconds[0],
        "second": seconds[1],
        "cpu_second": cpu[1],
        "setup": setup,
        "smap_max": float(s.max()),
        "smap_mean": float(s.mean()),
    }


def _child(argv: list[str]) -> None:
    kind, payload = argv[0], json.loads(argv[1])
    if kind == "weights":
        result = _make_weights(
            Path(payload["official"]),
            Path(payload["image"]),
            Path(payload["trimap"]),
            Path(payload["folder"]),
            payload["threads"],
        )
    else:
        result = _official_side(
            Path(payload["official"]),
            Path(payload["image"]),
            Path(payload["trimap"]),
            payload["weights"],
            Path(payload["out"]),
            payload["threads"],
        )
    print(json.dumps(result))


# ----------------------------------------------------------------------------- parent
def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) a live process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(cmd: list[str], env: dict, what: str, watch: Path | None = None) -> tuple[str, float, float, float, float]:
    """Run a child; (stdout, wall seconds, peak RSS MiB, CPU seconds (user + system), the CPU seconds it had
    used when ``watch`` first existed (nan without ``watch``)), the last three of that child alone."""
    start = time.perf_counter()
    cpu_at_watch = float("nan")
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, text=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if watch is not None and cpu_at_watch != cpu_at_watch and watch.exists():
                cpu_at_watch = _proc_cpu(proc.pid) or float("nan")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode:
        raise SystemExit(f"{what} failed (exit {proc.returncode}):\n{stderr[-4000:]}\n{stdout[-2000:]}")
    return stdout, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, cpu_at_watch


def _band_trimap(alpha: np.ndarray, unknown: float) -> np.ndarray:
    fg = alpha >= 128
    to_bg = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # fg pixel -> nearest bg
    to_fg = cv2.distanceTransform((~fg).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    dist = np.where(fg, to_bg, to_fg)
    limit = np.quantile(dist, unknown)
    tri = np.where(fg, 255, 0).astype(np.uint8)
    tri[dist <= limit] = 128
    return tri


def _prepare(spec: str, work: Path, unknown: float) -> dict:
    path, _, size = spec.partition("@")
    path = Path(path).resolve()
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"cannot read {path}")
    native = bgr.shape[:2]
    target = tuple(int(v) for v in size.lower().split("x")) if size else (native[1], native[0])  # (w, h)
    if target != (native[1], native[0]):
        bgr = cv2.resize(bgr, target, interpolation=cv2.INTER_AREA)
    hand = path.with_name(f"{path.stem}_trimap.png")
    if hand.exists():
        tri = cv2.imread(str(hand), cv2.IMREAD_GRAYSCALE)
        tri = cv2.resize(tri, target, interpolation=cv2.INTER_NEAREST) if tri.shape != bgr.shape[:2] else tri
        tri = np.where((tri > 0) & (tri < 255), 128, tri).astype(np.uint8)
        how = f"{hand.name} (unknown -> 128)"
    else:
        alphas = sorted(path.parent.glob(f"{path.stem}_alpha*.png"))
        if not alphas:
            raise SystemExit(f"{path}: no {path.stem}_trimap.png nor {path.stem}_alpha*.png to make a trimap from")
        alpha = cv2.imread(str(alphas[0]), cv2.IMREAD_GRAYSCALE)
        if alpha.shape != bgr.shape[:2]:
            alpha = cv2.resize(alpha, target, interpolation=cv2.INTER_AREA)
        tri = _band_trimap(alpha, unknown)
        how = f"band around the 0.5 contour of {alphas[0].name}"
    label = f"{path.stem}_{target[0]}x{target[1]}"
    folder = work / label
    folder.mkdir(parents=True)
    image_png, trimap_png = folder / "image.png", folder / "trimap.png"
    cv2.imwrite(str(image_png), bgr)
    cv2.imwrite(str(trimap_png), tri)
    return {
        "label": label,
        "name": path.name,
        "size": target,
        "image": image_png,
        "trimap": trimap_png,
        "tri": tri,
        "unknown": float((tri == 128).mean()),
        "how": how,
        "folder": folder,
    }


def _mattecli_side(mattecli: str, item: dict, strategy: str, env: dict, tag: str) -> dict:
    folder = item["folder"] / f"mattecli_{tag}"
    (folder / "in").mkdir(parents=True)
    (folder / "tri").mkdir()
    names = ("a.png", "b.png")
    for n in names:
        shutil.copyfile(item["image"], folder / "in" / n)
        shutil.copyfile(item["trimap"], folder / "tri" / n)
    cmd = [mattecli, "matte", "--method", "sim", *(str(folder / "in" / n) for n in names), str(folder / "out")]
    cmd += ["--trimap", str(folder / "tri"), "--bit-depth", "16", "--device", "cpu", "--json", "--quiet"]
    if strategy != "default":
        cmd += ["--strategy", strategy]
    stdout, wall, rss, cpu, cpu_first = _run(
        cmd, env, f"mattecli ({item['label']}, {strategy})", watch=folder / "out" / "a.png"
    )
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]
    by_name = {Path(r["input"]).name: r for r in rows}
    if any(by_name.get(n, {}).get("status") != "ok" for n in names):
        raise SystemExit(f"mattecli did not matte both copies: {rows}")
    alpha16 = cv2.imread(str(folder / "out" / "b.png"), cv2.IMREAD_UNCHANGED)
    if alpha16 is None or alpha16.dtype != np.uint16:
        raise SystemExit("mattecli's output is not a 16-bit PNG")
    return {
        "first": by_name["a.png"]["seconds"],
        "second": by_name["b.png"]["seconds"],
        "wall": wall,
        "rss": rss,
        "cpu": cpu,
        "cpu_second": cpu - cpu_first,  # from a.png written to the exit: b.png (decode prefetched) and teardown
        "alpha16": alpha16,
        "same_both_calls": bool(
            np.array_equal(alpha16, cv2.imread(str(folder / "out" / "a.png"), cv2.IMREAD_UNCHANGED))
        ),
    }


def _official_run(args, item: dict, weights: dict, env: dict, tag: str) -> dict:
    out = item["folder"] / f"official_{tag}.npy"
    payload = {
        "official": str(args.official),
        "image": str(item["image"]),
        "trimap": str(item["trimap"]),
        "weights": weights,
        "out": str(out),
        "threads": args.threads,
    }
    stdout, wall, rss, cpu, _ = _run(
        [args.official_python, __file__, "--child", "official", json.dumps(payload)], env, f"official ({item['label']})"
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    return result | {"wall": wall, "rss": rss, "cpu": cpu, "alpha": np.load(out)}


def _equality(official: np.ndarray, alpha16: np.ndarray, tri: np.ndarray) -> dict:
    ref = np.round(np.clip(official.astype(np.float64), 0, 1) * 65535)
    diff = np.abs(alpha16.astype(np.float64) - ref)[tri == 128] / 65535
    known = tri != 128
    known_same = bool(np.array_equal(alpha16[known], ref[known]))
    return {"mean": diff.mean(), "max": diff.max(), "over": (diff > 1 / 255).mean(), "known_same": known_same}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="PATH[@WxH]")
    parser.add_argument("--official", type=Path, required=True, help="the extracted nowsyn/SIM tree")
    parser.add_argument("--official-python", default=sys.executable, help="python of the official venv")
    parser.add_argument("--mattecli", default=str(ROOT / ".venv" / "bin" / "mattecli"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="repeat both sides, alternating which goes first")
    parser.add_argument("--one-round-above", type=float, default=3.0, help="megapixels above which one round is run")
    parser.add_argument("--strategies", default="default", help="mattecli --strategy values ('default': none given)")
    parser.add_argument("--unknown", type=float, default=0.12, help="unknown fraction of derived trimaps")
    parser.add_argument("--keep", type=Path, help="keep inputs and outputs in this (new) folder")
    args = parser.parse_args()
    args.official = args.official.resolve()
    work = Path(tempfile.mkdtemp(prefix="sim_parity_")) if args.keep is None else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    try:
        items = [_prepare(spec, work, args.unknown) for spec in args.images]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        env.update(HF_HOME=str(work / "hf"), HF_HUB_CACHE=str(work / "hf" / "hub"), MATTECLI_OFFLINE="1")
        env.pop("MATTECLI_DEBUG", None)
        # calibrate on the first image at half size
        calib = work / "calibration"
        calib.mkdir()
        first = items[0]
        h, w = first["tri"].shape
        small = (w // 2, h // 2)
        cv2.imwrite(
            str(calib / "image.png"), cv2.resize(cv2.imread(str(first["image"])), small, interpolation=cv2.INTER_AREA)
        )
        cv2.imwrite(str(calib / "trimap.png"), cv2.resize(first["tri"], small, interpolation=cv2.INTER_NEAREST))
        payload = {
            "official": str(args.official),
            "image": str(calib / "image.png"),
            "trimap": str(calib / "trimap.png"),
            "folder": str(calib),
            "threads": args.threads,
        }
        stdout, *_ = _run([args.official_python, __file__, "--child", "weights", json.dumps(payload)], env, "weights")
        weights = json.loads(stdout.strip().splitlines()[-1])
        for variant, key in (("sim-comp1k", "matting"), ("sim-classifier", "classifier")):
            _run([args.mattecli, "weights", "import", variant, weights[key]], env, f"mattecli weights import {variant}")
        strategies = args.strategies.split(",")
        results = []
        for item in items:
            runs = {"official": []} | {s: [] for s in strategies}
            rounds = 1 if item["size"][0] * item["size"][1] > args.one_round_above * 1e6 else args.rounds
            item["rounds"] = rounds
            for r in range(rounds):
                order = ["official", *strategies] if r % 2 == 0 else [*strategies[::-1], "official"]
                for side in order:
                    tag = f"r{r}"
                    if side == "official":
                        runs[side].append(_official_run(args, item, weights, env, tag))
                    else:
                        runs[side].append(_mattecli_side(args.mattecli, item, side, env, f"{side}_{tag}"))
                    print(f"  {item['label']} round {r} {side}: {runs[side][-1]['second']:.2f} s", file=sys.stderr)
            results.append((item, runs))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    def med(rs, key):
        return float(np.median([r[key] for r in rs]))

    cal = weights["calibration_alpha"]
    print(
        f"random weights, BN calibrated on {items[0]['label']} at half size; CPU, {args.threads} threads; "
        f"load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; medians over the rounds\n"
    )
    print(
        f"official alpha on the calibration image's unknown region: mean {cal['mean']:.2f}, std {cal['std']:.2f}, "
        f"{cal['at_0']:.1%} at 0, {cal['at_1']:.1%} at 1\n"
    )
    for item, runs in results:
        print(
            f"- {item['label']}: {item['name']} {item['size'][0]}x{item['size'][1]}, trimap {item['how']}, "
            f"{item['unknown']:.1%} unknown, {item['rounds']} round(s); "
            f"official semantic trimap max {runs['official'][0]['smap_max']:.3f}"
        )
    print()
    print(
        "| image | size | mattecli strategy | official first / second (s) | mattecli first / second (s) "
        "| ratio official / mattecli (second) | second call CPU official / mattecli (s) | ratio (CPU) "
        "| process wall official / mattecli (s) | process CPU official / mattecli (s) "
        "| peak RSS official / mattecli (MiB) | mean abs diff | max abs diff | unknown px > 1/255 | known px equal |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for item, runs in results:
        off = runs["official"]
        for s in strategies:
            mc = runs[s]
            eq = _equality(off[-1]["alpha"], mc[-1]["alpha16"], item["tri"])
            stable = all(m["same_both_calls"] for m in mc) and all(
                np.array_equal(m["alpha16"], mc[0]["alpha16"]) for m in mc
            )
            print(
                f"| {item['name']} | {item['size'][0]}x{item['size'][1]} | {s} "
                f"| {med(off, 'first'):.2f} / {med(off, 'second'):.2f} "
                f"| {med(mc, 'first'):.2f} / {med(mc, 'second'):.2f} "
                f"| {med(off, 'second') / med(mc, 'second'):.2f} "
                f"| {med(off, 'cpu_second'):.1f} / {med(mc, 'cpu_second'):.1f} "
                f"| {med(off, 'cpu_second') / med(mc, 'cpu_second'):.2f} "
                f"| {med(off, 'wall'):.1f} / {med(mc, 'wall'):.1f} | {med(off, 'cpu'):.1f} / {med(mc, 'cpu'):.1f} "
                f"| {med(off, 'rss'):.0f} / {med(mc, 'rss'):.0f} | {eq['mean']:.1e} | {eq['max']:.1e} "
                f"| {eq['over']:.2%} | {'yes' if eq['known_same'] else 'NO'}"
                f"{'' if stable else ' (mattecli runs differ)'} |"
            )


if __name__ == "__main__":
    main()
