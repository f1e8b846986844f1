"""ViTMatte, declared once: Boosting Image Matting with Pretrained Plain Vision Transformers
(Yao, Wang, Yang, Wang, Information Fusion 2024; arXiv 2305.15272)."""

from __future__ import annotations

from mattecli.methods.base import Capabilities, MethodSpec, Normalization, Published, Variant
from mattecli.runtime.memory import Footprint

__all__ = ["SPEC", "NORMALIZATION"]

_PAPER = "ViTMatte paper (Yao, Wang, Yang, Wang: ViTMatte, arXiv 2305.15272)"
#: the hub checkpoints' preprocessor_config.json (transformers' VitMatteImageProcessor): RGB / 255, then
#: (x - 0.5) / 0.5. The authors' training code normalises with the ImageNet statistics instead
#: (github.com/hustvl/ViTMatte at 8cd7ef0, configs/common/model.py); mattecli follows the hub's files,
#: whose pipeline users compare against (encode.py says more).
NORMALIZATION = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


#: per backbone size (bench/memory_figures.md); ``fixed`` also holds the attention's bias buffer,
#: a constant 256 MiB on images whose global attention needs it all (net.MASK_BYTES)
FOOTPRINTS = {
    "small": Footprint(fixed=768 << 20, image=60, passes={"whole": 850}),
    "base": Footprint(fixed=1280 << 20, image=60, passes={"whole": 900}),
}


def _variant(name: str, size: str) -> Variant:
    build = f"mattecli.methods.vitmatte.net:vitmatte_{size}"
    return Variant(name, build, normalization=NORMALIZATION, footprint=FOOTPRINTS[size])


SPEC = MethodSpec(
    name="vitmatte",
    summary="ViTMatte: trimap-based matting with a plain ViT and a detail-capture module (best quality)",
    paper="Yao, Wang, Yang, Wang: ViTMatte: Boosting Image Matting with Pretrained Plain Vision Transformers, 2024",
    capabilities=Capabilities(needs_trimap=True),
    load="mattecli.methods.vitmatte.processor:load",
    variants=(
        _variant("vitmatte-s-comp1k", "small"),
        _variant("vitmatte-b-comp1k", "base"),
        _variant("vitmatte-s-d646", "small"),
        _variant("vitmatte-b-d646", "base"),
    ),
    strategies=("auto", "whole", "tiled"),
    default_strategy="auto",
    stride=32,
    margin=128,
    published=(
        Published("vitmatte", "comp1k", f"{_PAPER}, Table 1, ViTMatte-S",
                  {"sad": 21.46, "mse": 3.3e-3, "grad": 7.24, "conn": 16.21},
                  note="DIM MATLAB evaluation, as ours", variant="vitmatte-s-comp1k"),
        Published("vitmatte", "comp1k", f"{_PAPER}, Table 1, ViTMatte-B",
                  {"sad": 20.33, "mse": 3.0e-3, "grad": 6.74, "conn": 14.78},
                  note="DIM MATLAB evaluation, as ours", variant="vitmatte-b-comp1k"),
        Published("vitmatte", "dist646", f"{_PAPER}, Table 2, ViTMatte-S",
                  {"sad": 21.22, "mse": 2.1e-3, "grad": 8.78, "conn": 17.55},
                  note="DIM MATLAB evaluation, as ours", variant="vitmatte-s-d646"),
        Published("vitmatte", "dist646", f"{_PAPER}, Table 2, ViTMatte-B",
                  {"sad": 17.05, "mse": 1.5e-3, "grad": 7.03, "conn": 12.95},
                  note="DIM MATLAB evaluation, as ours", variant="vitmatte-b-d646"),
    ),
)  # fmt: skip
