"""SHM: mattecli's ``--method shm`` against the MindSpore model zoo's own evaluation, on the same weights.

Not part of the test suite: it needs the model zoo's Semantic Human Matting code
(github.com/mindspore-ai/models, branch r1.8, ``official/cv/semantic_human_matting``; never
copied into this project, imported at run time from the folder given with ``--official``) and
MindSpore, which needs ``numpy<2`` and so lives in its own environment, outside the repository:

    python3 -m venv /work/msenv
    /work/msenv/bin/pip install 'numpy<2' mindspore==2.10.0 opencv-python-headless
    git --git-dir=MIRROR archive r1.8 official/cv/semantic_human_matting | tar -x -C /work/official_src
    /work/msenv/bin/python bench/shm_official_parity.py \\
        --official /work/official_src/official/cv/semantic_human_matting \\
        --mattecli-python .venv/bin/python IMAGE [IMAGE ...] [--threads 2]

(MIRROR: a clone of mindspore-ai/models; any checkout of r1.8 will do.) The script itself runs
under the MindSpore environment; mattecli runs in a subprocess under ``--mattecli-python`` (the
project's own venv), and each side runs in its own process, so that wall time and peak RSS are
its own.

No trained weights can be downloaded here, so both sides run the same *random* network, made the
MindSpore way: the official ``network.net()`` with MindSpore's own initialisers (seeded), random
batch-norm statistics, every batch norm then rescaled on the images' official 320x320 inputs so
that its output has unit spread (the hook of ``mattecli/methods/calibration.py``, written for
MindSpore cells), and the T-Net's last convolution shifted and scaled so that background,
unknown and foreground each win somewhere with confident margins. ``mindspore.save_checkpoint``
writes it; ``mattecli weights import shm-mindspore`` imports that file.

Official side: ``eval.py``'s ``run_test`` itself (GRAPH mode, CPU) on a dataset folder laid out as
it expects (``test/test.txt``, ``test/clip_img``, ``test/alpha``: links to the images, each listed
twice so that the second call is a warm one; the ground truth is the image itself, so its SAD
means nothing). Its ``cv2`` is wrapped to keep what ``seg_process`` resizes: the 320x320 8-bit
input and the alpha resized back (unclipped). mattecli side: ``io.read_image``, the ``shm``
method (variant ``shm-mindspore``, its default ``resize`` strategy, ``mattecli.methods.shm``),
``predict`` twice, the alpha written and read back as a 16-bit PNG (``io.write_alpha``, as
``matte --bit-depth 16`` does).
Compared: the 16-bit alpha against the official alpha clipped to [0, 1] (mattecli clips on
purpose, an image cannot store the rest); also, as a check of the networks alone, mattecli's
network and bicubic resize back fed the official 320x320 input, unclipped, against the official
unclipped alpha. Timings are ``seg_process`` (official) and ``predict`` (mattecli), first and
second call.

``--opencv-generic`` makes both sides call ``cv2.setUseOptimized(False)``: OpenCV then resizes 8-bit
images with its generic fixed-point kernel, whose rounding differs from a float resize on up to
2.6% of the 320x320 input values (2.jpg; on this CPU the optimised kernel happens to agree with
the float resize). ``--float-resize`` gives mattecli its resize before issue 21 (the float image resized,
then rounded), to show the difference that fix makes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

MEAN_BGR = (104.0, 112.0, 121.0)  # eval.py
SIZE = 320  # config.yaml test.size


def _vm_hwm_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would include the parent's peak across exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _official_input(path: Path) -> np.ndarray:
    """``seg_process``'s network input for one file, ``(1, 3, 320, 320)`` float32 (for calibration only)."""
    import cv2

    img = cv2.resize(cv2.imread(str(path)), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    return ((img - MEAN_BGR) / 255.0).transpose(2, 0, 1)[None].astype(np.float32)


# ----------------------------------------------------------------------------- MindSpore: weights
def _make_weights(official: Path, images: list[Path], ckpt: Path, seed: int) -> dict:
    """The official network with random, calibrated weights, saved by ``mindspore.save_checkpoint``."""
    sys.path.insert(0, str(official))
    import mindspore as ms
    from mindspore import Tensor, nn

    ms.set_context(mode=ms.PYNATIVE_MODE)  # forward hooks need PyNative
    ms.set_device("CPU")
    ms.set_seed(seed)
    import src.model.network as network

    net = network.net()
    net.set_train(False)
    rng = np.random.default_rng(seed)
    bns = [cell for _, cell in net.cells_and_names() if isinstance(cell, nn.BatchNorm2d)]
    for bn in bns:  # non-trivial statistics and affine terms (tests/helpers.py random_net)
        c = bn.gamma.shape[0]
        bn.moving_mean.set_data(Tensor(rng.uniform(-0.1, 0.1, c).astype(np.float32)))
        bn.moving_variance.set_data(Tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))
        bn.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, c).astype(np.float32)))
        bn.beta.set_data(Tensor(rng.uniform(-0.1, 0.1, c).astype(np.float32)))
    x = Tensor(np.concatenate([_official_input(p) for p in images]))
    done: set[int] = set()

    def calibrate(cell, _inputs, output):  # mattecli/methods/calibration.py, for MindSpore cells
        if id(cell) in done:
            return None
        done.add(id(cell))
        s = float(output.std().asnumpy())
        if not s > 0:
            return None
        cell.gamma.set_data(cell.gamma / s)
        cell.beta.set_data(cell.beta / s)
        return output / s

    handles = [bn.register_forward_hook(calibrate) for bn in bns]
    net(x)
    for handle in handles:
        handle.remove()
    # T-Net head: each class centred on its own median, spread to a standard deviation of 4, the
    # unknown class favoured a little (else one class wins everywhere, or softmax stays uniform)
    logits = net.t_net(x).asnumpy().transpose(1, 0, 2, 3).reshape(3, -1)
    conv = net.t_net.last_conv
    gain = 4.0 / float(logits.std())
    bias = (conv.bias.asnumpy() - np.median(logits, axis=1)) * gain
    bias[1] += 0.5 * 4.0
    conv.weight.set_data(conv.weight * gain)
    conv.bias.set_data(Tensor(bias.astype(np.float32)))
    trimap, _alpha = net(x)
    classes = np.bincount(trimap.asnumpy().argmax(axis=1).ravel(), minlength=3) / trimap[:, 0].size
    ms.save_checkpoint(net, str(ckpt))
    return {"classes": classes.tolist(), "batch_norms": len(bns)}


# ----------------------------------------------------------------------------- MindSpore: eval.py
class _Cv2Keeper(types.ModuleType):
    """``cv2`` for ``eval.py``: the same functions, keeping each ``resize`` result."""

    def __init__(self, cv2):
        super().__init__("cv2")
        self._cv2, self.kept = cv2, []

    def __getattr__(self, name):
        return getattr(self._cv2, name)

    def resize(self, *args, **kwargs):
        out = self._cv2.resize(*args, **kwargs)
        self.kept.append(out)
        return out


def _official_side(official: Path, ckpt: Path, names: list[str], data: Path, out: Path, generic: bool) -> dict:
    """``eval.py``'s ``run_test`` on a dataset folder holding the images (each listed twice)."""
    sys.path.insert(0, str(official))
    import cv2

    cv2.setUseOptimized(not generic)
    import eval as official_eval  # noqa: E402  (the model zoo's eval.py)

    keeper = _Cv2Keeper(cv2)
    official_eval.cv2 = keeper
    calls = []
    real_seg_process = official_eval.seg_process

    def timed_seg_process(cfg, image, image_gt, net):
        keeper.kept.clear()
        start = time.perf_counter()
        result = real_seg_process(cfg, image, image_gt, net)
        seconds = time.perf_counter() - start
        input320, _trimap, alpha = keeper.kept  # image, trimap channel 0, alpha: seg_process's resizes
        calls.append({"seconds": seconds, "input320": input320, "alpha": alpha})
        return result

    official_eval.seg_process = timed_seg_process
    lines = []
    for name in names:  # clip_img/<dir>/clip/<file> and alpha/<dir>/matting/<file>, as camera_seg reads them
        for kind, sub in (("clip_img", "clip"), ("alpha", "matting")):
            folder = data / "test" / kind / name / sub
            folder.mkdir(parents=True, exist_ok=True)
        lines += [f"{name}/matting/{name}"] * 2
    for name in names:
        src = (data / "images" / name).resolve()
        (data / "test" / "clip_img" / name / "clip" / name).symlink_to(src)
        (data / "test" / "alpha" / name / "matting" / name).symlink_to(src)
    (data / "test" / "test.txt").write_text("\n".join(lines) + "\n")
    cfg = {
        "device_target": "CPU",
        "model": str(ckpt),
        "test_pic_path": str(data),
        "output_path": str(out / "official_output"),
        "size": SIZE,
    }
    official_eval.run_test(cfg)
    result = {}
    for i, name in enumerate(names):
        first, second = calls[2 * i], calls[2 * i + 1]
        assert np.array_equal(first["alpha"], second["alpha"])
        np.save(out / f"official_{name}.npy", second["alpha"].astype(np.float32))
        np.save(out / f"official_{name}.input320.npy", second["input320"])
        result[name] = {"first": first["seconds"], "seconds": second["seconds"]}
    return result


# ----------------------------------------------------------------------------- mattecli
def _float_resize(image: np.ndarray, size: int) -> np.ndarray:
    """mattecli's resize before issue 21: the float image resized on the 0..255 scale, then rounded."""
    import cv2

    small = cv2.resize(np.asarray(image, np.float32) * 255.0, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(small), 0, 255).astype(np.float32) / 255.0


def _mattecli_side(names: list[str], data: Path, out: Path, generic: bool, float_resize: bool) -> dict:
    import cv2

    cv2.setUseOptimized(not generic)
    from mattecli import io, methods
    from mattecli.methods.base import MethodOptions
    from mattecli.methods.shm import processor as shm

    if float_resize:
        shm.resize_8bit = _float_resize
    start = time.perf_counter()
    matter = methods.get("shm").create(MethodOptions(device="cpu"))
    load = time.perf_counter() - start
    processor = matter.processor  # mattecli.methods.shm.processor.ShmProcessor
    assert processor.strategy == "resize" and processor.encoding == "mindspore"
    result = {"load_seconds": load}
    for name in names:
        image = io.read_image(data / "images" / name)
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            alpha = matter.predict(image).alpha
            seconds.append(time.perf_counter() - start)
        png = out / f"mattecli_{name}.png"
        io.write_alpha(png, alpha, bit_depth=16)
        alpha16 = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        assert alpha16.dtype == np.uint16
        np.save(out / f"mattecli_{name}.npy", alpha16.astype(np.float32) / 65535.0)
        ours320 = np.rint(shm.resize_8bit(image, shm.RESIZE_SIZE)[:, :, ::-1] * 255).astype(np.uint8)
        np.save(out / f"mattecli_{name}.input320.npy", ours320)
        # the networks alone: mattecli's network and resize back on the official 320x320 input, unclipped
        bgr320 = np.load(out / f"official_{name}.input320.npy")
        _prob, alpha320 = processor._forward(bgr320[:, :, ::-1].astype(np.float32) / 255.0)
        h, w = image.shape[:2]
        np.save(out / f"mattecli_{name}.net.npy", cv2.resize(alpha320, (w, h), interpolation=cv2.INTER_CUBIC))
        result[name] = {"first": seconds[0], "seconds": seconds[1]}
    return result


# ----------------------------------------------------------------------------- driver
def _child(argv: list[str]) -> None:
    side, p = argv[0], json.loads(argv[1])
    if side == "weights":
        result = _make_weights(Path(p["official"]), [Path(i) for i in p["images"]], Path(p["ckpt"]), p["seed"])
    elif side == "official":
        result = _official_side(
            Path(p["official"]), Path(p["ckpt"]), p["names"], Path(p["data"]), Path(p["out"]), p["generic"]
        )
    else:
        result = _mattecli_side(p["names"], Path(p["data"]), Path(p["out"]), p["generic"], p["float_resize"])
    result["peak_rss_mib"] = _vm_hwm_mib()
    print("RESULT " + json.dumps(result))


def _run(python: str, side: str, payload: dict, env: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "--child", side, json.dumps(payload)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{side} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :]), wall


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--official", type=Path, required=True, help="official/cv/semantic_human_matting (r1.8)")
    parser.add_argument("--mattecli-python", default=".venv/bin/python", help="a Python with mattecli installed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opencv-generic", action="store_true", help="cv2.setUseOptimized(False) on both sides")
    parser.add_argument("--float-resize", action="store_true", help="mattecli's resize before issue 21")
    args = parser.parse_args()
    official = args.official.resolve()
    mattecli_python = str(Path(args.mattecli_python).absolute())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "images").mkdir()
        names = []
        for i, image in enumerate(args.images):  # unique names, the original extensions
            name = f"img{i}{image.suffix.lower()}"
            (work / "images" / name).symlink_to(image.resolve())
            names.append(name)
        env = dict(
            os.environ,
            OMP_NUM_THREADS=str(args.threads),
            HF_HUB_CACHE=str(work / "hub"),
            MATTECLI_OFFLINE="1",
            GLOG_v="3",  # MindSpore: errors only
        )
        ckpt = work / "shm_random.ckpt"
        weights, _ = _run(
            sys.executable,
            "weights",
            {
                "official": str(official),
                "images": [str(p.resolve()) for p in args.images],
                "ckpt": str(ckpt),
                "seed": args.seed,
            },
            env,
        )
        proc = subprocess.run(
            [mattecli_python, "-m", "mattecli", "weights", "import", "shm-mindspore", str(ckpt)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode:
            raise SystemExit(f"weights import failed:\n{proc.stderr}")
        common = {"names": names, "data": str(work), "out": str(work), "generic": args.opencv_generic}
        off, off_wall = _run(sys.executable, "official", common | {"official": str(official), "ckpt": str(ckpt)}, env)
        ours, ours_wall = _run(mattecli_python, "mattecli", common | {"float_resize": args.float_resize}, env)
        rows = []
        for image, name in zip(args.images, names, strict=True):
            ref = np.load(work / f"official_{name}.npy")
            alpha = np.load(work / f"mattecli_{name}.npy")
            net = np.load(work / f"mattecli_{name}.net.npy")
            in_off = np.load(work / f"official_{name}.input320.npy")
            in_ours = np.load(work / f"mattecli_{name}.input320.npy")
            diff = np.abs(alpha - np.clip(ref, 0.0, 1.0))
            rows.append(
                {
                    "image": image,
                    "size": f"{ref.shape[1]}x{ref.shape[0]}",
                    "inputs_differing": int((in_off != in_ours).sum()),
                    "mean": float(diff.mean()),
                    "off": float((diff > 1 / 255).mean()),
                    "max": float(diff.max()),
                    "net_max": float(np.abs(net - ref).max()),
                    "outside": float(((ref < 0) | (ref > 1)).mean()),
                    "official_s": (off[name]["first"], off[name]["seconds"]),
                    "mattecli_s": (ours[name]["first"], ours[name]["seconds"]),
                }
            )
    import cv2
    import mindspore

    print(
        f"random calibrated SHM (MindSpore model zoo r1.8, seed {args.seed}), CPU, {args.threads} threads; "
        f"MindSpore {mindspore.__version__}, OpenCV {cv2.__version__} (official side)"
        + (", OpenCV generic kernels" if args.opencv_generic else "")
        + (", mattecli with the pre-issue-21 float resize" if args.float_resize else "")
    )
    bg, unknown, fg = weights["classes"]
    print(f"T-Net argmax on the 320x320 inputs: {bg:.0%} background, {unknown:.0%} unknown, {fg:.0%} foreground\n")
    print(
        "| image | size | 320x320 input values differing | mean abs diff | pixels off by > 1/255 | max abs diff "
        "| networks alone, max (unclipped) | official alpha outside [0, 1] | official seg_process (s) first / second "
        "| mattecli predict (s) first / second |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['image'].name} | {r['size']} | {r['inputs_differing']} | {r['mean']:.1e} | {r['off']:.2%} "
            f"| {r['max']:.1e} | {r['net_max']:.1e} | {r['outside']:.2%} "
            f"| {r['official_s'][0]:.2f} / {r['official_s'][1]:.2f} "
            f"| {r['mattecli_s'][0]:.2f} / {r['mattecli_s'][1]:.2f} |"
        )
    print(
        f"\nwhole processes: official {off_wall:.1f} s (peak RSS {off['peak_rss_mib']:.0f} MiB), "
        f"mattecli {ours_wall:.1f} s (peak RSS {ours['peak_rss_mib']:.0f} MiB, model load {ours['load_seconds']:.2f} s)"
    )
    worst_mean, worst_off = max(r["mean"] for r in rows), max(r["off"] for r in rows)
    ok = worst_mean <= 1e-5 and worst_off == 0
    print(f"parity (mean abs diff <= 1e-5 and no pixel off by > 1/255 on every image): {'yes' if ok else 'NO'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
