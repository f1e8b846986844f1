"""MSIA-matte: multi-scale information assembly (``--method msia``, trimap-free, optional trimap).

Paper: Qiao, Liu, Zhu, Yang, Wang, Zhang, Wei, "Multi-scale Information Assembly for Image
Matting". The network and its reconstruction assumptions (A1-A8) are in ``msia_net.py``. No
official code or checkpoint is known: variant ``msia`` accepts only a ``.safetensors`` file of our
parameter layout (``mattecli weights import msia FILE``), e.g. from a user's own training.

Trimap. The paper's network is trimap-free: it sees only the RGB image (A8; Table 1 lists it with
the methods that "produce alpha mattes with single RGB images"). Issue 8 called MSIA trimap-based;
the paper wins here, so ``msia`` runs without a trimap and *accepts* one (``accepts_trimap``): the
runner then clamps the known regions (0 -> alpha 0, 255 -> alpha 1). The trimap is never an input
of the network.

Test rule. The paper states none beyond training at 512x512 crops. We run the whole image at its
own resolution: ImageNet normalisation, bottom/right reflection padding to a multiple of 16 (the
network's output stride) and a crop back to the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec
from mattecli.weights import register_architecture

__all__ = ["MsiaMatter", "STRIDE"]

STRIDE = 16


def _build():
    from mattecli.models.msia_net import MSIANet

    return MSIANet()


register_architecture("msia", build=_build)


@dataclass
class MsiaMatter:
    """A loaded MSIANet; ``predict`` ignores the trimap (the runner uses it to clamp known regions)."""

    net: object
    device: object
    precision: str = "fp32"
    weights_path: object = None  # the weights file (bench reports its sha256)

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        """float32 ``HxWx3`` RGB in [0, 1] (+ an optional uint8 ``HxW`` trimap) -> float32 ``HxW`` alpha."""
        import torch

        from mattecli import engine
        from mattecli.errors import TrimapError

        h, w = image.shape[:2]
        if trimap is not None and tuple(trimap.shape[:2]) != (h, w):
            raise TrimapError(f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is {w}x{h}")
        x, _ = engine.pad_to_multiple(engine.image_to_tensor(image, self.device), STRIDE)
        with torch.inference_mode(), engine.autocast(self.device, self.precision):
            alpha = self.net(engine.channels_last(x))
        alpha = alpha.float()[0, 0, :h, :w].cpu().numpy()
        return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _create(config: MethodConfig) -> MsiaMatter:
    from mattecli import engine
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model

    variant = config.variant or "msia"
    if variant != "msia":
        raise BadOptionError(f"MSIA has one variant, msia, not {variant!r}")
    if config.options.get("strategy"):
        raise BadOptionError("MSIA has a single test strategy (whole image, padded to a multiple of 16)")
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    net = engine.prepare_model(load_model(variant, device, config.weights), device)
    from mattecli.weights import local_path

    return MsiaMatter(net, device, config.precision, weights_path=config.weights or local_path(variant))


register(
    MethodSpec(
        name="msia",
        summary="MSIA-matte: ResNeXt-101 + superficial traces + adaptive information assembly",
        paper="Qiao, Liu, Zhu, Yang, Wang, Zhang, Wei: Multi-scale Information Assembly for Image Matting",
        needs_trimap=False,
        accepts_trimap=True,
        create=_create,
        weights=("msia",),
        stride=STRIDE,
        margin=64,
        scales=(1.0,),
    )
)
