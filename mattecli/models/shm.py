"""SHM: Semantic Human Matting, trimap-free (``--method shm``).

Paper: Chen, Ge, Xu, Zhang, Yang, Gai, "Semantic Human Matting", ACM Multimedia 2018. The
networks and every architectural assumption are documented in ``shm_net.py``. Two variants
(``MethodConfig.variant``; the first is the default):

``shm-mindspore`` (default)
    The MindSpore model zoo's implementation (``official/cv/semantic_human_matting``, branch r1.8,
    Apache-2.0), whose trained checkpoint
    ``semantichumanmatting_ascend_v180_MattingHumanDatasets_official_cv_avesad5.49.ckpt``
    (sha256 ``1a11ded5...2e8c6``) is imported with
    ``mattecli weights import shm-mindspore FILE``: the MindSpore ``.ckpt`` is read without
    MindSpore and its names are mapped by :func:`remap_mindspore`. Its T-Net is MobileNetV2 +
    U-Net and its M-Net a small 4-level encoder-decoder, not the paper's PSPNet-50 / VGG16. This is
    the only SHM with published weights, hence the default.
``shm``
    The paper's architecture (PSPNet-50 T-Net, VGG16-based M-Net); no weights exist, only a
    ``.safetensors`` file of our layout can be imported (for users who train it).

Test strategies (``config.options["strategy"]``, ``--strategy``):

``paper`` (default for ``shm``; called ``whole`` before 0.2): the paper's test rule (section 4.5)
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
    ``whole`` with the M-Net on full-resolution tiles (the engine's tile policy: memory budget,
    halo ``tile_overlap``, raised-cosine blending). Tiles whose T-Net unknown probability stays
    below 1e-3 skip the M-Net (their alpha is ``Fs``; the fused alpha moves less than that). The
    M-Nets have no global pooling, so with a halo covering their receptive field tiles give the
    ``whole`` answer.

Outputs: the fused alpha ``alpha_p = Fs + Us * alpha_r`` clipped to [0, 1] (a deliberate
difference from ``eval.py``, which keeps the values the bicubic resize back and the unclipped fusion
put outside [0, 1] for its SAD: an alpha image cannot store them), and (for
``--save-trimap``) the T-Net trimap: argmax of the resized softmax, classes (background, unknown,
foreground) -> 0 / 128 / 255.

Assumptions beyond the paper (besides those of ``shm_net.py``): the downscale to 1500 uses area
interpolation and the rescale back bilinear (the paper names neither); reflection padding;
``shm-mindspore`` ``whole`` feeds the image in the MindSpore BGR encoding at its own size, a
combination the model zoo never evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec
from mattecli.weights import register_architecture

__all__ = [
    "ShmMatter",
    "VARIANTS",
    "STRATEGIES",
    "MAX_SIDE",
    "RESIZE_SIZE",
    "MINDSPORE_MEAN_BGR",
    "paper_size",
    "encode",
    "to_8bit",
    "resize_8bit",
    "remap_mindspore",
    "is_mindspore",
]

VARIANTS = ("shm-mindspore", "shm")
STRATEGIES = ("paper", "resize", "whole", "tiled")
DEFAULT_STRATEGY = {"shm": "paper", "shm-mindspore": "resize"}
#: tiles whose T-Net unknown probability stays below this skip the M-Net (alpha = Fs + Us * alpha_r moves < it)
SKIP_BELOW = 1e-3
#: default tile halo per variant: the MindSpore M-Net's receptive field (tiles reproduce the whole
#: pass exactly); the paper's VGG16 M-Net reaches 1e-4 of it at 128 px (measured, random weights)
HALO = {"shm-mindspore": 96, "shm": 128}
ENCODING = {"shm": "imagenet", "shm-mindspore": "mindspore"}
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
    from mattecli.engine import IMAGENET_MEAN, IMAGENET_STD

    x = np.asarray(image, dtype=np.float32)
    if encoding == "imagenet":
        return (x - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
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
    :func:`mattecli.engine.pad_to_multiple` does), filled in row blocks so that no other
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


# ----------------------------------------------------------------------------- MindSpore checkpoint
_MS_BN_LEAVES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_MS_WRAPPER = re.compile(r"^(?:(?:network|_backbone|backbone)\.)+(?=[tm]_net\.)")
_MS_SENTINELS = ("t_net.feature.head_conv.1.moving_variance", "m_net.deconv_4.weight")


def _ms_name(key: str) -> str:
    """Drop training-wrapper prefixes (defensive: ``save_checkpoint(net)`` writes none)."""
    return _MS_WRAPPER.sub("", key)


def is_mindspore(state_dict: Mapping) -> bool:
    """Whether a state dict is the MindSpore model zoo's SHM ``net`` (BN ``moving_variance`` and M-Net deconv)."""
    names = {_ms_name(k) for k in state_dict}
    return all(s in names for s in _MS_SENTINELS)


def remap_mindspore(state_dict: dict) -> dict:
    """MindSpore SHM parameter names -> ours.

    Network parameters (``t_net.*``, ``m_net.*``) keep their names except BatchNorm leaves
    (``gamma/beta/moving_mean/moving_variance`` -> ``weight/bias/running_mean/running_var``);
    everything else (optimizer state such as ``moment1.*``/``moments.*``, ``global_step``,
    ``learning_rate``, ``beta1_power``...) is dropped. ``num_batches_tracked`` buffers, which
    MindSpore has no equivalent of, are filled in by the loader.
    """
    out: dict = {}
    for key, value in state_dict.items():
        name = _ms_name(key)
        if not name.startswith(("t_net.", "m_net.")):
            continue
        head, _, leaf = name.rpartition(".")
        out[f"{head}.{_MS_BN_LEAVES.get(leaf, leaf)}"] = value
    return out


def _build_paper():
    from mattecli.models.shm_net import SHMNet

    return SHMNet()


def _build_mindspore():
    from mattecli.models.shm_net import SHMMindSporeNet

    return SHMMindSporeNet()


register_architecture("shm", build=_build_paper)
register_architecture("shm-mindspore", build=_build_mindspore, remap=remap_mindspore, detect=is_mindspore)


# ----------------------------------------------------------------------------- inference
@dataclass
class ShmMatter:
    """A loaded SHM network with its test strategy and input encoding; ``predict`` needs no trimap."""

    net: object
    device: object
    precision: str = "fp32"
    strategy: str = "paper"
    encoding: str = "imagenet"
    weights_path: object = None  # the weights file (bench reports its sha256)
    tiles: object = None  # engine.TilePolicy (strategy tiled)

    def __post_init__(self):
        from mattecli import engine

        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown SHM strategy {self.strategy!r}")
        if self.tiles is None:
            self.tiles = engine.TilePolicy(stride=STRIDE, halo=64)

    def _forward(self, image: np.ndarray):
        """``HxWx3`` image in [0, 1] (already at the network size) -> (softmax ``3xHxW``, alpha ``HxW``)."""
        import torch

        from mattecli import engine

        x = torch.from_numpy(np.ascontiguousarray(encode(image, self.encoding))).permute(2, 0, 1)[None]
        x, (h, w) = engine.pad_to_multiple(x.to(self.device), STRIDE)
        with torch.inference_mode(), engine.autocast(self.device, self.precision):
            trimap, _alpha_r, alpha_p = self.net(engine.channels_last(x))
        prob = torch.softmax(trimap.float(), dim=1)[0, :, :h, :w]
        alpha = alpha_p.float()[0, 0, :h, :w]
        return np.ascontiguousarray(prob.permute(1, 2, 0).cpu().numpy()), alpha.cpu().numpy()

    def _full_resolution(self, image: np.ndarray, tiled: bool) -> tuple[np.ndarray, np.ndarray]:
        """``whole`` / ``tiled``: T-Net at the paper's size, M-Net and fusion at full resolution.

        Returns the alpha and the T-Net trimap at the image's size.
        """
        import cv2
        import torch

        from mattecli import engine

        h, w = image.shape[:2]
        sh, sw = paper_size(h, w)
        small = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        xs = torch.from_numpy(np.ascontiguousarray(encode(small, self.encoding))).permute(2, 0, 1)[None]
        xs, _ = engine.pad_to_multiple(xs.to(self.device), STRIDE)
        with torch.inference_mode(), engine.autocast(self.device, self.precision):
            logits = self.net.t_net(engine.channels_last(xs))
        prob = torch.softmax(logits.float(), dim=1)[0, :, :sh, :sw].permute(1, 2, 0).cpu().numpy()
        if (sh, sw) != (h, w):
            prob = cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR)
        from mattecli.models.shm_net import TRIMAP_CLASSES

        fg, us = self.net.fg_channel, self.net.unknown_channel
        fs, us_map = prob[:, :, fg].copy(), prob[:, :, us].copy()
        trimap_idx = prob.argmax(axis=2).astype(np.uint8)
        source = _m_net_input(image, prob, self.encoding)  # (1, 6, H16, W16) on the host, built in row blocks
        del prob

        def m_net(batch):
            batch = batch.to(self.device)
            with torch.inference_mode(), engine.autocast(self.device, self.precision):
                alpha_r = self.net.m_net(engine.channels_last(batch)).float()
            return alpha_r

        ph, pw = source.shape[-2] - h, source.shape[-1] - w
        if tiled:
            unknown = np.pad(us_map, ((0, ph), (0, pw)), mode="edge") >= SKIP_BELOW
            self.tiles.probe(self.net.m_net, m_net, 6, self.device)
            alpha_r = self.tiles.run(m_net, source, skip=lambda y0, y1, x0, x1: not unknown[y0:y1, x0:x1].any())
        else:
            alpha_r = m_net(source)
        alpha_r = alpha_r[0, 0, :h, :w].cpu().numpy()
        trimap = np.asarray(TRIMAP_CLASSES, np.uint8)[trimap_idx]
        return fs + us_map * alpha_r, trimap

    def predict_with_trimap(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Alpha (float32 ``HxW`` in [0, 1]) and the T-Net trimap (uint8 {0, 128, 255}) at the image's size."""
        import warnings

        import cv2

        from mattecli import engine
        from mattecli.models.shm_net import TRIMAP_CLASSES

        h, w = image.shape[:2]
        if self.strategy in ("whole", "tiled"):
            if self.strategy == "whole":
                try:
                    alpha, trimap = self._full_resolution(image, tiled=False)
                except Exception as err:
                    if not engine.is_oom(err):
                        raise
                    del err
                    warnings.warn("SHM M-Net out of memory: computing it on tiles", RuntimeWarning, stacklevel=2)
                    alpha, trimap = self._full_resolution(image, tiled=True)
            else:
                alpha, trimap = self._full_resolution(image, tiled=True)
            return np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=False), trimap
        elif self.strategy == "resize":
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
        trimap = np.asarray(TRIMAP_CLASSES, np.uint8)[prob.argmax(axis=2)]
        return np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=False), trimap

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_trimap(image)[0]


def _create(config: MethodConfig) -> ShmMatter:
    from mattecli import engine, models
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model

    variant = config.variant or VARIANTS[0]
    if variant not in VARIANTS:
        raise BadOptionError(f"SHM variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    strategy = config.options.get("strategy") or DEFAULT_STRATEGY[variant]
    if strategy not in STRATEGIES:
        raise BadOptionError(f"SHM strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if config.options.get("scales"):
        raise BadOptionError("SHM defines no multi-scale fusion; drop --scales")
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    tiles = engine.tile_policy(models.get("shm"), config.options, device, margin=HALO[variant])
    compile_model = bool(config.options.get("compile"))
    net = engine.prepare_model(load_model(variant, device, config.weights), device, compile=False)
    if compile_model:
        import torch

        net.t_net, net.m_net = torch.compile(net.t_net), torch.compile(net.m_net)
    from mattecli.weights import local_path

    weights_path = config.weights or local_path(variant)
    return ShmMatter(net, device, config.precision, strategy, ENCODING[variant], weights_path=weights_path, tiles=tiles)


register(
    MethodSpec(
        name="shm",
        summary="SHM: automatic (trimap-free) human matting, T-Net + M-Net + fusion",
        paper="Chen, Ge, Xu, Zhang, Yang, Gai: Semantic Human Matting, ACM MM 2018",
        needs_trimap=False,
        create=_create,
        weights=VARIANTS,
        stride=STRIDE,
        margin=96,
        scales=(1.0,),
    )
)
