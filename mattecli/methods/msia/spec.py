"""MSIA, declared once: Multi-scale Information Assembly for Image Matting (Qiao et al., CGF 2020)."""

from __future__ import annotations

from mattecli.methods.base import Capabilities, MethodSpec, Published, Variant
from mattecli.runtime.memory import Footprint

__all__ = ["SPEC"]

_PAPER = "MSIA paper (Qiao et al.: Multi-scale Information Assembly for Image Matting, 2020)"


SPEC = MethodSpec(
    name="msia",
    summary="MSIA-matte: ResNeXt-101 + superficial traces + adaptive information assembly",
    paper="Qiao, Liu, Zhu, Yang, Wang, Zhang, Wei: Multi-scale Information Assembly for Image Matting",
    capabilities=Capabilities(accepts_trimap=True),
    load="mattecli.methods.msia.processor:load",
    # no official checkpoint: our layout only (identity mapping); figures: bench/memory_figures.md
    variants=(
        Variant(
            "msia",
            "mattecli.methods.msia.net:MSIANet",
            footprint=Footprint(fixed=832 << 20, image=68, passes={"whole": 400}),
        ),
    ),
    strategies=("auto", "whole", "tiled"),
    default_strategy="auto",
    stride=16,
    margin=64,
    published=(
        Published("msia", "comp1k", f"{_PAPER}, Table 1",
                  {"sad": 47.86, "mse": 7e-3, "grad": 28.61, "conn": 43.39}),
        Published("msia", "dist646", f"{_PAPER}, Table 2",
                  {"sad": 49.51, "mse": 9e-3, "grad": 39.70, "conn": 46.68}),
    ),
)  # fmt: skip
