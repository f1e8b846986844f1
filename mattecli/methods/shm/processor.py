"""SHM's test strategies (``--method shm``): Semantic Human Matting, trimap-free.

Paper: Chen, Ge, Xu, Zhang, Yang, Gai, "Semantic Human Matting", ACM Multimedia 2018. The
networks and every architectural assumption are documented in ``net.py``, the declaration is
``spec.py``. Two variants (``--variant``; the first is the default):

``shm-mindspore`` (default)
    The MindSpore model zoo's implementation (``official/cv/semantic_human_matting``, branch r1.8,
    Apache-2.0), whose trained checkpoint
    ``semantichumanmatting_ascend_v180_MattingHumanDatasets_official_cv_avesad5.49.ckpt``
    (sha256 ``1a11ded5...2e8c6``) is imported with
    ``mattecli weights import shm-mindspore FILE``: the MindSpore ``.ckpt`` is read without
    MindSpore and its names are mapped by :func:`~mattecli.methods.shm.convert.remap_mindspore`. Its
    T-Net is MobileNetV2 + U-Net and its M-Net a small 4-level encoder-decoder, not the paper's
    PSPNet-50 / VGG16. This is the only SHM with published weights, hence the default.
``shm``
    The paper's architecture (PSPNet-50 T-Net, VGG16-based M-Net); no weights exist, only a
    ``.safetensors`` file of our layout can be imported (for users who train it).

Test strategies (``--strategy``):

``paper`` (default for ``shm``): the paper's test rule (section 4.5)
    "the feed forward is conducted on the entire image": when the longer side exceeds 1500 px the
    image is first scaled (aspect kept) so that it is 1500; the network runs on the whole image,
    padded bottom/right to a multiple of 16 (reflection) and cropped back; the alpha (and the
    trimap probabilities) are rescaled to the input size.
``resize`` (default for ``shm-mindspore``): the MindSpore evaluation (``eval.py``'s
    ``seg_process``) in its order of operations: the image is quantised to 8 bits (what
    ``cv2.imread`` hands ``eval.py``), resized to 320x320 by OpenCV's 8-bit bicubic resize
    (aspect not kept; OpenCV rounds and saturates in its own 8-bit arithmetic, which differs by
    one level from rounding a float resize on values at or near a .5 tie, and, in its generic
    fixed-point kernel, on others too), encoded, and the outputs are resized back to the input
    size with bicubic interpolation. See :func:`to_8bit` for 16-bit inputs.
``whole`` (mattecli's addition, for detail on large images)
    The T-Net runs as in ``paper`` (the image scaled to at most 1500 px); its softmax is upsampled
    bilinearly to the image, and the M-Net and the fusion run at full resolution in one pass.
``tiled``
    ``whole`` with the M-Net on full-resolution tiles (the runtime's tiles: side from
    ``--tile-size`` or the declared memory against the budget, halo ``--tile-overlap``,
    raised-cosine blending). Tiles whose T-Net unknown probability stays
    below 1e-3 skip the M-Net (their alpha is ``Fs``; the fused alpha moves less than that). The
    M-Nets have no global pooling, so with a halo covering their receptive field tiles give the
    ``whole`` answer.

Outputs: the fused alpha ``alpha_p = Fs + Us * alpha_r`` clipped to [0, 1] (a deliberate
difference from ``eval.py``, which keeps the values the bicubic resize back and the unclipped fusion
put outside [0, 1] for its SAD: an alpha image cannot store them), and (for
``--save-trimap``) the T-Net trimap: argmax of the resized softmax, classes (background, unknown,
foreground) -> 0 / 128 / 255.

Assumptions beyond the paper (besides those of ``net.py``): the downscale to 1500 uses area
interpolation and the rescale back bilinear (the paper names neither); reflection padding;
``shm-mindspore`` ``whole`` feeds the image in the MindSpore BGR encoding at its own size, a
combination the model zoo never evaluated.
"""

from __future__ import annotations

import numpy as np

from mattecli.methods.base import Prediction, Provenance, Resolved
from mattecli.methods.network import NetworkProcessor

__all__ = [
    "ShmProcessor",
    "STRATEGIES",
    "MAX_SIDE",
    "RESIZE_SIZE",
    "MINDSPORE_MEAN_BGR",
    "paper_size",
    "encode",
    "to_8bit",
    "resize_8bit",
    "load",
]

STRATEGIES = ("paper", "resize", "whole", "tiled")

#: tiles whose T-Net unknown probability stays below this skip the M-Net (alpha = Fs + Us * alpha_r moves < it)
SKIP_BELOW = 1e-3

STRIDE = 16

MAX_SIDE = 1500

RESIZE_SIZE = 320

#: ``eval.py`` / ``preprocess.py``: ``(bgr_0_255 - (104, 112, 121)) / 255``.
MINDSPORE_MEAN_BGR = (104.0, 112.0, 121.0)


def paper_size(h: int, w: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """The paper's test size: unchanged unless the longer side exceeds ``max_side``, then scaled to it."""
    longer = max(h, w)
    if longer <= max_side:
        return h, w
    s = max_side / longer
    return max(1, round(h * s)), max(1, round(w * s))


def encode(image: np.ndarray, encoding: str) -> np.ndarray:
    """float32 ``HxWx3`` RGB in [0, 1] -> the network's ``HxWx3`` input.

    ``imagenet``: RGB normalised with ImageNet mean/std. ``mindspore``: BGR, ``(255 * x - mean) / 255``
    with the MindSpore evaluation mean (104, 112, 121).
    """
    from mattecli.methods.base import IMAGENET

    x = np.asarray(image, dtype=np.float32)
    if encoding == "imagenet":
        return (x - np.float32(IMAGENET.mean)) / np.float32(IMAGENET.std)
    if encoding == "mindspore":
        return (x[:, :, ::-1] * 255.0 - np.float32(MINDSPORE_MEAN_BGR)) / 255.0
    raise ValueError(f"unknown encoding {encoding!r}")


def to_8bit(image: np.ndarray) -> np.ndarray:
    """float ``HxWx3`` in [0, 1] -> uint8: each value rounded to the nearest 8-bit level (saturated).

    An image decoded from an 8-bit file gets back exactly the file's values, i.e. what
    ``cv2.imread`` gives the official code. A 16-bit input gets the nearest 8-bit level
    (``round(v / 257)``), which is what ``cv2.imread`` gives for a 16-bit TIFF; for a 16-bit PNG
    ``cv2.imread`` truncates (``v >> 8``), one level lower on about a quarter of the values: the
    source file's format is not known here, and the nearest level is the faithful 8-bit image.
    """
    return np.clip(np.rint(np.asarray(image, np.float32) * 255.0), 0, 255).astype(np.uint8)


def resize_8bit(image: np.ndarray, size: int) -> np.ndarray:
    """``eval.py``'s input resize: the image quantised to 8 bits (:func:`to_8bit`), then OpenCV's
    8-bit bicubic resize to ``size`` x ``size`` (OpenCV rounds and saturates in its own 8-bit
    arithmetic), returned as float32 in [0, 1] on the 8-bit grid."""
    import cv2

    small = cv2.resize(to_8bit(image), (size, size), interpolation=cv2.INTER_CUBIC)
    return small.astype(np.float32) / 255.0


def _m_net_input(image: np.ndarray, prob: np.ndarray, encoding: str, block: int = 512):
    """The M-Net's input for the whole image, ``(1, 6, H16, W16)`` float32 on the host: the encoded
    image and the T-Net probabilities, edge-padded to multiples of 16 (the image reflected, as
    :func:`mattecli.runtime.tensors.pad_to_multiple` does), filled in row blocks so that no other
    full-size copy exists."""
    import torch

    h, w = image.shape[:2]
    hp, wp = h + (-h) % STRIDE, w + (-w) % STRIDE
    out = torch.empty((1, 6, hp, wp), dtype=torch.float32)
    prob_rows, prob_cols = np.minimum(np.arange(hp), h - 1), np.minimum(np.arange(wp), w - 1)  # edge
    rows, cols = prob_rows, prob_cols
    if hp - h < h and wp - w < w:  # reflect, else replicate (pad_to_multiple's rule)
        rows = np.where(np.arange(hp) < h, np.arange(hp), 2 * (h - 1) - np.arange(hp))
        cols = np.where(np.arange(wp) < w, np.arange(wp), 2 * (w - 1) - np.arange(wp))
    for y0 in range(0, hp, block):
        y1 = min(hp, y0 + block)
        enc = encode(image[rows[y0:y1]][:, cols], encoding)
        out[0, :3, y0:y1] = torch.from_numpy(np.ascontiguousarray(enc.transpose(2, 0, 1)))
        part = prob[prob_rows[y0:y1]][:, prob_cols]
        out[0, 3:, y0:y1] = torch.from_numpy(np.ascontiguousarray(part.transpose(2, 0, 1)))
    return out


# ----------------------------------------------------------------------------- inference
class ShmProcessor(NetworkProcessor):
    """A loaded SHM network with its test strategy and input encoding; needs no trimap, predicts one."""

    def __init__(self, net, ctx, strategy: str = "paper", encoding: str = "imagenet", *, provenance=None):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown SHM strategy {strategy!r}")
        super().__init__(net, ctx, provenance=provenance)
        self.strategy = strategy
        self.encoding = encoding

    def _forward(self, image: np.ndarray):
        """``HxWx3`` image in [0, 1] (already at the network size) -> (softmax ``3xHxW``, alpha ``HxW``)."""
        import torch

        from mattecli.runtime.device import channels_last
        from mattecli.runtime.tensors import pad_to_multiple

        x = torch.from_numpy(np.ascontiguousarray(encode(image, self.encoding))).permute(2, 0, 1)[None]
        x, (h, w) = pad_to_multiple(x.to(self.device), STRIDE)
        with torch.inference_mode(), self.ctx.autocast():
            trimap, _alpha_r, alpha_p = self.net(channels_last(x))
        prob = torch.softmax(trimap.float(), dim=1)[0, :, :h, :w]
        alpha = alpha_p.float()[0, 0, :h, :w]
        return np.ascontiguousarray(prob.permute(1, 2, 0).cpu().numpy()), alpha.cpu().numpy()

    def _full_resolution(self, image: np.ndarray, tiled: bool) -> tuple[np.ndarray, np.ndarray]:
        """``whole`` / ``tiled``: T-Net at the paper's size, M-Net and fusion at full resolution.

        Returns the alpha and the T-Net trimap at the image's size.
        """
        import cv2
        import torch

        from mattecli.methods.shm.net import TRIMAP_CLASSES
        from mattecli.runtime.device import channels_last
        from mattecli.runtime.tensors import pad_to_multiple

        h, w = image.shape[:2]
        sh, sw = paper_size(h, w)
        small = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        xs = torch.from_numpy(np.ascontiguousarray(encode(small, self.encoding))).permute(2, 0, 1)[None]
        xs, _ = pad_to_multiple(xs.to(self.device), STRIDE)
        with torch.inference_mode(), self.ctx.autocast():
            logits = self.net.t_net(channels_last(xs))
        prob = torch.softmax(logits.float(), dim=1)[0, :, :sh, :sw].permute(1, 2, 0).cpu().numpy()
        if (sh, sw) != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        fg, us = self.net.fg_channel, self.net.unknown_channel
        fs, us_map = prob[:, :, fg].copy(), prob[:, :, us].copy()
        trimap_idx = prob.argmax(axis=2).astype(np.uint8)
        source = _m_net_input(image, prob, self.encoding)  # (1, 6, H16, W16) on the host, built in row blocks
        del prob

        def m_net(batch):
            batch = batch.to(self.device)
            with torch.inference_mode(), self.ctx.autocast():
                alpha_r = self.net.m_net(channels_last(batch)).float()
            return alpha_r

        ph, pw = source.shape[-2] - h, source.shape[-1] - w

        def tiles():
            unknown = np.pad(us_map, ((0, ph), (0, pw)), mode="edge") >= SKIP_BELOW
            skip = lambda y0, y1, x0, x1: not unknown[y0:y1, x0:x1].any()  # noqa: E731
            return self.executor.tiles("m_net", m_net, source, skip=skip, what="SHM M-Net")

        if tiled:
            alpha_r = tiles()
        else:
            pixels = source.shape[-2] * source.shape[-1]
            alpha_r = self.executor.run(
                "m_net", whole=lambda: m_net(source), tiled=tiles, pixels=pixels, what="SHM M-Net", mode="whole"
            )
        alpha_r = alpha_r[0, 0, :h, :w].cpu().numpy()
        trimap = np.asarray(TRIMAP_CLASSES, np.uint8)[trimap_idx]
        return fs + us_map * alpha_r, trimap

    def process(self, image: np.ndarray, trimap: np.ndarray | None = None, *, extras: bool = False) -> Prediction:
        """Alpha (float32 ``HxW``) and the T-Net trimap (uint8 {0, 128, 255}) at the image's size."""
        import cv2

        from mattecli.methods.shm.net import TRIMAP_CLASSES

        h, w = image.shape[:2]
        self.executor.note(strategy=self.strategy)
        if self.strategy == "whole":
            return Prediction(*self._full_resolution(image, tiled=False))
        if self.strategy == "tiled":
            return Prediction(*self._full_resolution(image, tiled=True))
        if self.strategy == "resize":
            prob, alpha = self._forward(resize_8bit(image, RESIZE_SIZE))
            if alpha.shape != (h, w):
                alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_CUBIC)
                prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_CUBIC)
        else:
            sh, sw = paper_size(h, w)
            small = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            prob, alpha = self._forward(small)
            if alpha.shape != (h, w):
                alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
                prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        return Prediction(alpha, np.asarray(TRIMAP_CLASSES, np.uint8)[prob.argmax(axis=2)])

    def predict_trimap(self, image: np.ndarray) -> np.ndarray:
        """The T-Net trimap alone (uint8 ``HxW`` {0, 128, 255}): the one :meth:`process` returns for
        this strategy (``resize``: 320x320 input, bicubic back; the others: the paper's size, bilinear
        back), without the M-Net (``--trimap auto``, ``trimap --from-image``)."""
        import cv2
        import torch

        from mattecli.methods.shm.net import TRIMAP_CLASSES
        from mattecli.runtime.device import channels_last
        from mattecli.runtime.tensors import pad_to_multiple

        h, w = image.shape[:2]
        if self.strategy == "resize":
            small, back = resize_8bit(image, RESIZE_SIZE), cv2.INTER_CUBIC
        else:
            sh, sw = paper_size(h, w)
            small = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            back = cv2.INTER_LINEAR
        sh, sw = small.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(encode(small, self.encoding))).permute(2, 0, 1)[None]
        x, _ = pad_to_multiple(x.to(self.device), STRIDE)
        with torch.inference_mode(), self.ctx.autocast():
            logits = self.net.t_net(channels_last(x))
        prob = np.ascontiguousarray(torch.softmax(logits.float(), dim=1)[0, :, :sh, :sw].permute(1, 2, 0).cpu().numpy())
        if (sh, sw) != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=back)
        return np.asarray(TRIMAP_CLASSES, np.uint8)[prob.argmax(axis=2)]


def load(resolved: Resolved) -> ShmProcessor:
    """Build the variant's SHM network with its weights (the spec's ``load``)."""
    from mattecli.methods.loading import load_network, run_context
    from mattecli.runtime.device import prepare_model
    from mattecli.runtime.winograd import use_winograd

    ctx = run_context(resolved, strategy="auto")  # SHM's own strategies decide; the executor only falls back
    variant = resolved.variant
    net, weights = load_network(resolved, variant, ctx.device, file=resolved.options.weights)
    net = prepare_model(net, ctx.device, compile=False)
    # Winograd on the CPU: the paper's networks 1.42x at 512 px (bench/fold_speed.py); the MindSpore
    # ones have no convolution large enough
    use_winograd(net)
    if ctx.compile:
        import torch

        net.t_net, net.m_net = torch.compile(net.t_net), torch.compile(net.m_net)
    provenance = Provenance("shm", variant.name, (weights,), str(ctx.device), resolved.budget.to_json())
    return ShmProcessor(net, ctx, resolved.strategy, variant.params["encoding"], provenance=provenance)
