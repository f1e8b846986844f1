"""ViTMatte's official test rule and mattecli's tiles for large images (``--method vitmatte``).

Paper: Yao, Wang, Yang, Wang, "ViTMatte: Boosting Image Matting with Pretrained Plain Vision
Transformers", Information Fusion 2024 (arXiv 2305.15272). Official code: github.com/hustvl/ViTMatte
(Apache-2.0); the hub checkpoints and the pre/post-processing followed here are transformers'
``VitMatteForImageMatting`` / ``VitMatteImageProcessor`` (version 5.25). The network is in ``net.py``,
the encoding in ``encode.py``, the declaration in ``spec.py``.

Test rule, per image, as the hub checkpoints' processor applies it: RGB normalised ``(x - 0.5) / 0.5``,
the trimap / 255 as a fourth channel, zeros appended at the bottom and right up to multiples of 32;
one pass of the network; the alpha cropped back to the image (the known pixels are then set from the
trimap, as for every trimap method). The authors' own code differs in two points, both in
``encode.py``: ImageNet statistics for the RGB, and 32 px more padding on a side that is already a
multiple of 32 when the other is not. mattecli follows the hub's processor, which the hub's users
(and transformers) run.

Strategies (``--strategy``):

``whole``
    The official rule on the whole image. Global attention costs memory and time that grow faster
    than the pixel count (it relates every 16 x 16 patch to every other).
``tiled``
    The same rule on overlapping tiles of the padded input (a multiple of 32 px on each side,
    origins on the 32 px grid), only where a tile holds unknown pixels: known pixels take the
    trimap's value anyway. Tiles overlap by twice the halo (``--tile-overlap``, default 128 px) and
    are blended with raised-cosine weights. Each tile is a whole input to the network (its position
    embeddings are interpolated to the tile's size, as for any image size), so tiles differ from the
    whole pass by what global attention sees beyond them (``bench/RESULTS.md`` measures how much).
``auto`` (default)
    ``whole`` up to the size the variant's declared memory allows under the run's budget, else
    ``tiled``: a 33 MP photo with a thin unknown band runs on a few tiles along it.
"""

from __future__ import annotations

import numpy as np

from mattecli.methods.base import Prediction, Resolved
from mattecli.methods.network import NetworkProcessor
from mattecli.methods.vitmatte.encode import crop, encode

__all__ = ["VitMatteProcessor", "load"]


class VitMatteProcessor(NetworkProcessor):
    """A loaded ViTMatte network; ``process`` needs a trimap (uint8 ``HxW``, 0 / 128 / 255).
    ``normalization``: the RGB's mean / std (default the hub's 0.5 / 0.5)."""

    def __init__(self, net, ctx, normalization=None, *, provenance=None):
        from mattecli.methods.vitmatte.spec import NORMALIZATION

        super().__init__(net, ctx, provenance=provenance)
        self.normalization = normalization or NORMALIZATION

    def process(self, image: np.ndarray, trimap: np.ndarray | None, *, extras: bool = False) -> Prediction:
        """float32 ``HxWx3`` RGB in [0, 1] and a uint8 ``HxW`` trimap -> float32 ``HxW`` alpha in [0, 1].

        Raises:
            TrimapError: no trimap.
        """
        from mattecli.errors import TrimapError

        if trimap is None:
            raise TrimapError("method vitmatte needs a trimap", hint="pass --trimap FILE_OR_FOLDER or --trimap auto")
        h, w = trimap.shape
        x = encode(image, trimap, self.device, mean=self.normalization.mean, std=self.normalization.std)
        unknown = np.zeros(x.shape[-2:], bool)
        unknown[:h, :w] = (trimap != 0) & (trimap != 255)

        def tiled():
            skip = lambda y0, y1, x0, x1: not unknown[y0:y1, x0:x1].any()  # noqa: E731
            return self.executor.tiles("whole", self.forward, x, skip=skip, what="ViTMatte pass")

        alpha = self.executor.run(
            "whole", whole=lambda: self.forward(x), tiled=tiled, pixels=x.shape[-2] * x.shape[-1], what="ViTMatte pass"
        )
        return Prediction(crop(alpha, h, w)[0, 0].cpu().numpy())


def load(resolved: Resolved) -> VitMatteProcessor:
    """Build the variant's ViTMatte network with its weights (the spec's ``load``)."""
    from mattecli.methods.loading import load_one_network

    net, ctx, provenance = load_one_network(resolved, "vitmatte")
    return VitMatteProcessor(net, ctx, resolved.variant.normalization, provenance=provenance)
