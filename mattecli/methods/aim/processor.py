"""AIM's official pre- and post-processing and its test strategies (``--method aim``).

Paper: Li, Zhang, Tao, "Deep Automatic Natural Image Matting", IJCAI 2021.
Official code: github.com/JizhiziLi/AIM (MIT) at 48e3dc8, ``core/test.py`` and
``core/util.py`` (digest: ``shared/refs/aim.md``). The network is in ``net.py``, the declaration in ``spec.py``.

Test strategies (``--strategy``):

``hybrid`` (default, what the official test scripts run)
    The glance (semantic) pass runs on the image scaled by 1/4 and the focus
    (matting) pass on the image scaled by 1/2; each size is ``int(side * ratio)``
    floored to a multiple of 32 and capped at 1600 per side. The glance argmax
    trimap {0, 128, 255} and the focus alpha are upsampled back bilinearly the way
    scikit-image 0.14 does (zero outside the image); pixels whose upsampled trimap
    is exactly 255 / 0 become 1 / 0, every other pixel takes the focus alpha.
``resize``
    One pass at 1/4; the network's own fused output is upsampled.
``whole`` (mattecli's addition)
    The glance trimap comes from the 1/4 pass as in ``hybrid``; the focus pass runs
    once at full resolution, with the glance pass's global statistics (squeeze-and-
    excitation, the PSP image bin) replayed. Fused as in ``hybrid``.
``tiled`` (mattecli's addition, for large images)
    ``whole`` with the focus pass on overlapping full-resolution tiles (the engine's
    :class:`~mattecli.runtime.executor.TilePolicy`: tile side from ``tile_size`` or the memory
    budget, halo ``tile_overlap``, default 64, raised-cosine blending). Tiles whose
    area holds no transition pixel are skipped. This keeps 8K detail that the 1/2-scale
    focus pass loses, with memory bounded by the tile size. The PSP module's 3x3 and
    5x5 bins stay tile-local, the one difference from ``whole`` besides tile borders.

``scales`` (``--scales GLANCE,FOCUS``) overrides the two ratios of every strategy but
``resize`` (defaults 0.25,0.5 for ``hybrid``, 0.25,1 for ``whole`` / ``tiled``).

Deviations, all for inputs the official code cannot take: sizes below 32 are
raised to 32 (the official rounding would give 0), and the "exactly 0 / 255"
test allows 1e-4 of floating-point slack.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np

from mattecli.methods.base import Prediction, Provenance, Resolved

__all__ = [
    "STRATEGIES",
    "GLANCE_RATIO",
    "FOCUS_RATIO",
    "MAX_SIDE",
    "scaled_size",
    "hybrid_fuse",
    "resize_zero_border",
    "parse_scales",
    "AimProcessor",
    "load",
]

STRATEGIES = ("hybrid", "resize", "whole", "tiled")
GLANCE_RATIO = 1 / 4
FOCUS_RATIO = 1 / 2
MAX_SIDE = 1600
STRIDE = 32


def scaled_size(h: int, w: int, ratio: float, *, multiple: int = STRIDE, cap: int = MAX_SIDE) -> tuple[int, int]:
    """The official test size: ``int(side * ratio)`` floored to ``multiple`` and capped, per side."""

    def one(side: int) -> int:
        s = int(side * ratio)
        return max(multiple, min(cap, s - s % multiple))

    return one(h), one(w)


def hybrid_fuse(trimap_up: np.ndarray, focus_up: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Official HYBRID fusion on upsampled maps in [0, 1]: exact fg -> 1, exact bg -> 0, else the focus alpha."""
    out = focus_up.astype(np.float32).copy()
    out[np.abs(trimap_up - 1.0) <= tol] = 1.0
    out[np.abs(trimap_up) <= tol] = 0.0
    return out


def resize_zero_border(x, size: tuple[int, int]):
    """Bilinear resize that treats samples outside the input as 0.

    This is ``skimage.transform.resize(order=1, mode='constant', cval=0,
    anti_aliasing=False)`` (scikit-image 0.14, which official AIM code pins): the
    same half-pixel sampling as :func:`mattecli.runtime.tensors.resize`, except that output
    pixels whose bilinear support reaches past the input's edge blend with zero.
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):  # every sample lands on a pixel centre: the identity
        return x.float()
    ys = (torch.arange(oh, device=x.device, dtype=torch.float32) + 0.5) * (h / oh) - 0.5
    xs = (torch.arange(ow, device=x.device, dtype=torch.float32) + 0.5) * (w / ow) - 0.5
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges
    gy = (ys + 0.5) / h * 2 - 1
    gx = (xs + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].expand(n, oh, ow, 2)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def parse_scales(value: str | Sequence[float]) -> tuple[float, float]:
    """``--scales GLANCE,FOCUS`` for AIM (e.g. ``0.25,0.5``, the official hybrid).

    Raises:
        BadOptionError: not two numbers in (0, 1].
    """
    from mattecli.errors import BadOptionError

    parts = [p for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
    try:
        scales = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        scales = ()
    if len(scales) != 2 or not all(0 < s <= 1 for s in scales):
        raise BadOptionError(
            f"AIM --scales takes GLANCE,FOCUS, two ratios in (0, 1] (official 0.25,0.5), not {value!r}"
        )
    return scales


def _focus_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    """The focus pass's size: the official rounding below full resolution, the image's own size at 1."""
    if ratio >= 1.0:
        return h, w
    return scaled_size(h, w, ratio)


class AimProcessor:
    """A loaded AimNet with a test strategy; needs no trimap and predicts one (the glance trimap).

    ``scales`` is ``(glance, focus)``: the glance pass runs on the image scaled by the first,
    the focus pass by the second (hybrid: the official 1/4 and 1/2; whole and tiled: 1/4 and
    full resolution). In ``whole`` and ``tiled`` the focus pass replays the glance pass's
    global statistics (:class:`mattecli.runtime.context.GlobalContext`), so the two differ only
    by the tiling.

    Memory: a glance pass that runs out of memory is retried at half the size; a whole focus
    pass falls back to blended tiles at the same scale (the shared executor); tiles and batches
    follow the run's tile policy and shrink further on out-of-memory errors. Every fallback warns.
    """

    def __init__(
        self,
        net,
        ctx,
        strategy: str = "hybrid",
        normalization=None,
        *,
        scales=None,
        provenance: Provenance | None = None,
    ):
        from mattecli.methods.base import IMAGENET
        from mattecli.runtime.context import GlobalContext

        self.net = net
        self.ctx = ctx
        self.strategy = strategy
        self.normalization = normalization or IMAGENET
        self.scales = scales or (GLANCE_RATIO, FOCUS_RATIO if strategy == "hybrid" else 1.0)
        self.provenance = provenance
        self.context = GlobalContext(net)

    @property
    def device(self):
        return self.ctx.device

    def _forward(self, x, *, replay: bool = False, glance: bool = True, focus: bool = True):
        """``(glance, focus)`` of one pass, float32; only the decoders these need run (the other is None)."""
        import torch

        from mattecli.runtime.device import channels_last

        with torch.inference_mode(), self.ctx.autocast(), self.context.replaying(replay):
            if hasattr(self.net, "run"):  # AimNet
                g, f = self.net.run(channels_last(x), glance=glance, focus=focus)
            else:  # a network of the caller's with only AimNet's forward: (glance, focus, fusion)
                g, f, _ = self.net(channels_last(x))
                g, f = (g if glance else None), (f if focus else None)
        return None if g is None else g.float(), None if f is None else f.float()

    def _glance(self, x_full, h: int, w: int):
        """The glance pass at ``scales[0]``, halved until it fits in memory (records the global context)."""
        from mattecli.runtime.executor import run_shrinking
        from mattecli.runtime.tensors import resize

        def glance(size):
            from mattecli.methods.aim.net import fuse_glance_focus

            rec = self.context.record() if self.strategy in ("whole", "tiled") else contextlib.nullcontext()
            with rec:  # only the resize strategy uses this pass's focus (the network's own fusion)
                g, focus = self._forward(resize(x_full, size), focus=self.strategy == "resize")
            return g, focus, None if focus is None else fuse_glance_focus(g, focus)

        return run_shrinking(glance, scaled_size(h, w, self.scales[0]), STRIDE, "AIM glance pass")

    def _focus_tiles(self, x, transition: np.ndarray | None):
        """Focus alpha of a normalised ``(1,3,H,W)`` tensor on blended tiles (tiles without transition skipped)."""
        from mattecli.runtime.tensors import pad_to_multiple

        h, w = x.shape[2:]
        x, _ = pad_to_multiple(x, STRIDE, mode="replicate")
        mask = None
        if transition is not None:
            mask = np.zeros(x.shape[2:], bool)
            mask[:h, :w] = transition
        replay = self.strategy in ("whole", "tiled")
        tiles = self.ctx.tiles
        tiles.probe(self.net, lambda b: self._forward(b, replay=replay, glance=False), 3, self.device)
        out = tiles.run(
            lambda b: self._forward(b, replay=replay, glance=False)[1],
            x,
            skip=None if mask is None else (lambda y0, y1, x0, x1: not mask[y0:y1, x0:x1].any()),
        )
        return out[:, :, :h, :w]

    def _focus_at(self, x_full, size: tuple[int, int]):
        """The focus alpha of a whole-image pass at ``size``; blended tiles if that runs out of memory."""
        from mattecli.runtime.executor import Executor
        from mattecli.runtime.tensors import pad_to_multiple, resize

        x = resize(x_full, size)

        def whole():
            h, w = size
            padded, _ = pad_to_multiple(x, STRIDE, mode="replicate")
            return self._forward(padded, replay=self.strategy == "whole", glance=False)[1][:, :, :h, :w]

        return Executor.whole_or_tiles(whole, lambda: self._focus_tiles(x, None), "AIM focus pass")

    def process(self, image: np.ndarray, trimap: np.ndarray | None = None, *, extras: bool = False) -> Prediction:
        """Alpha (float32 ``HxW``) and the glance trimap (uint8 {0,128,255}) at the image's size."""
        from mattecli.runtime.tensors import image_to_tensor, resize

        h, w = image.shape[:2]
        n = self.normalization
        x_full = image_to_tensor(image, self.device, n.mean, n.std)
        glance, _, fusion = self._glance(x_full, h, w)
        trimap_small = glance.argmax(dim=1, keepdim=True).float() / 2.0  # 0, 0.5, 1 = 0, 128, 255
        trimap_up = resize_zero_border(trimap_small, (h, w))[0, 0].cpu().numpy()
        known_fg = np.abs(trimap_up - 1.0) <= 1e-4
        known_bg = np.abs(trimap_up) <= 1e-4
        focus_size = _focus_size(h, w, self.scales[1])
        if self.strategy == "resize":
            alpha = resize_zero_border(fusion, (h, w))[0, 0].cpu().numpy()
        else:
            if self.strategy == "tiled":
                x = resize(x_full, focus_size)
                transition = ~(known_fg | known_bg)
                if focus_size != (h, w):
                    import cv2

                    transition = cv2.resize(transition.astype(np.uint8), focus_size[::-1], cv2.INTER_NEAREST) > 0
                focus = self._focus_tiles(x, transition)
            else:
                focus = self._focus_at(x_full, focus_size)
            alpha = hybrid_fuse(trimap_up, resize_zero_border(focus, (h, w))[0, 0].cpu().numpy())
        predicted = np.full((h, w), 128, np.uint8)
        predicted[known_bg] = 0
        predicted[known_fg] = 255
        return Prediction(alpha, predicted)

    def predict_trimap(self, image: np.ndarray) -> np.ndarray:
        """The glance trimap alone (uint8 ``HxW`` {0, 128, 255}): the one :meth:`process` returns,
        without the focus pass (``--trimap auto``, ``trimap --from-image``)."""
        from mattecli.runtime.tensors import image_to_tensor

        h, w = image.shape[:2]
        n = self.normalization
        glance, _, _ = self._glance(image_to_tensor(image, self.device, n.mean, n.std), h, w)
        trimap_up = resize_zero_border(glance.argmax(dim=1, keepdim=True).float() / 2.0, (h, w))[0, 0].cpu().numpy()
        predicted = np.full((h, w), 128, np.uint8)
        predicted[np.abs(trimap_up) <= 1e-4] = 0
        predicted[np.abs(trimap_up - 1.0) <= 1e-4] = 255
        return predicted


def load(resolved: Resolved) -> AimProcessor:
    """Build AimNet on the run's device with its weights (the spec's ``load``)."""
    from mattecli.methods.loading import load_network, run_context
    from mattecli.runtime.device import prepare_model

    ctx = run_context(resolved, strategy="auto")  # AIM's own strategies decide; the executor only falls back
    variant = resolved.variant
    net, weights = load_network(resolved, variant, ctx.device, file=resolved.options.weights)
    net = prepare_model(net, ctx.device)
    if ctx.compile:  # the processor calls run() (only the decoders a pass needs), so that is what compiles
        import torch

        net.run = torch.compile(net.run)
    provenance = Provenance("aim", variant.name, (weights,), str(ctx.device))
    return AimProcessor(
        net, ctx, resolved.strategy, variant.normalization, scales=resolved.scales, provenance=provenance
    )
