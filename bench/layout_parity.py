"""Byte-identical outputs across a refactor: every method, strategy and command on fixed inputs and weights.

    python bench/layout_parity.py prepare WORK          # once: random calibrated weights + inputs in WORK
    python bench/layout_parity.py run WORK OUT.json     # run every command through the CLI, hash every output
    python bench/layout_parity.py compare A.json B.json # list what differs (exit 1 if anything does)

``prepare`` builds each weights variant's network with fixed seeds, calibrates its batch norms
on one small scene (random networks saturate otherwise, and saturated alphas hide differences),
and saves it as a ``.safetensors`` file of mattecli's layout (``WORK/weights``); it also writes the
inputs (``WORK/images``, ``WORK/trimaps``: the two example scenes and a 720x480 crop of a real
photo with an elliptic trimap). ``run`` uses only the command line, which the refactor keeps:
it imports the weights into a private ``HF_HOME`` with ``mattecli weights import`` and runs each
case below with ``MATTECLI_OFFLINE=1``, 16-bit outputs and one thread, recording the sha256 of
every file written. Run ``prepare`` at the commit before the change, then ``run`` before and after
on the same WORK folder, then ``compare``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "data" / "aim-samples" / "1.jpg"
VARIANTS = ("aim", "sim-comp1k", "sim-classifier", "shm-mindspore", "shm", "msia")
#: variants whose manifest pins the authors' sha256: random weights are given with --weights, never imported
BY_FILE = ("vitmatte-s-comp1k",)

#: name -> CLI arguments after the command's inputs ({img}, {tri}, {out} substituted)
CASES: dict[str, list[str]] = {
    "cf-auto": ["matte", "{img}", "{out}", "-m", "cf", "--trimap", "{tri}"],
    # the tile side (before 0.3: the core; 128 then is 128 + 2 x 128 now)
    "cf-tiled": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "cf",
        "--trimap",
        "{tri}",
        "--strategy",
        "tiled",
        "--tile-size",
        "384",
    ],
    "cf-cutout": ["matte", "{img}", "{out}", "-m", "cf", "--trimap", "{tri}", "--cutout", "--foreground"],
    "knn-auto": ["matte", "{img}", "{out}", "-m", "knn", "--trimap", "{tri}"],
    "aim-hybrid": ["matte", "{img}", "{out}", "-m", "aim", "--save-trimap"],
    "aim-resize": ["matte", "{img}", "{out}", "-m", "aim", "--strategy", "resize"],
    "aim-whole": ["matte", "{img}", "{out}", "-m", "aim", "--strategy", "whole"],
    "aim-tiled": ["matte", "{img}", "{out}", "-m", "aim", "--strategy", "tiled", "--tile-size", "256"],
    "aim-scales": ["matte", "{img}", "{out}", "-m", "aim", "--scales", "0.25,1"],
    "sim-auto": ["matte", "{img}", "{out}", "-m", "sim", "--trimap", "{tri}"],
    "sim-tiled": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "sim",
        "--trimap",
        "{tri}",
        "--strategy",
        "tiled",
        "--tile-size",
        "256",
    ],
    "shm-ms-resize": ["matte", "{img}", "{out}", "-m", "shm", "--save-trimap"],
    "shm-ms-whole": ["matte", "{img}", "{out}", "-m", "shm", "--strategy", "whole"],
    "shm-ms-tiled": ["matte", "{img}", "{out}", "-m", "shm", "--strategy", "tiled", "--tile-size", "128"],
    "shm-paper": ["matte", "{img}", "{out}", "-m", "shm", "--variant", "shm"],
    "shm-paper-tiled": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "shm",
        "--variant",
        "shm",
        "--strategy",
        "tiled",
        "--tile-size",
        "128",
    ],
    "msia-whole": ["matte", "{img}", "{out}", "-m", "msia", "--strategy", "whole"],
    "msia-trimap-tiled": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "msia",
        "--trimap",
        "{tri}",
        "--strategy",
        "tiled",
        "--tile-size",
        "256",
    ],
    "trimap-from-aim": ["trimap", "--from-image", "-m", "aim", "{img}", "{out}"],
    "trimap-from-shm": ["trimap", "--from-image", "-m", "shm", "{img}", "{out}"],
    "trimap-erode": ["trimap", "{tri}", "{out}", "--erode", "3", "--dilate", "5"],
    "semantic": ["semantic-trimap", "{img}", "{out}", "--trimap", "{tri}", "--preview"],
    "vitmatte": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "vitmatte",
        "--trimap",
        "{tri}",
        "--weights",
        "{w}/vitmatte-s-comp1k.safetensors",
    ],
    "vitmatte-tiled": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "vitmatte",
        "--trimap",
        "{tri}",
        "--strategy",
        "tiled",
        "--tile-size",
        "256",
        "--weights",
        "{w}/vitmatte-s-comp1k.safetensors",
    ],
    "vitmatte-auto-trimap": [
        "matte",
        "{img}",
        "{out}",
        "-m",
        "vitmatte",
        "--weights",
        "{w}/vitmatte-s-comp1k.safetensors",
    ],
}


# ----------------------------------------------------------------------------- prepare
def _scene(h: int, w: int):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot((yy - h / 2) / (h * 0.32), (xx - w / 2) / (w * 0.3))
    alpha = np.clip((1.15 - r) / 0.3, 0, 1).astype(np.float32)
    rng = np.random.default_rng(0)
    fg = np.stack([0.8 + 0.1 * np.sin(xx / 7), 0.6 + 0.1 * np.cos(yy / 9), 0.3 + 0 * xx], -1)
    bg = np.stack([0.2 + 0.1 * np.sin(yy / 11), 0.3 + 0 * xx, 0.5 + 0.1 * np.cos(xx / 5)], -1)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg + rng.normal(0, 0.01, (h, w, 3))
    return np.clip(image, 0, 1).astype(np.float32), alpha


def _trimap(alpha):
    import numpy as np

    tri = np.full(alpha.shape, 128, np.uint8)
    tri[alpha <= 0.0] = 0
    tri[alpha >= 1.0] = 255
    return tri


def _nets_and_calibrate(weights_dir: Path) -> None:
    """Seeded random networks of every variant, batch norms calibrated on one scene, saved in our layout."""
    import torch
    from safetensors.torch import save_file

    try:  # the layout after the refactor
        from mattecli.methods import calibration
        from mattecli.weights import get_architecture
    except ImportError:  # before it
        from mattecli.models import calibration

        from mattecli.weights import get_architecture

    image, alpha = _scene(192, 256)
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    weights_dir.mkdir(parents=True, exist_ok=True)
    for v in VARIANTS + BY_FILE:
        if v in BY_FILE and (weights_dir / f"{v}.safetensors").is_file():
            continue
        try:
            get_architecture(v)
        except Exception:  # noqa: BLE001 - a checkout before the method existed
            continue
        torch.manual_seed(sum(map(ord, v)))
        net = get_architecture(v).build().eval()
        with calibration.calibrating(net), torch.no_grad():
            for m in net.modules():  # non-trivial running statistics first
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.05, 0.05)
                    m.running_var.uniform_(0.8, 1.2)
            try:
                _calibration_forward(v, net, x, alpha)
            except Exception as err:  # noqa: BLE001 - a net we cannot feed stays uncalibrated (said so)
                print(f"{v}: not calibrated ({err})", file=sys.stderr)
        save_file({k: t.contiguous() for k, t in net.state_dict().items()}, str(weights_dir / f"{v}.safetensors"))


def _calibration_forward(variant: str, net, x, alpha) -> None:
    import torch

    xn = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    tri = torch.from_numpy(_trimap(alpha)).float()[None, None]
    if variant.startswith("vitmatte"):
        net(torch.cat([(x - 0.5) / 0.5, tri / 255.0], 1))
    elif variant == "sim-classifier":
        net(torch.cat([xn, tri / 255.0], 1))
    elif variant.startswith("sim"):
        two = torch.cat([(tri == 0).float(), (tri == 255).float()], 1)
        clicks = torch.zeros(1, 6, *x.shape[-2:])
        scores = torch.rand(1, 20, *x.shape[-2:]) * (tri == 128).float()
        net(x, two, xn, clicks, scores)
    else:
        net(xn)


def prepare(work: Path) -> None:
    import cv2
    import numpy as np

    (work / "images").mkdir(parents=True, exist_ok=True)
    (work / "trimaps").mkdir(parents=True, exist_ok=True)
    for name in ("fluffy", "veil"):
        for kind, dest in (("images", "images"), ("trimaps", "trimaps")):
            (work / dest / f"{name}.png").write_bytes((ROOT / "examples" / kind / f"{name}.png").read_bytes())
    if PHOTO.is_file():
        photo = cv2.imread(str(PHOTO))
        photo = cv2.resize(photo, (720, int(720 * photo.shape[0] / photo.shape[1])), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(work / "images" / "photo.png"), photo)
        h, w = photo.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        r = np.hypot((yy - h * 0.45) / (h * 0.35), (xx - w * 0.5) / (w * 0.25))
        tri = np.where(r < 0.8, 255, np.where(r > 1.1, 0, 128)).astype(np.uint8)
        cv2.imwrite(str(work / "trimaps" / "photo.png"), tri)
    _nets_and_calibrate(work / "weights")


# ----------------------------------------------------------------------------- run
def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATTECLI_"))}
    env.update(HF_HOME=str(home), MATTECLI_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mattecli", *args], env=env, capture_output=True, text=True)


def _digest(path: Path) -> str:
    """sha256 of a file; of a ``.safetensors`` file with its header canonicalised (keys sorted), since
    safetensors writes its metadata in an order that varies from one process to the next."""
    data = path.read_bytes()
    if path.suffix == ".safetensors":
        n = int.from_bytes(data[:8], "little")
        header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
        data = header + data[8 + n :]
    return hashlib.sha256(data).hexdigest()


def run(work: Path, out_json: Path) -> dict:
    home = work / "hf-home"
    env = _env(home)
    for v in VARIANTS:
        done = _cli(["weights", "import", v, str(work / "weights" / f"{v}.safetensors")], env)
        if done.returncode:
            raise SystemExit(f"weights import {v} failed: {done.stderr}")
    results: dict[str, dict] = {}
    for name, template in CASES.items():
        out = work / "out" / name
        if out.exists():
            import shutil

            shutil.rmtree(out)
        args = [a.format(img=work / "images", tri=work / "trimaps", out=out, w=work / "weights") for a in template] + (
            ["--bit-depth", "16"] if template[0] in ("matte",) else []
        )
        if template[0] in ("matte", "semantic-trimap") or "--from-image" in template:
            args += ["--device", "cpu"]
        done = _cli(args, env)
        files = {str(p.relative_to(out)): _digest(p) for p in sorted(out.rglob("*")) if p.is_file()}
        results[name] = {"exit": done.returncode, "files": files, "stderr": done.stderr.strip().splitlines()[-3:]}
        print(f"{name}: exit {done.returncode}, {len(files)} files", file=sys.stderr)
    out_json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return results


def compare(a: Path, b: Path) -> int:
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    bad = 0
    for name in sorted(set(ra) | set(rb)):
        x, y = ra.get(name), rb.get(name)
        if x is None or y is None:
            print(f"{name}: only in {'B' if x is None else 'A'}")
            bad += 1
            continue
        if x["exit"] != y["exit"]:
            print(f"{name}: exit {x['exit']} -> {y['exit']}")
            bad += 1
        for f in sorted(set(x["files"]) | set(y["files"])):
            if x["files"].get(f) != y["files"].get(f):
                print(
                    f"{name}/{f}: {'missing' if f not in x['files'] else x['files'][f][:12]} -> "
                    f"{'missing' if f not in y['files'] else y['files'][f][:12]}"
                )
                bad += 1
    total = sum(len(r["files"]) for r in ra.values())
    print(f"{len(ra)} cases, {total} files: {'identical' if not bad else f'{bad} differences'}")
    return 1 if bad else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("prepare").add_argument("work", type=Path)
    r = sub.add_parser("run")
    r.add_argument("work", type=Path)
    r.add_argument("out", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args()
    if args.cmd == "prepare":
        prepare(args.work)
    elif args.cmd == "run":
        run(args.work, args.out)
    else:
        raise SystemExit(compare(args.a, args.b))


if __name__ == "__main__":
    main()
