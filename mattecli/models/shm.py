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

``whole`` (default for ``shm``): the paper's test rule (section 4.5)
    "the feed forward is conducted on the entire image": when the longer side exceeds 1500 px the
    image is first scaled (aspect kept) so that it is 1500; the network runs on the whole image,
    padded bottom/right to a multiple of 16 (reflection) and cropped back; the alpha (and the
    trimap probabilities) are rescaled to the input size.
``resize`` (default for ``shm-mindspore``): the MindSpore evaluation (``eval.py``)
    the image is resized to 320x320 (bicubic, aspect not kept; rounded to 8-bit values as the
    official code resizes the 8-bit image), and the outputs are resized back to the input size
    with bicubic interpolation.

Outputs: the fused alpha ``alpha_p = Fs + Us * alpha_r`` clipped to [0, 1], and (for
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
    "remap_mindspore",
    "is_mindspore",
]

VARIANTS = ("shm-mindspore", "shm")
STRATEGIES = ("whole", "resize")
DEFAULT_STRATEGY = {"shm": "whole", "shm-mindspore": "resize"}
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


def _resize_8bit(image: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize to ``size`` x ``size`` on the 0..255 scale, rounded and saturated like an 8-bit image."""
    import cv2

    small = cv2.resize(np.asarray(image, np.float32) * 255.0, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(small), 0, 255).astype(np.float32) / 255.0


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
    strategy: str = "whole"
    encoding: str = "imagenet"
    weights_path: object = None  # the weights file (bench reports its sha256)

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

    def predict_with_trimap(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Alpha (float32 ``HxW`` in [0, 1]) and the T-Net trimap (uint8 {0, 128, 255}) at the image's size."""
        import cv2

        from mattecli.models.shm_net import TRIMAP_CLASSES

        h, w = image.shape[:2]
        if self.strategy == "resize":
            prob, alpha = self._forward(_resize_8bit(image, RESIZE_SIZE))
            interp = cv2.INTER_CUBIC
        else:
            sh, sw = paper_size(h, w)
            small = image if (sh, sw) == (h, w) else cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            prob, alpha = self._forward(small)
            interp = cv2.INTER_LINEAR
        if alpha.shape != (h, w):
            alpha = cv2.resize(alpha, (w, h), interpolation=interp)
            prob = cv2.resize(prob, (w, h), interpolation=interp)
        trimap = np.asarray(TRIMAP_CLASSES, np.uint8)[prob.argmax(axis=2)]
        return np.clip(alpha, 0.0, 1.0).astype(np.float32), trimap

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_trimap(image)[0]


def _create(config: MethodConfig) -> ShmMatter:
    from mattecli import engine
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model

    variant = config.variant or VARIANTS[0]
    if variant not in VARIANTS:
        raise BadOptionError(f"SHM variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    strategy = config.options.get("strategy") or DEFAULT_STRATEGY[variant]
    if strategy not in STRATEGIES:
        raise BadOptionError(f"SHM strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    net = engine.prepare_model(load_model(variant, device, config.weights), device)
    from mattecli.weights import local_path

    weights_path = config.weights or local_path(variant)
    return ShmMatter(net, device, config.precision, strategy, ENCODING[variant], weights_path=weights_path)


register(
    MethodSpec(
        name="shm",
        summary="SHM: automatic (trimap-free) human matting, T-Net + M-Net + fusion",
        paper="Chen, Ge, Xu, Zhang, Yang, Gai: Semantic Human Matting, ACM MM 2018",
        needs_trimap=False,
        create=_create,
        weights=VARIANTS,
        stride=STRIDE,
        margin=64,
        scales=(1.0,),
    )
)
