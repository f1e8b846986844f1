"""SIM, declared once: Semantic Image Matting (Sun, Tang, Tai, CVPR 2021)."""

from __future__ import annotations

from mattecli.methods.base import Capabilities, MethodSpec, Published, Variant
from mattecli.methods.sim import convert
from mattecli.runtime.memory import Footprint

__all__ = ["SPEC", "CLASSIFIER", "VARIANTS", "DEFAULT_VARIANT"]

_PAPER = "SIM paper (Sun, Tang, Tai: Semantic Image Matting, CVPR 2021)"
_MSIA_PAPER = "MSIA paper (Qiao et al.: Multi-scale Information Assembly for Image Matting, 2020)"


#: The patch classifier (ResNet-50 on RGB + trimap, 20 classes) whose CAMs make the semantic trimap.
CLASSIFIER = Variant(
    "sim-classifier",
    "mattecli.methods.sim.net:SIMClassifier",
    convert.remap_official_classifier,
    convert.is_official_classifier,
)
#: both matting networks with the classifier (bench/memory_figures.md): ``whole`` per padded pixel of
#: the official pipeline (measured with 12.5% of the pixels unknown: the last decoder stages run only
#: around them), ``tile`` per pixel of the matting network's tiles (every pixel unknown)
FOOTPRINT = Footprint(fixed=1536 << 20, image=16, passes={"whole": 1300, "tile": 2050})
VARIANTS = (
    Variant(
        "sim-comp1k",
        "mattecli.methods.sim.net:SIMNet",
        convert.remap_official,
        convert.is_official,
        footprint=FOOTPRINT,
    ),
    Variant(
        "sim-simd", "mattecli.methods.sim.net:SIMNet", convert.remap_official, convert.is_official, footprint=FOOTPRINT
    ),
)
DEFAULT_VARIANT = VARIANTS[0].name

SPEC = MethodSpec(
    name="sim",
    summary="SIM: semantic image matting (trimap + patch-classified semantic trimap, ResNet-50)",
    paper="Sun, Tang, Tai: Semantic Image Matting, CVPR 2021",
    capabilities=Capabilities(needs_trimap=True, semantic_trimap=True),
    load="mattecli.methods.sim.processor:load",
    variants=VARIANTS,
    companions=(CLASSIFIER,),
    strategies=("auto", "whole", "tiled"),
    default_strategy="auto",
    stride=8,
    margin=64,
    parse_scales="mattecli.methods.sim.processor:parse_scales",
    published=(
        Published("sim", "comp1k", f"{_PAPER}, Table 2",
                  {"sad": 28.0, "mse": 5.8e-3, "grad": 10.8, "conn": 24.8}),
        Published("sim", "comp1k", "SIM README, released Composition-1K model",
                  {"sad": 27.7, "mse": 5.6e-3, "grad": 10.7, "conn": 24.4}),
        Published("sim", "simd", f"{_PAPER}, Tables 1 and 3",
                  {"sad": 27.87, "mse": 4.7e-3, "grad": 11.57, "conn": 20.83},
                  {"class": {"defocus": 13.49, "fire": 35.44, "fur": 5.90, "glass_ice": 49.19, "hair_easy": 5.68,
                             "hair_hard": 7.72, "insect": 96.85, "motion": 4.04, "net": 50.35,
                             "plant_flower": 37.10, "plant_leaf": 20.98, "plant_tree": 34.14,
                             "plastic_bag": 36.70, "sharp": 1.39, "smoke_cloud": 27.42, "spider_web": 63.79,
                             "texture_holed": 51.08, "texture_smooth": 41.78, "water_drop": 16.94,
                             "water_spray": 20.53}},
                  note="Table 3 names flower/leaf/tree/lace/silk; mapped to the code's plant_flower/plant_leaf/"
                       "plant_tree/texture_holed/texture_smooth by position"),
        Published("sim", "simd", "SIM README, released SIMD model",
                  {"sad": 27.9, "mse": 4.7e-3, "grad": 11.6, "conn": 20.8}),
    ),
)  # fmt: skip
