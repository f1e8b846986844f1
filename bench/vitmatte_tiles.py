"""ViTMatte on tiles against its whole pass: how close the tiles around unknown pixels come, and at what cost.

    .venv/bin/python bench/vitmatte_tiles.py [--size 1920x1080] [--tiles 512,768,1024] [--overlaps 64,128]

Random spread-out ViTMatte-S weights in the hub's layout (``bench/vitmatte_speed.py``'s), a photo-like
image with a trimap whose unknown band follows a wavy outline (``--band`` px either side). The whole
image is matted once (``--strategy whole``), then on tiles (``--strategy tiled --tile-size T
--tile-overlap O``) for each tile side and overlap, through ``mattecli.methods`` as ``matte`` does.
Prints, over the unknown pixels, the mean and max |tiled - whole|, the share off by more than 1/255,
the number of tiles run and the seconds of each. Random weights say how much the tiles change what
the network computes, not how good either matte is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    import torch
    from safetensors.torch import save_file
    from vitmatte_speed import _random_state, _scene

    from mattecli import methods
    from mattecli.methods.base import EngineOptions, MethodOptions

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="1920x1080")
    p.add_argument("--band", type=int, default=24)
    p.add_argument("--tiles", default="512,768,1024")
    p.add_argument("--overlaps", default="64,128")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w, h = map(int, args.size.split("x"))
    image8, trimap = _scene(w, h, args.band, 0)
    image = image8.astype(np.float32) / 255.0
    unknown = (trimap != 0) & (trimap != 255)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.safetensors"
        save_file({k: t.contiguous() for k, t in _random_state("small", 0).items()}, str(weights))

        def run(**engine):
            matter = methods.get("vitmatte").create(
                MethodOptions(device="cpu", weights=weights, engine=EngineOptions(**engine))
            )
            start = time.perf_counter()
            result = matter.predict(image, trimap)
            return result, time.perf_counter() - start

        whole, seconds = run(strategy="whole")
        print(f"{w}x{h}, {unknown.mean():.1%} unknown; whole: {seconds:.1f} s")
        print("| tile | overlap | tiles | seconds | mean diff | max diff | > 1/255 |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for tile in map(int, args.tiles.split(",")):
            for overlap in map(int, args.overlaps.split(",")):
                tiled, seconds = run(strategy="tiled", tile_size=tile, tile_overlap=overlap)
                d = np.abs(tiled.alpha - whole.alpha)[unknown]
                print(
                    f"| {tile} | {overlap} | {tiled.plan['tiles']} | {seconds:.1f} | {d.mean():.4f} | {d.max():.3f} "
                    f"| {(d > 1 / 255).mean():.1%} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
