"""SHM, declared once: Semantic Human Matting (Chen et al., ACM MM 2018), two networks."""

from __future__ import annotations

from mattecli.methods.base import IMAGENET, Capabilities, MethodSpec, Published, Variant
from mattecli.methods.shm import convert
from mattecli.runtime.memory import Footprint

__all__ = ["SPEC"]

_AIM_PAPER = "AIM paper (Li, Zhang, Tao: Deep Automatic Natural Image Matting, IJCAI 2021), Table 2"


SPEC = MethodSpec(
    name="shm",
    summary="SHM: automatic (trimap-free) human matting, T-Net + M-Net + fusion",
    paper="Chen, Ge, Xu, Zhang, Yang, Gai: Semantic Human Matting, ACM MM 2018",
    capabilities=Capabilities(predicts_trimap=True),
    load="mattecli.methods.shm.processor:load",
    variants=(
        # the MindSpore model zoo's network: BGR input, (255 x - (104, 112, 121)) / 255; its M-Net's
        # receptive field is 96 px (tiles then reproduce the whole pass exactly)
        Variant(
            "shm-mindspore",
            "mattecli.methods.shm.net:SHMMindSporeNet",
            convert.remap_mindspore,
            convert.is_mindspore,
            normalization=None,
            default_strategy="resize",
            margin=96,
            params={"encoding": "mindspore"},
            footprint=Footprint(fixed=320 << 20, image=200, passes={"m_net": 300}),  # bench/memory_figures.md
        ),
        # the paper's PSPNet-50 / VGG16 network; its M-Net reaches 1e-4 of the whole pass at 128 px
        Variant(
            "shm",
            "mattecli.methods.shm.net:SHMNet",
            normalization=IMAGENET,
            default_strategy="paper",
            margin=128,
            params={"encoding": "imagenet"},
            footprint=Footprint(fixed=2368 << 20, image=128, passes={"m_net": 900}),  # bench/memory_figures.md
        ),
    ),
    strategies=("paper", "resize", "whole", "tiled"),
    default_strategy="paper",
    stride=16,
    margin=96,
    published=(
        Published(
            "shm", "aim500", _AIM_PAPER + ", SHM as re-implemented by the AIM authors",
            {"sad": 170.44, "mse": 0.0921, "mad": 0.1012, "conn": 170.67, "grad": 115.29, "sad_trans": 69.41},
            {"type": {"SO": 154.56, "STM": 204.67, "NS": 329.9},
             "category": {"animal": 174.65, "portrait": 141.49, "transparent": 333.24, "plant": 157.24,
                          "furniture": 166.81, "toy": 126.04, "fruit": 97.31}},
            note="SHM re-implemented and trained by the AIM authors, not SHM's own model",
        ),
    ),
)  # fmt: skip
