"""MSIA-matte's test rule (``--method msia``): trimap-free, with an optional trimap.

Paper: Qiao, Liu, Zhu, Yang, Wang, Zhang, Wei, "Multi-scale Information Assembly for Image
Matting". The network and its reconstruction assumptions (A1-A8) are in ``net.py``, the declaration in ``spec.py``. No
official code or checkpoint is known: variant ``msia`` accepts only a ``.safetensors`` file of our
parameter layout (``mattecli weights import msia FILE``), e.g. from a user's own training.

Trimap. The paper's network is trimap-free: it sees only the RGB image (A8; Table 1 lists it with
the methods that "produce alpha mattes with single RGB images"). Issue 8 called MSIA trimap-based;
the paper wins here, so ``msia`` runs without a trimap and *accepts* one (``accepts_trimap``): its
result is then clamped the known regions (0 -> alpha 0, 255 -> alpha 1). The trimap is never an input
of the network.

Test rule. The paper states none beyond training at 512x512 crops. We run the image at its own
resolution: ImageNet normalisation, bottom/right reflection padding to a multiple of 16 (the
network's output stride) and a crop back to the input size; in one pass (``whole``) or, for images
whose pass does not fit in memory, on tiles with the global statistics of a reduced-scale pass
(``tiled``; see :class:`MsiaProcessor`).
"""

from __future__ import annotations

import numpy as np

from mattecli.methods.base import Prediction, Provenance, Resolved

__all__ = ["MsiaProcessor", "STRIDE", "STRATEGIES", "load"]

STRIDE = 16
STRATEGIES = ("auto", "whole", "tiled")


class MsiaProcessor:
    """A loaded MSIANet; ignores the trimap but for skipping tiles (the result is clamped to it).

    Strategies: ``whole`` (one pass over the whole image), ``tiled`` (a context pass over the
    image reduced to :data:`mattecli.runtime.context.CONTEXT_PIXELS` records the global
    statistics, ASPP image pooling and the assembly's means; full-resolution tiles replay them),
    ``auto`` (default: ``whole`` when its measured memory fits the budget, else ``tiled``). A
    given trimap lets tiles whose area is entirely known be skipped. A whole pass that runs out
    of memory falls back to tiles.
    """

    def __init__(self, net, ctx, normalization=None, *, provenance=None):
        from mattecli.methods.base import IMAGENET
        from mattecli.runtime.context import GlobalContext

        self.net = net
        self.ctx = ctx
        self.normalization = normalization or IMAGENET
        self.provenance = provenance
        self.context = GlobalContext(net)
        self._bpp: dict = {}  # measured memory per pixel of the context pass (executor.pass_fits)

    @property
    def device(self):
        return self.ctx.device

    def _forward(self, x, *, replay: bool = False):
        import torch

        from mattecli.runtime.device import channels_last

        with torch.inference_mode(), self.ctx.autocast(), self.context.replaying(replay):
            return self.net(channels_last(x)).float()

    def _tiled(self, x, known: np.ndarray | None):
        from mattecli.runtime.context import context_size
        from mattecli.runtime.executor import pass_fits, run_shrinking
        from mattecli.runtime.tensors import resize

        h, w = x.shape[-2:]

        def context_pass(size):
            with self.context.record():
                self._forward(resize(x, size))

        def fits(size):  # beside the pass: the tiles' blend accumulators and the output (float32)
            return pass_fits(
                self.ctx.tiles, size[0] * size[1], self.net, self._forward, 3, reserve=12 * h * w, cache=self._bpp
            )

        run_shrinking(context_pass, context_size(h, w, STRIDE), STRIDE, "MSIA context pass", fits=fits)
        tiles = self.ctx.tiles
        tiles.probe(self.net, self._forward, 3, self.device)
        skip = None if known is None else (lambda y0, y1, x0, x1: bool(known[y0:y1, x0:x1].all()))
        return tiles.run(lambda b: self._forward(b, replay=True), x, skip=skip)

    def process(self, image: np.ndarray, trimap: np.ndarray | None = None, *, extras: bool = False) -> Prediction:
        """float32 ``HxWx3`` RGB in [0, 1] (+ an optional uint8 ``HxW`` trimap) -> float32 ``HxW`` alpha."""
        from mattecli.runtime.executor import Probe
        from mattecli.runtime.tensors import image_to_tensor, pad_to_multiple

        h, w = image.shape[:2]
        n = self.normalization
        x, _ = pad_to_multiple(image_to_tensor(image, self.device, n.mean, n.std), STRIDE)
        known = None
        if trimap is not None:
            known = np.ones(x.shape[-2:], bool)
            known[:h, :w] = (trimap == 0) | (trimap == 255)
        alpha = self.ctx.executor.run(
            whole=lambda: self._forward(x),
            tiled=lambda: self._tiled(x, known),
            pixels=x.shape[-1] * x.shape[-2],
            probe=Probe(self.net, self._forward, 3),
            what="MSIA whole-image pass",
        )
        return Prediction(alpha[0, 0, :h, :w].cpu().numpy())


def load(resolved: Resolved) -> MsiaProcessor:
    """Build MSIANet with its weights (the spec's ``load``)."""
    from mattecli.methods.loading import load_network, run_context
    from mattecli.runtime.device import prepare_model

    ctx = run_context(resolved)
    variant = resolved.variant
    net, weights = load_network(resolved, variant, ctx.device, file=resolved.options.weights)
    net = prepare_model(net, ctx.device, compile=ctx.compile)
    provenance = Provenance("msia", variant.name, (weights,), str(ctx.device))
    return MsiaProcessor(net, ctx, variant.normalization, provenance=provenance)
