"""AIM's official pre- and post-processing and its test strategies (``--method aim``).

Paper: Li, Zhang, Tao, "Deep Automatic Natural Image Matting", IJCAI 2021.
Official code: github.com/JizhiziLi/AIM (MIT) at 48e3dc8, ``core/test.py`` and
``core/util.py``. The network is in ``net.py``, the declaration in ``spec.py``.

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
    ``whole`` with the focus pass on overlapping full-resolution tiles (the runtime's tiles:
    side from ``--tile-size`` or the variant's declared memory against the budget, halo
    ``--tile-overlap``, default 64, raised-cosine blending). Tiles whose
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
from mattecli.methods.network import NetworkProcessor

__all__ = [
    "STRATEGIES",
    "GLANCE_RATIO",
    "FOCUS_RATIO",
    "MAX_SIDE",
    "scaled_size",
    "hybrid_fuse",
    "resize_zero_border",
    "upsampled_trimap",
    "upsampled_alpha",
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


def resize_zero_border(x, size: tuple[int, int], rows: tuple[int, int] | None = None):
    """Bilinear resize that treats samples outside the input as 0.

    This is ``skimage.transform.resize(order=1, mode='constant', cval=0,
    anti_aliasing=False)`` (scikit-image 0.14, which official AIM code pins): the
    same half-pixel sampling as :func:`mattecli.runtime.tensors.resize`, except that output
    pixels whose bilinear support reaches past the input's edge blend with zero.

    ``rows=(y0, y1)``: only those output rows (``resize_zero_border(x, size)[..., y0:y1, :]``,
    equal element for element), so that a full-size map can be computed in bands.
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    oh, ow = size
    y0, y1 = rows if rows is not None else (0, oh)
    if (h, w) == (oh, ow):  # every sample lands on a pixel centre: the identity
        return x[:, :, y0:y1].float()
    ys = ((torch.arange(oh, device=x.device, dtype=torch.float32) + 0.5) * (h / oh) - 0.5)[y0:y1]
    xs = (torch.arange(ow, device=x.device, dtype=torch.float32) + 0.5) * (w / ow) - 0.5
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges
    gy = (ys + 0.5) / h * 2 - 1
    gx = (xs + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].expand(n, y1 - y0, ow, 2)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


#: output rows per band of the full-size steps (upsampling, fusion): their temporaries stay this small
FUSE_BAND = 256


def upsampled_trimap(trimap_small, size: tuple[int, int], *, band: int = FUSE_BAND) -> np.ndarray:
    """uint8 ``HxW`` {0, 128, 255}: the glance trimap ``trimap_small`` (``(1,1,h,w)`` in {0, 0.5, 1})
    upsampled by :func:`resize_zero_border`, 0 / 255 where it is exactly 0 / 1 (1e-4 slack), 128
    elsewhere; computed in row bands (no full-size float map)."""
    h, w = size
    predicted = np.empty((h, w), np.uint8)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        t = resize_zero_border(trimap_small, size, rows=(y0, y1))[0, 0].cpu().numpy()
        part = predicted[y0:y1]
        part.fill(128)
        part[np.abs(t) <= 1e-4] = 0
        part[np.abs(t - 1.0) <= 1e-4] = 255
    return predicted


def upsampled_alpha(small, size: tuple[int, int], trimap: np.ndarray | None = None, *, band: int = FUSE_BAND):
    """float32 ``HxW``: ``small`` (``(1,1,h,w)``) upsampled by :func:`resize_zero_border`, fused with the
    upsampled glance trimap when given (:func:`hybrid_fuse`: 255 -> 1, 0 -> 0, else the upsampled
    alpha); computed in row bands, equal to the full-size computation element for element."""
    h, w = size
    alpha = np.empty((h, w), np.float32)
    for y0 in range(0, h, band):
        y1 = min(h, y0 + band)
        part = alpha[y0:y1]
        part[...] = resize_zero_border(small, size, rows=(y0, y1))[0, 0].cpu().numpy()
        if trimap is not None:
            part[trimap[y0:y1] == 255] = 1.0
            part[trimap[y0:y1] == 0] = 0.0
    return alpha


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


class AimProcessor(NetworkProcessor):
    """A loaded AimNet with a test strategy; needs no trimap and predicts one (the glance trimap).

    ``scales`` is ``(glance, focus)``: the glance pass runs on the image scaled by the first,
    the focus pass by the second (hybrid: the official 1/4 and 1/2; whole and tiled: 1/4 and
    full resolution). In ``whole`` and ``tiled`` the focus pass replays the glance pass's
    global statistics (:class:`mattecli.runtime.context.GlobalContext`), so the two differ only
    by the tiling.

    Memory (the runtime's, from the variant's declared figures): a glance pass that does not fit
    the plan runs at half the size; a whole focus pass that does not fit runs on blended tiles at
    the same scale; every such deviation warns and is recorded with the image's result.
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

        super().__init__(net, ctx, provenance=provenance)
        self.strategy = strategy
        self.normalization = normalization or IMAGENET
        self.scales = scales or (GLANCE_RATIO, FOCUS_RATIO if strategy == "hybrid" else 1.0)

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

    def _glance(self, source, h: int, w: int, x_small=None):
        """The glance pass at ``scales[0]`` (records the global context), halved while it does not fit
        the plan. ``source()`` gives the full-size input; ``x_small``, when given, is it already
        resized to the official glance size (so that the caller could drop the full-size input)."""
        from mattecli.runtime.tensors import resize

        official = scaled_size(h, w, self.scales[0])
        with_focus = self.strategy == "resize"  # only the resize strategy uses this pass's focus

        def glance(size):
            from mattecli.methods.aim.net import fuse_glance_focus

            x = x_small if size == official and x_small is not None else resize(source(), size)
            rec = self.context.record() if self.strategy in ("whole", "tiled") else contextlib.nullcontext()
            with rec:  # only the resize strategy uses this pass's focus (the network's own fusion)
                g, focus = self._forward(x, focus=with_focus)
            return g, focus, None if focus is None else fuse_glance_focus(g, focus)

        return self.executor.run_global("glance", glance, official, STRIDE, "AIM glance pass")

    def _focus_tiles(self, x, transition: np.ndarray | None):
        """Focus alpha of a normalised ``(1,3,H,W)`` tensor on blended tiles (tiles without transition skipped).

        Tiles take replicate-padded crops of ``x`` (no padded full-size copy)."""
        import torch

        h, w = x.shape[2:]
        hp, wp = h + (-h) % STRIDE, w + (-w) % STRIDE
        if (hp, wp) == (h, w):
            source = x
        else:  # replicate padding to the stride: the edge row / column repeated, crop by crop
            rows = torch.arange(hp, device=x.device).clamp_(max=h - 1)
            cols = torch.arange(wp, device=x.device).clamp_(max=w - 1)

            def source(y0, y1, x0, x1):
                return x.index_select(2, rows[y0:y1]).index_select(3, cols[x0:x1])

        mask = None
        if transition is not None:
            mask = np.zeros((hp, wp), bool)
            mask[:h, :w] = transition
        replay = self.strategy in ("whole", "tiled")
        out = self.executor.tiles(
            "focus",
            lambda b: self._forward(b, replay=replay, glance=False)[1],
            source,
            size=(hp, wp),
            skip=None if mask is None else (lambda y0, y1, x0, x1: not mask[y0:y1, x0:x1].any()),
            what="AIM focus pass",
        )
        return out[:, :, :h, :w]

    def _focus_at(self, x):
        """The focus alpha of a whole-image pass over ``x`` (already at the focus size), or of blended
        tiles where the plan says the pass does not fit (``hybrid``: a recorded deviation)."""
        from mattecli.runtime.tensors import pad_to_multiple

        h, w = x.shape[-2:]
        replay = self.strategy == "whole"
        hp, wp = h + (-h) % STRIDE, w + (-w) % STRIDE

        def whole():
            padded, _ = pad_to_multiple(x, STRIDE, mode="replicate")
            return self._forward(padded, replay=replay, glance=False)[1][:, :, :h, :w]

        mode = "whole" if self.strategy == "whole" else "official"
        return self.executor.run(
            "focus",
            whole=whole,
            tiled=lambda: self._focus_tiles(x, None),
            pixels=hp * wp,
            what="AIM focus pass",
            mode=mode,
        )

    def process(self, image: np.ndarray, trimap: np.ndarray | None = None, *, extras: bool = False) -> Prediction:
        """Alpha (float32 ``HxW``) and the glance trimap (uint8 {0,128,255}) at the image's size.

        The full-size input tensor is dropped as soon as only reduced copies of it are needed
        (hybrid, resize); the upsampled trimap and alpha and the fusion are computed in row bands
        straight into the two outputs (:func:`upsampled_trimap`, :func:`upsampled_alpha`)."""
        from mattecli.runtime.tensors import image_to_tensor, resize

        self.executor.note(strategy=self.strategy)
        h, w = image.shape[:2]
        n = self.normalization
        held = [image_to_tensor(image, self.device, n.mean, n.std)]

        def source():  # the full-size input (rebuilt, equal, if it was dropped)
            return held[0] if held[0] is not None else image_to_tensor(image, self.device, n.mean, n.std)

        focus_size = _focus_size(h, w, self.scales[1])
        x_focus = x_glance = None
        if self.strategy != "resize":
            x_focus = resize(held[0], focus_size)
        if self.strategy in ("hybrid", "resize") or focus_size != (h, w):
            x_glance = resize(held[0], scaled_size(h, w, self.scales[0]))
            held[0] = None  # only the reduced inputs are needed from here
        glance, _, fusion = self._glance(source, h, w, x_glance)
        del x_glance
        predicted = upsampled_trimap(glance.argmax(dim=1, keepdim=True).float() / 2.0, (h, w))
        del glance
        if self.strategy == "resize":
            alpha = upsampled_alpha(fusion, (h, w))
        else:
            if self.strategy == "tiled":
                transition = predicted == 128
                if focus_size != (h, w):
                    import cv2

                    transition = cv2.resize(transition.astype(np.uint8), focus_size[::-1], cv2.INTER_NEAREST) > 0
                focus = self._focus_tiles(x_focus, transition)
                del transition
            else:
                focus = self._focus_at(x_focus)
            held[0] = x_focus = None
            alpha = upsampled_alpha(focus, (h, w), predicted)
        return Prediction(alpha, predicted)

    def predict_trimap(self, image: np.ndarray) -> np.ndarray:
        """The glance trimap alone (uint8 ``HxW`` {0, 128, 255}): the one :meth:`process` returns,
        without the focus pass (``--trimap auto``, ``trimap --from-image``)."""
        from mattecli.runtime.tensors import image_to_tensor, resize

        h, w = image.shape[:2]
        n = self.normalization
        x_glance = resize(image_to_tensor(image, self.device, n.mean, n.std), scaled_size(h, w, self.scales[0]))
        glance, _, _ = self._glance(lambda: image_to_tensor(image, self.device, n.mean, n.std), h, w, x_glance)
        del x_glance
        return upsampled_trimap(glance.argmax(dim=1, keepdim=True).float() / 2.0, (h, w))


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
    provenance = Provenance("aim", variant.name, (weights,), str(ctx.device), resolved.budget.to_json())
    return AimProcessor(
        net, ctx, resolved.strategy, variant.normalization, scales=resolved.scales, provenance=provenance
    )
