"""AIM: mattecli against the authors' own test code, on the same image and the same weights.

Not part of the test suite: it needs a checkout of the official code (github.com/JizhiziLi/AIM,
never copied into this project) and scikit-image, in a separate environment:

    python -m venv /tmp/offenv && /tmp/offenv/bin/pip install torch==2.13.0 scikit-image tqdm -e .
    /tmp/offenv/bin/python bench/aim_official_parity.py --official /path/to/AIM/core IMAGE [--threads 2]

No released weights can be downloaded here, so both sides run the same *random* AimNet: the
official module is built (its ImageNet backbone file replaced by a random one), its state dict
is saved as the official checkpoint format, imported with `mattecli weights import`, and both
pipelines run the HYBRID strategy on the image. The official script imports torchvision only
for `transforms.Normalize` (stubbed here with the same arithmetic) and pins scikit-image 0.14.5,
whose `resize` defaults (order 1, mode 'constant', no anti-aliasing, clip) are passed
explicitly to the modern scikit-image. Each side runs in its own subprocess so that wall time
and peak RSS are its own. Prints one markdown table row per side plus the alpha differences.

Speed on a shared machine: ``--rounds N`` runs every side N times, alternating the order of the
sides from one round to the next, and reports per side the median first and second call (the
steady state) and the median over rounds of ``official second call / side's second call``, each
ratio taken within one round. ``--baseline DIR`` adds a side running the mattecli package found in
``DIR`` (e.g. ``git archive`` of the commit before a change) next to the current one. The load
average before and after is printed.

    PYTHONPATH=/tmp/skpkgs .venv/bin/python bench/aim_official_parity.py --official /tmp/AIM/core \
        ../shared/data/aim-samples/1.jpg --strategies hybrid --rounds 3 --baseline /tmp/base22
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


def _official_side(core: Path, image_path: Path, ckpt: Path, out: Path) -> dict:
    """Run the authors' HYBRID inference (their functions, their module) and save the alpha."""
    import torch
    from PIL import Image

    transforms = types.ModuleType("torchvision.transforms")

    class Normalize:  # the one torchvision call test.py makes
        def __init__(self, mean, std):
            self.mean = torch.tensor(mean)[:, None, None]
            self.std = torch.tensor(std)[:, None, None]

        def __call__(self, t):
            return (t - self.mean) / self.std

    transforms.Normalize = Normalize
    tv = types.ModuleType("torchvision")
    tv.transforms = transforms
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms})
    sys.path.insert(0, str(core))
    os.chdir(ckpt.parent)  # resnet34_mp() loads models/pretrained/r34mp_pretrained_imagenet.pth.tar from cwd
    import skimage.transform

    real_resize = skimage.transform.resize

    def resize_0145(image, output_shape):  # scikit-image 0.14.5 defaults, as pinned by the authors
        return real_resize(
            image, output_shape, order=1, mode="constant", cval=0, clip=True, preserve_range=False, anti_aliasing=False
        )

    import test as official  # noqa: E402  (core/test.py)

    official.resize = resize_0145
    seen = {}
    real_fuse = official.get_masked_local_from_global_test

    def fuse_and_keep(global_result, local_result):  # keep the upsampled glance trimap for the report
        seen["trimap_up"] = global_result
        return real_fuse(global_result, local_result)

    official.get_masked_local_from_global_test = fuse_and_keep
    from network.AimNet import AimNet

    model = AimNet()
    model.load_state_dict(torch.load(ckpt, map_location="cpu")["state_dict"], strict=True)
    model.eval()
    # the networks alone, on one identical input: ours loaded from the official state dict
    from mattecli.methods.aim.convert import remap_official
    from mattecli.methods.aim.net import AimNet as OurNet

    ours = OurNet().eval()
    ours.load_state_dict(remap_official(dict(model.state_dict())))
    probe = torch.randn(1, 3, 160, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net_diff = max(float((a - b).abs().max()) for a, b in zip(model(probe), ours(probe), strict=True))
    del ours
    img = np.array(Image.open(image_path))[:, :, :3]
    args = types.SimpleNamespace(cuda=False, test_choice="HYBRID")
    seconds = []
    for _ in range(2):  # the first call warms up allocators and kernels; both sides report the second
        start = time.perf_counter()
        with torch.no_grad():
            alpha = official.inference_img(args, model, img)
        seconds.append(time.perf_counter() - start)
    np.save(out, alpha.astype(np.float32))
    np.save(out.with_suffix(".trimap.npy"), seen["trimap_up"])
    return {"first": seconds[0], "seconds": seconds[1], "network_max_diff": net_diff}


def _mattecli_side(image_path: Path, hf_cache: Path, out: Path, strategy: str, package: str | None = None) -> dict:
    if package:  # another checkout of mattecli (the baseline side)
        sys.path.insert(0, package)
    from huggingface_hub import constants as hf_constants

    hf_constants.HF_HUB_CACHE = str(hf_cache)
    from PIL import Image

    from mattecli import methods
    from mattecli.methods.base import EngineOptions, MethodOptions

    try:  # what `mattecli matte` does at start-up on the CPU (the library itself never sets it)
        from mattecli.runtime.allocator import configure_for_cli

        configure_for_cli("cpu", None)
    except ImportError:  # a checkout from before the CLI made that choice
        pass
    matter = methods.get("aim").create(MethodOptions(device="cpu", engine=EngineOptions(strategy=strategy)))
    # the official script reads with PIL and no EXIF transpose; feed the very same pixels
    image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255.0
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        alpha = matter.predict(image).alpha
        seconds.append(time.perf_counter() - start)
    np.save(out, alpha)
    return {"first": seconds[0], "seconds": seconds[1]}


def _child(argv: list[str]) -> None:
    side, payload = argv[0], json.loads(argv[1])
    if side == "official":
        result = _official_side(
            Path(payload["core"]), Path(payload["image"]), Path(payload["ckpt"]), Path(payload["out"])
        )
    else:
        result = _mattecli_side(
            Path(payload["image"]),
            Path(payload["hf_cache"]),
            Path(payload["out"]),
            payload["strategy"],
            payload.get("package"),
        )
    result["peak_rss_mib"] = _vm_hwm_mib()
    print(json.dumps(result))


def _vm_hwm_mib() -> float:
    """This process's peak RSS. (ru_maxrss would include the parent's peak: Linux keeps it across exec.)"""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _balance_classes(model, image: Path) -> None:
    """Shift the glance head's biases so that random weights still predict all three classes on this image
    (otherwise one class wins everywhere and the comparison would only see constant mattes)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from mattecli.methods.base import IMAGENET
    from mattecli.runtime.tensors import image_to_tensor

    rgb = np.asarray(Image.open(image).convert("RGB"), np.float32) / 255
    x = image_to_tensor(rgb, torch.device("cpu"), IMAGENET.mean, IMAGENET.std)
    h, w = x.shape[2:]
    x = F.interpolate(x, size=(max(32, h // 4 // 32 * 32), max(32, w // 4 // 32 * 32)), mode="bilinear")
    logits = {}
    handle = model.decoder_final_g.register_forward_hook(lambda m, i, o: logits.setdefault("g", o))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    g = logits["g"][0]
    with torch.no_grad():
        # centre each class on its own median: every class then wins somewhere
        model.decoder_final_g.bias -= g.flatten(1).median(dim=1).values
        model.decoder_final_g.bias[1] += 0.5 * g[1].std()  # and favour the transition class a little


def _make_weights(core: Path, work: Path, image: Path) -> Path:
    """The official module with random weights, saved the way the authors save checkpoints."""
    import torch

    sys.path.insert(0, str(core))
    from mattecli.methods.aim.net import AimResNet34MP

    torch.manual_seed(0)
    backbone = AimResNet34MP()
    sd = dict(backbone.state_dict())
    sd["fc.weight"] = torch.randn(1000, 512) * 0.01
    sd["fc.bias"] = torch.zeros(1000)
    pre = work / "models" / "pretrained"
    pre.mkdir(parents=True, exist_ok=True)
    torch.save(sd, pre / "r34mp_pretrained_imagenet.pth.tar")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        from network.AimNet import AimNet

        model = AimNet()
    finally:
        os.chdir(cwd)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    _balance_classes(model, image)
    ckpt = work / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    return ckpt


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    parser.add_argument("--official", type=Path, required=True, help="the official repo's core/ folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strategies", default="hybrid,tiled", help="mattecli strategies to run")
    parser.add_argument("--rounds", type=int, default=1, help="runs per side, alternating the order")
    parser.add_argument("--baseline", type=Path, help="a checkout whose mattecli runs as the side 'baseline'")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = _make_weights(args.official.resolve(), work, args.image.resolve())
        from huggingface_hub import constants as hf_constants

        hf_constants.HF_HUB_CACHE = str(work / "hub")
        import mattecli.methods  # noqa: F401  (plugs AIM's network into mattecli.weights)
        from mattecli.weights import import_checkpoint

        import_checkpoint("aim", ckpt)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        runs, rounds = {}, []
        sides = [("official", {"core": str(args.official.resolve()), "ckpt": str(ckpt)}, "hybrid")]
        sides += [("mattecli", {"hf_cache": str(work / "hub"), "strategy": s}, s) for s in args.strategies.split(",")]
        if args.baseline:
            sides += [
                ("baseline", {"hf_cache": str(work / "hub"), "strategy": s, "package": str(args.baseline.resolve())}, s)
                for s in args.strategies.split(",")
            ]
        for r in range(args.rounds):
            this_round = {}
            for side, payload, strategy in sides if r % 2 == 0 else sides[::-1]:
                out = work / f"{side}_{strategy}.npy"
                payload = dict(payload, image=str(args.image.resolve()), out=str(out), strategy=strategy)
                child = "official" if side == "official" else "mattecli"
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", child, json.dumps(payload)],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=False,
                )
                if proc.returncode:
                    raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
                this_round[(side, strategy)] = json.loads(proc.stdout.strip().splitlines()[-1])
                runs[(side, strategy)] = this_round[(side, strategy)] | {"alpha": np.load(out)}
                print(f"round {r + 1} {side} {strategy}: {this_round[(side, strategy)]}", file=sys.stderr)
            rounds.append(this_round)
        trimap_up = np.load(work / "official_hybrid.trimap.npy")
    ref = runs[("official", "hybrid")]["alpha"]
    # pixels whose upsampled glance value is within float rounding of 0 or 255 but not exactly: the official
    # code's choice there depends on scikit-image's arithmetic (which changed between versions)
    near_fg = (np.abs(trimap_up - 255) < 0.0255) & (trimap_up != 255)
    near_bg = (np.abs(trimap_up) < 0.0255) & (trimap_up != 0)
    rounding = near_fg | near_bg
    h, w = ref.shape
    print(f"image {args.image.name} {w}x{h}, random AimNet weights, CPU, {args.threads} threads\n")
    net_diff = runs[("official", "hybrid")]["network_max_diff"]
    print(f"networks alone on one 160x224 input: max |official - mattecli| = {net_diff:.1e}\n")
    cls = {"bg": (ref == 0).mean(), "fg": (ref == 1).mean()}
    print(f"official alpha: {cls['bg']:.0%} exactly 0, {cls['fg']:.0%} exactly 1, the rest from the focus pass\n")
    print(f"{rounding.mean():.2%} of pixels have an upsampled glance value within 1e-4 of 0/255 but not exactly\n")
    print(f"{args.rounds} round(s), sides alternating; medians over rounds; load average after: {os.getloadavg()}\n")
    print(
        "| code | strategy | first call (s) | second call (s) | official / this (second call, per round) "
        "| peak RSS (MiB) | max abs diff | mean abs diff | pixels > 1/255 | max abs diff, rounding pixels excluded | mean abs diff, rounding pixels excluded |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for (side, strategy), run in runs.items():
        diff = np.abs(run["alpha"] - ref)
        firsts = [rd[(side, strategy)]["first"] for rd in rounds]
        seconds = [rd[(side, strategy)]["seconds"] for rd in rounds]
        ratios = [rd[("official", "hybrid")]["seconds"] / rd[(side, strategy)]["seconds"] for rd in rounds]
        rss = max(rd[(side, strategy)]["peak_rss_mib"] for rd in rounds)
        per_round = ", ".join(f"{x:.2f}" for x in ratios)
        print(
            f"| {side} | {strategy} | {np.median(firsts):.2f} | {np.median(seconds):.2f} "
            f"| **{np.median(ratios):.2f}** ({per_round}) | {rss:.0f} | {diff.max():.2e} | "
            f"{diff.mean():.2e} | {(diff > 1 / 255).mean():.2%} | {diff[~rounding].max():.2e} "
            f"| {diff[~rounding].mean():.2e} |"
        )


if __name__ == "__main__":
    main()
