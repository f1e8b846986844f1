"""MSIA-matte's test rule (``--method msia``): trimap-free, with an optional trimap.

Paper: Qiao, Liu, Zhu, Yang, Wang, Zhang, Wei, "Multi-scale Information Assembly for Image
Matting". The network and its reconstruction assumptions (A1-A8) are in ``net.py``, the declaration in ``spec.py``. No
official code or checkpoint is known: variant ``msia`` accepts only a ``.safetensors`` file of our
parameter layout (``mattecli weights import msia FILE``), e.g. from a user's own training.

Trimap. The paper's network is trimap-free: it sees only the RGB image (A8; Table 1 lists it with
the methods that "produce alpha mattes with single RGB images"). So ``msia`` runs without a trimap
and *accepts* one (``accepts_trimap``): its result is then clamped to the known regions (0 -> alpha
0, 255 -> alpha 1), and tiles wholly inside them are skipped. The trimap is never an input of the
network.

Test rule. The paper states none beyond training at 512x512 crops. We run the image at its own
resolution: ImageNet normalisation, bottom/right reflection padding to a multiple of 16 (the
network's output stride) and a crop back to the input size; in one pass (``whole``) or, for images
whose pass the declared memory figures do not allow, on tiles with the global statistics of a
reduced-scale pass (``tiled``; see :class:`MsiaProcessor`).
"""

from __future__ import annotations

import numpy as np

from mattecli.methods.base import Prediction, Resolved
from mattecli.methods.network import NetworkProcessor

__all__ = ["MsiaProcessor", "STRIDE", "STRATEGIES", "load"]

STRIDE = 16
STRATEGIES = ("auto", "whole", "tiled")


class MsiaProcessor(NetworkProcessor):
    """A loaded MSIANet; ignores the trimap but for skipping tiles (the result is clamped to it).

    Strategies: ``whole`` (one pass over the whole image), ``tiled`` (a context pass over the
    image reduced to :data:`mattecli.runtime.context.CONTEXT_PIXELS` records the global
    statistics, ASPP image pooling and the assembly's means; full-resolution tiles replay them),
    ``auto`` (default: ``whole`` up to the size the variant's declared memory allows, else
    ``tiled``). A given trimap lets tiles whose area is entirely known be skipped.
    """

    def __init__(self, net, ctx, normalization=None, *, provenance=None):
        from mattecli.methods.base import IMAGENET

        super().__init__(net, ctx, provenance=provenance)
        self.normalization = normalization or IMAGENET

    def process(self, image: np.ndarray, trimap: np.ndarray | None = None, *, extras: bool = False) -> Prediction:
        """float32 ``HxWx3`` RGB in [0, 1] (+ an optional uint8 ``HxW`` trimap) -> float32 ``HxW`` alpha."""
        from mattecli.runtime.tensors import image_to_tensor, pad_to_multiple

        h, w = image.shape[:2]
        n = self.normalization
        x, _ = pad_to_multiple(image_to_tensor(image, self.device, n.mean, n.std), STRIDE)
        skip = None
        if trimap is not None:
            known = np.ones(x.shape[-2:], bool)
            known[:h, :w] = (trimap == 0) | (trimap == 255)
            skip = lambda y0, y1, x0, x1: bool(known[y0:y1, x0:x1].all())  # noqa: E731
        alpha = self.whole_or_tiled(x, stride=STRIDE, skip=skip, what="MSIA pass")
        return Prediction(alpha[0, 0, :h, :w].cpu().numpy())


def load(resolved: Resolved) -> MsiaProcessor:
    """Build MSIANet with its weights (the spec's ``load``)."""
    from mattecli.methods.loading import load_one_network

    net, ctx, provenance = load_one_network(resolved, "msia")
    return MsiaProcessor(net, ctx, resolved.variant.normalization, provenance=provenance)
