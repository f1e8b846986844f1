"""AIM, declared once: Deep Automatic Natural Image Matting (Li, Zhang, Tao, IJCAI 2021)."""

from __future__ import annotations

from mattecli.methods.aim import convert
from mattecli.methods.base import Capabilities, MethodSpec, Published, Variant
from mattecli.runtime.memory import Footprint

__all__ = ["SPEC"]

_PAPER = "AIM paper (Li, Zhang, Tao: Deep Automatic Natural Image Matting, IJCAI 2021), Table 2"


SPEC = MethodSpec(
    name="aim",
    summary="AIM: automatic (trimap-free) matting of any natural image",
    paper="Li, Zhang, Tao: Deep Automatic Natural Image Matting, IJCAI 2021",
    capabilities=Capabilities(predicts_trimap=True),
    load="mattecli.methods.aim.processor:load",
    variants=(
        Variant(
            "aim",
            "mattecli.methods.aim.net:AimNet",
            convert.remap_official,
            convert.is_official,
            # bench/memory_figures.md
            # bench/memory_figures.md: hybrid and resize drop the full-size input, whole and tiled keep it
            footprint=Footprint(
                fixed=704 << 20,
                image={"hybrid": 28, "resize": 28, "whole": 44, "tiled": 44},
                passes={"glance": 900, "focus": 1400},
            ),
        ),
    ),
    strategies=("hybrid", "resize", "whole", "tiled"),
    default_strategy="hybrid",
    stride=32,
    margin=64,
    parse_scales="mattecli.methods.aim.processor:parse_scales",
    published=(
        Published(
            "aim", "aim500", _PAPER,
            {"sad": 43.92, "mse": 0.0161, "mad": 0.0262, "conn": 43.18, "grad": 33.05, "sad_trans": 30.74},
            {"type": {"SO": 31.80, "STM": 94.02, "NS": 134.31},
             "category": {"animal": 26.39, "portrait": 24.68, "transparent": 148.68, "plant": 54.03,
                          "furniture": 62.70, "toy": 53.15, "fruit": 37.17}},
            note="paper model, hybrid test 1/3 & 1/4; that checkpoint was not released",
        ),
        Published(
            "aim", "aim500", "AIM README, released model, hybrid test 1/2 & 1/4 (the released code path)",
            {"sad": 44.25, "mse": 0.0165, "mad": 0.0263, "conn": 43.78, "grad": 34.66, "sad_trans": 28.89},
            {"type": {"SO": 32.48, "STM": 91.86, "NS": 133.46},
             "category": {"animal": 26.05, "portrait": 25.09, "transparent": 137.31, "plant": 57.75,
                          "furniture": 68.88, "toy": 53.81, "fruit": 36.87}},
        ),
    ),
)  # fmt: skip
