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

Test rule. The paper states none beyond training at 512x512 crops. We run the image at its own
resolution: ImageNet normalisation, bottom/right reflection padding to a multiple of 16 (the
network's output stride) and a crop back to the input size; in one pass (``whole``) or, for images
whose pass does not fit in memory, on tiles with the global statistics of a reduced-scale pass
(``tiled``; see :class:`MsiaMatter`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec
from mattecli.weights import register_architecture

__all__ = ["MsiaMatter", "STRIDE", "STRATEGIES"]

STRIDE = 16
STRATEGIES = ("auto", "whole", "tiled")


def _build():
    from mattecli.models.msia_net import MSIANet

    return MSIANet()


register_architecture("msia", build=_build)


@dataclass
class MsiaMatter:
    """A loaded MSIANet; ``predict`` ignores the trimap (the runner uses it to clamp known regions).

    Strategies: ``whole`` (one pass over the whole image), ``tiled`` (a context pass over the
    image reduced to :data:`mattecli.engine.CONTEXT_PIXELS` records the global statistics, ASPP
    image pooling and the assembly's means; full-resolution tiles replay them), ``auto``
    (default: ``whole`` when its measured memory fits the budget, else ``tiled``). A given
    trimap lets tiles whose area is entirely known be skipped. A whole pass that runs out of
    memory falls back to tiles.
    """

    net: object
    device: object
    precision: str = "fp32"
    weights_path: object = None  # the weights file (bench reports its sha256)
    strategy: str = "auto"
    tiles: object = None  # engine.TilePolicy

    def __post_init__(self):
        from mattecli import engine, tiling

        if self.tiles is None:
            self.tiles = engine.TilePolicy(stride=STRIDE, halo=64)
        self.context = tiling.GlobalContext(self.net)

    def _forward(self, x, *, replay: bool = False):
        import contextlib

        import torch

        from mattecli import engine

        ctx = self.context.replay() if replay else contextlib.nullcontext()
        with torch.inference_mode(), engine.autocast(self.device, self.precision), ctx:
            return self.net(engine.channels_last(x)).float()

    def _tiled(self, x, known: np.ndarray | None):
        from mattecli import engine

        h, w = x.shape[-2:]

        def context_pass(size):
            with self.context.record():
                self._forward(engine.resize(x, size))

        engine.run_shrinking(context_pass, engine.context_size(h, w, STRIDE), STRIDE, "MSIA context pass")
        self.tiles.probe(self.net, self._forward, 3, self.device)
        skip = None if known is None else (lambda y0, y1, x0, x1: bool(known[y0:y1, x0:x1].all()))
        return self.tiles.run(lambda b: self._forward(b, replay=True), x, skip=skip)

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        """float32 ``HxWx3`` RGB in [0, 1] (+ an optional uint8 ``HxW`` trimap) -> float32 ``HxW`` alpha."""
        import warnings

        from mattecli import engine
        from mattecli.errors import TrimapError

        h, w = image.shape[:2]
        if trimap is not None and tuple(trimap.shape[:2]) != (h, w):
            raise TrimapError(f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is {w}x{h}")
        x, _ = engine.pad_to_multiple(engine.image_to_tensor(image, self.device), STRIDE)
        known = None
        if trimap is not None:
            known = np.ones(x.shape[-2:], bool)
            known[:h, :w] = (trimap == 0) | (trimap == 255)
        strategy = engine.choose_strategy(
            self.strategy, self.tiles, x.shape[-1] * x.shape[-2], self.net, self._forward, 3
        )
        if strategy == "whole":
            try:
                alpha = self._forward(x)
            except Exception as err:
                if not engine.is_oom(err):
                    raise
                del err
                warnings.warn(
                    "MSIA whole-image pass out of memory: computing it on tiles", RuntimeWarning, stacklevel=2
                )
                alpha = self._tiled(x, known)
        else:
            alpha = self._tiled(x, known)
        alpha = alpha[0, 0, :h, :w].cpu().numpy()
        return np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=False)


def _create(config: MethodConfig) -> MsiaMatter:
    from mattecli import engine, models
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model

    variant = config.variant or "msia"
    if variant != "msia":
        raise BadOptionError(f"MSIA has one variant, msia, not {variant!r}")
    strategy = config.options.get("strategy") or "auto"
    if strategy not in STRATEGIES:
        raise BadOptionError(f"MSIA strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if config.options.get("scales"):
        raise BadOptionError("MSIA defines no multi-scale fusion; drop --scales")
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    tiles = engine.tile_policy(models.get("msia"), config.options, device)
    net = engine.prepare_model(
        load_model(variant, device, config.weights), device, compile=bool(config.options.get("compile"))
    )
    from mattecli.weights import local_path

    return MsiaMatter(
        net,
        device,
        config.precision,
        weights_path=config.weights or local_path(variant),
        strategy=strategy,
        tiles=tiles,
    )


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
