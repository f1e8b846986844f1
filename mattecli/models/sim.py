"""SIM: semantic image matting with the official test pipeline (``--method sim``).

Paper: Sun, Tang, Tai, "Semantic Image Matting", CVPR 2021.
Official code: github.com/nowsyn/SIM at dc5ed5a (no licence file: clean-room reimplementation),
``scripts/main.py`` and ``data/util.py`` (digest: ``shared/refs/sim.md``). Networks in
``sim_net.py``; the semantic trimap (patch analysis) in :mod:`mattecli.semantic`.

Test pipeline (``sim.md`` section 4), per image, no resizing and no test-time augmentation:

1. pad image and trimap at the bottom/right by ``(h // 8 + 1) * 8 - h`` (always 1..8 px) with
   OpenCV ``BORDER_REFLECT`` (edge pixel repeated: ``fedcba|abcdef``);
2. encode (:func:`encode_inputs`): RGB in [0, 1], ImageNet-normalised RGB, ``[trimap == 0,
   trimap == 255]``, and six Gaussians of the exact Euclidean distance to the background and
   to the foreground, ``exp(-d^2 / (2 (s L)^2))`` for ``s`` = 0.02, 0.08, 0.16 and ``L`` = 320;
3. the semantic trimap of the padded image (:class:`mattecli.semantic.PatchAnalyzer`);
4. the matting network; alpha clamped to [0, 1], set to 0 / 1 where the trimap is 0 / 255;
5. crop back to the input size.

Variants: ``sim-comp1k`` (default; trained on Composition-1k) and ``sim-simd`` (trained on SIMD),
both with the ``sim-classifier`` patch classifier. ``MethodConfig.options``: ``patch_sizes``
(default the official 320, 800), ``batch_size`` (classifier patches per pass) and
``classifier_weights`` (a file overriding ``sim-classifier``).

Deviations, none of which changes results on valid inputs: the weight-standardised decoder
convolutions are standardised once after loading (bit-identical outputs); constant class
activation maps (e.g. a trimap without unknown pixels) give zero score maps where the official
code divides by zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec
from mattecli.weights import register_architecture

__all__ = [
    "VARIANTS",
    "DEFAULT_VARIANT",
    "CLASSIFIER_VARIANT",
    "PAD_STRIDE",
    "CLICK_LENGTH",
    "CLICK_SIGMAS",
    "pad_amounts",
    "pad_reflect",
    "two_channel_trimap",
    "distance_maps",
    "gaussian_encoding",
    "distance_encoding",
    "encode_padded",
    "padded_index",
    "padded_crop",
    "encode_inputs",
    "is_official",
    "remap_official",
    "is_official_classifier",
    "remap_official_classifier",
    "SimMatter",
    "STRATEGIES",
    "scaled_patch_sizes",
]

VARIANTS = ("sim-comp1k", "sim-simd")
DEFAULT_VARIANT = "sim-comp1k"
CLASSIFIER_VARIANT = "sim-classifier"
PAD_STRIDE = 8
CLICK_LENGTH = 320
CLICK_SIGMAS = (0.02, 0.08, 0.16)


# ----------------------------------------------------------------------------- input encodings
def pad_amounts(h: int, w: int, stride: int = PAD_STRIDE) -> tuple[int, int]:
    """Official bottom/right padding: ``(side // stride + 1) * stride - side``, so always 1..stride px."""
    return (h // stride + 1) * stride - h, (w // stride + 1) * stride - w


def pad_reflect(arr: np.ndarray, pad_h: int, pad_w: int) -> np.ndarray:
    """Pad an ``HxW`` or ``HxWxC`` array at the bottom/right with OpenCV's ``BORDER_REFLECT`` (numpy 'symmetric')."""
    if pad_h == 0 and pad_w == 0:
        return arr
    width = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (arr.ndim - 2)
    return np.pad(arr, width, mode="symmetric")


def two_channel_trimap(trimap: np.ndarray) -> np.ndarray:
    """float32 ``HxWx2``: channel 0 = (trimap == 0) background, channel 1 = (trimap == 255) foreground."""
    out = np.zeros(trimap.shape + (2,), np.float32)
    out[:, :, 0] = trimap == 0
    out[:, :, 1] = trimap == 255
    return out


def distance_maps(trimap: np.ndarray) -> list[np.ndarray | None]:
    """Exact Euclidean distance (OpenCV precise L2) of every pixel to the background and to the foreground.

    float32 ``HxW`` each, ``None`` for an empty region; :func:`gaussian_encoding` turns them into
    the network's six channels (tiles take crops of these maps, so the distances stay global).
    """
    out: list[np.ndarray | None] = []
    for value in (0, 255):  # background, foreground (the channels of two_channel_trimap)
        region = trimap == value
        if not region.any():
            out.append(None)
            continue
        src = np.full(trimap.shape, 255, np.uint8)
        src[region] = 0  # 0 on the region: distance to it
        del region
        out.append(cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE))
    return out


def padded_index(n: int, pad: int) -> np.ndarray:
    """Source index of every position of a length-``n`` axis padded by ``pad`` with :func:`pad_reflect`."""
    return np.pad(np.arange(n), (0, pad), mode="symmetric")


def padded_crop(arr: np.ndarray, rows: np.ndarray, cols: np.ndarray, y0: int, y1: int, x0: int, x1: int):
    """``pad_reflect(arr, ...)[y0:y1, x0:x1]`` without the padded copy of ``arr`` (``rows`` / ``cols``
    from :func:`padded_index`): a view where the box lies inside ``arr``, else a tile-sized copy."""
    h, w = arr.shape[:2]
    if y1 <= h and x1 <= w:
        return arr[y0:y1, x0:x1]
    return arr[np.ix_(rows[y0:y1], cols[x0:x1])]


def gaussian_encoding(dists: list[np.ndarray | None], length: int = CLICK_LENGTH) -> np.ndarray:
    """The six channels ``3k + j = exp(-d_k^2 / (2 (CLICK_SIGMAS[j] * length)^2))`` (0 for an empty region)."""
    shape = next((d.shape for d in dists if d is not None), None)
    if shape is None:
        raise ValueError("no distance map given")
    out = np.zeros(shape + (6,), np.float32)
    for k, d in enumerate(dists):
        if d is None:
            continue
        neg_d2 = -(d**2)
        for j, s in enumerate(CLICK_SIGMAS):
            out[:, :, 3 * k + j] = np.exp(neg_d2 / (2 * ((s * length) ** 2)))
    return out


def distance_encoding(trimap: np.ndarray, length: int = CLICK_LENGTH) -> np.ndarray:
    """The six distance channels (official ``trimap_to_clks``): float32 ``HxWx6``.

    For k = background, foreground (if that region is not empty): ``d`` = exact Euclidean distance
    to the nearest pixel of the region (OpenCV precise L2 distance transform), and channels
    ``3k + j = exp(-d^2 / (2 (CLICK_SIGMAS[j] * length)^2))``. An empty region leaves its channels 0.
    """
    dists = distance_maps(trimap)
    if all(d is None for d in dists):
        return np.zeros(trimap.shape + (6,), np.float32)
    return gaussian_encoding(dists, length)


def _nchw(arr: np.ndarray, device):
    import torch

    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None].to(device)


def encode_padded(img: np.ndarray, tri: np.ndarray, device, *, clicks: bool = True, dists=None) -> dict:
    """Encode an already padded image / trimap (see :func:`encode_inputs`); ``dists`` are crops of
    :func:`distance_maps` of the whole padded trimap (computed from ``tri`` when None)."""
    from mattecli import engine

    out = {
        "image": _nchw(img, device),
        "image_n": engine.image_to_tensor(img, device),
        "trimap": _nchw(tri.astype(np.float32), device),
        "two_chan": _nchw(two_channel_trimap(tri), device),
    }
    if clicks:
        if dists is None:
            enc = distance_encoding(tri)
        elif all(d is None for d in dists):
            enc = np.zeros(tri.shape + (6,), np.float32)
        else:
            enc = gaussian_encoding(dists)
        out["clicks"] = _nchw(enc, device)
    return out


def encode_inputs(image: np.ndarray, trimap: np.ndarray, device, *, clicks: bool = True) -> dict:
    """Pad (official rule) and encode one image for SIM; tensors are ``(1,C,Hp,Wp)`` float32 on ``device``.

    Keys: ``image`` (RGB in [0,1]), ``image_n`` (ImageNet-normalised), ``trimap`` (values 0..255,
    1 channel), ``two_chan`` (2), ``clicks`` (6; only when ``clicks``), ``size`` (the input's
    ``(h, w)``).
    """
    h, w = trimap.shape
    ph, pw = pad_amounts(h, w)
    img = pad_reflect(np.asarray(image, np.float32), ph, pw)
    tri = pad_reflect(np.asarray(trimap, np.uint8), ph, pw)
    return {**encode_padded(img, tri, device, clicks=clicks), "size": (h, w)}


# ----------------------------------------------------------------------------- official checkpoints
_MATTING_SENTINELS = (
    "encoder.conv1_side.weight",
    "decoder.conv_up4_alpha.0.weight",
    "decoder.global_module.project.0.weight",
)
_CLASSIFIER_TOP = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")


def is_official(state_dict: Mapping) -> bool:
    """Whether a state dict is the official SIM matting one (``MattingModule``: ``encoder.*`` + ``decoder.*``)."""
    return all(k in state_dict for k in _MATTING_SENTINELS)


def remap_official(state_dict: dict) -> dict:
    """Official matting state dict -> ours: the identity (our modules use the official names).

    The checkpoint (``{'epoch', 'state_dict', 'best_sad'}``, 410 keys, no ``module.``) is unwrapped
    and ``module.``-stripped by :mod:`mattecli.weights` before this is called; the training-only
    heads ``decoder.conv_up4_fb`` / ``conv_up4_attn`` are kept because the module has them.
    """
    return dict(state_dict)


def _strip_classifier_prefix(state_dict: Mapping) -> dict:
    """The official loader drops the first dotted component of every key (``utils/util.py remove_prefix``)."""
    sd = dict(state_dict)
    if "conv1.weight" in sd or not sd:
        return sd
    firsts = {k.split(".", 1)[0] for k in sd}
    if len(firsts) == 1 and all("." in k for k in sd):
        return {k.split(".", 1)[1]: v for k, v in sd.items()}
    return sd


def is_official_classifier(state_dict: Mapping) -> bool:
    """Whether a state dict is the official patch classifier (4-channel ResNet-50, 20 classes), prefix or not."""
    sd = _strip_classifier_prefix(state_dict)
    conv1, fc = sd.get("conv1.weight"), sd.get("fc.weight")
    return (
        conv1 is not None
        and fc is not None
        and tuple(conv1.shape[:2]) == (64, 4)
        and fc.shape[0] == 20
        and all(k.startswith(_CLASSIFIER_TOP) for k in sd)
    )


def remap_official_classifier(state_dict: dict) -> dict:
    """Official classifier state dict -> ours: drop the one leading prefix (``module.``) if still there.

    ``classifier_resnet50_best.pth.tar`` holds ``{'state_dict': {'module.conv1.weight': ...}}``
    (320 keys, torchvision ResNet-50 names); the names below the prefix are ours.
    """
    return _strip_classifier_prefix(state_dict)


def _build_matting():
    from mattecli.models.sim_net import SIMNet

    return SIMNet()


def _build_classifier():
    from mattecli.models.sim_net import SIMClassifier

    return SIMClassifier()


for _variant in VARIANTS:
    register_architecture(_variant, build=_build_matting, remap=remap_official, detect=is_official)
register_architecture(
    CLASSIFIER_VARIANT, build=_build_classifier, remap=remap_official_classifier, detect=is_official_classifier
)


# ----------------------------------------------------------------------------- inference
STRATEGIES = ("auto", "whole", "tiled")


@dataclass
class SimMatter:
    """A loaded SIM matting network plus its patch analyzer; ``predict`` needs a trimap.

    Strategies (``strategy``):

    ``whole``
        The official test pipeline on the whole padded image.
    ``tiled``
        The global stages run once on the image reduced to at most
        :data:`mattecli.engine.CONTEXT_PIXELS` (the image itself when it is that small):
        the patch analysis (its 320 / 800 px patches on the reduced image, scores min-max
        normalised there) and a matting pass that records the ASPP image pooling. The
        matting network then runs on full-resolution tiles of the padded image whose box
        holds unknown pixels, replaying that pooling; each tile's inputs are built on demand
        (reflect-padded crops of the image, crops of the trimap's global distance maps, and
        of the bilinearly upsampled scores, masked to the tile's unknown pixels), so no
        full-size encoding or padded copy of a large image exists. A reduced context pass
        takes the unpadded image (the 1..8 px padding is below its resolution). With a
        context pass at full size, tiles differ from ``whole`` only by the network's
        receptive field beyond the halo.
    ``auto`` (default)
        ``whole`` when its measured memory fits the budget, else ``tiled``; a ``whole`` pass
        that runs out of memory falls back to ``tiled``.
    """

    net: object
    analyzer: object  # mattecli.semantic.PatchAnalyzer
    device: object
    precision: str = "fp32"
    weights_path: object = None  # the matting weights file (bench reports its sha256)
    strategy: str = "auto"
    tiles: object = None  # engine.TilePolicy

    def __post_init__(self):
        from mattecli import engine, tiling

        if self.tiles is None:
            self.tiles = engine.TilePolicy(stride=PAD_STRIDE, halo=64)
        self.context = tiling.GlobalContext(self.net)

    def _forward(self, args, *, replay: bool = False):
        import contextlib

        import torch

        from mattecli import engine

        args = [t.contiguous(memory_format=torch.channels_last) for t in args]
        ctx = self.context.replay() if replay else contextlib.nullcontext()
        with torch.inference_mode(), engine.autocast(self.device, self.precision), ctx:
            return self.net(*args).float()

    def _probe_input(self, x):
        """The network's five inputs from one probe tensor ``(N, 34, H, W)`` (memory measurement)."""
        return self._forward(list(x.split(_SPLIT, dim=1)))

    def _whole(self, image, trimap, semantic: bool = True):
        from mattecli.semantic import SemanticTrimap

        h, w = trimap.shape
        enc = encode_inputs(image, trimap, self.device)
        smap = self.analyzer.score_tensor(enc["image_n"], enc["trimap"])
        alpha = self._forward([enc["image"], enc["two_chan"], enc["image_n"], enc["clicks"], smap])
        if not semantic:
            return alpha, None
        scores = smap[0, :, :h, :w].cpu().numpy().astype(np.float32)
        return alpha, SemanticTrimap(scores, np.asarray(trimap, np.uint8).copy())

    def _tiled(self, image, trimap, semantic: bool = True):
        import torch

        from mattecli import engine, tiling
        from mattecli.semantic import UNKNOWN, SemanticTrimap

        # The padded image is never built at full size (a 33 MP float32 copy is 400 MB): tiles take
        # reflect-padded crops of the input. The trimap (1 byte per pixel) is padded once, because
        # its distance maps are global.
        image = np.asarray(image, np.float32)
        h, w = trimap.shape
        ph, pw = pad_amounts(h, w)
        rows, cols = padded_index(h, ph), padded_index(w, pw)
        tri = pad_reflect(np.asarray(trimap, np.uint8), ph, pw)
        size = tri.shape

        # global stage: patch analysis + pooled context on the (reduced) whole image; returns the raw
        # scores and the full-size geometry they map onto (padded or not)
        def context_pass(small):
            if small == size:  # exact: the padded image itself (small, so the copy is cheap)
                img_s, tri_s, ref = padded_crop(image, rows, cols, 0, size[0], 0, size[1]), tri, size
            else:  # the unpadded image reduced straight to the stride-aligned context size
                img_s = cv2.resize(image, small[::-1], interpolation=cv2.INTER_AREA)
                tri_s = cv2.resize(np.asarray(trimap, np.uint8), small[::-1], interpolation=cv2.INTER_NEAREST)
                ref = (h, w)
            enc = encode_padded(img_s, tri_s, self.device)
            raw = self.analyzer.unmasked_scores(enc["image_n"], enc["trimap"])
            smap_s = raw * (enc["trimap"] == UNKNOWN).to(raw.dtype)
            with self.context.record():
                self._forward([enc["image"], enc["two_chan"], enc["image_n"], enc["clicks"], smap_s])
            return raw, ref

        small = engine.context_size(*size, PAD_STRIDE)
        raw, ref = engine.run_shrinking(context_pass, small, PAD_STRIDE, "SIM context pass")
        dists = distance_maps(tri)
        unknown = tri == UNKNOWN

        def crop(y0, y1, x0, x1):
            part = encode_padded(
                padded_crop(image, rows, cols, y0, y1, x0, x1),
                tri[y0:y1, x0:x1],
                self.device,
                dists=[None if d is None else d[y0:y1, x0:x1] for d in dists],
            )
            mask = part["trimap"] == UNKNOWN
            scores = tiling.resize_crop(raw, ref, (y0, y1, x0, x1)) * mask.to(torch.float32)
            return torch.cat([part["image"], part["two_chan"], part["image_n"], part["clicks"], scores], dim=1)

        self.tiles.probe(self.net, self._probe_input, sum(_SPLIT), self.device)
        alpha = self.tiles.run(
            lambda b: self._forward(list(b.split(_SPLIT, dim=1)), replay=True),
            crop,
            size=size,
            skip=lambda y0, y1, x0, x1: not unknown[y0:y1, x0:x1].any(),
        )
        dists = unknown = None  # free the full-size maps before the caller's output is made
        scores = None
        if semantic and max(size) <= 4096:
            full = tiling.resize_crop(raw, ref, (0, h, 0, w))[0]
            scores = (full * torch.from_numpy(np.asarray(trimap) == UNKNOWN).to(full.device)).cpu().numpy()
        return alpha, SemanticTrimap(scores, np.asarray(trimap, np.uint8).copy()) if semantic else None

    def predict_with_semantic(self, image: np.ndarray, trimap: np.ndarray, *, semantic: bool = True):
        """Alpha (float32 ``HxW``) and the :class:`~mattecli.semantic.SemanticTrimap` it was computed with.

        After a tiled run of an image over 4096 px on a side the semantic trimap holds no scores
        (``scores`` is None): they were never materialised at full size. ``semantic=False``
        skips the semantic trimap (None) and its full-size copy of the 20 score maps.
        """
        import warnings

        from mattecli import engine
        from mattecli.errors import TrimapError

        if trimap is None:
            raise TrimapError("method sim needs a trimap", hint="pass --trimap FILE_OR_FOLDER")
        h, w = trimap.shape
        if image.shape[:2] != (h, w):
            raise TrimapError(f"trimap is {w}x{h} but the image is {image.shape[1]}x{image.shape[0]}")
        ph, pw = pad_amounts(h, w)
        strategy = engine.choose_strategy(
            self.strategy, self.tiles, (h + ph) * (w + pw), self.net, self._probe_input, sum(_SPLIT)
        )
        if strategy == "whole":
            try:
                alpha, st = self._whole(image, trimap, semantic)
            except Exception as err:
                if not engine.is_oom(err):
                    raise
                del err
                warnings.warn("SIM whole-image pass out of memory: computing it on tiles", RuntimeWarning, stacklevel=2)
                alpha, st = self._tiled(image, trimap, semantic)
        else:
            alpha, st = self._tiled(image, trimap, semantic)
        # clamp, then the known pixels exactly 0 / 1; one host-side HxW float32 array, no full-size temporaries
        out = np.clip(alpha[0, 0, :h, :w].float().cpu().numpy(), 0.0, 1.0)
        del alpha
        tri = np.asarray(trimap)
        out[tri == 0] = 0.0
        out[tri == 255] = 1.0
        return out, st

    def predict(self, image: np.ndarray, trimap: np.ndarray | None) -> np.ndarray:
        return self.predict_with_semantic(image, trimap, semantic=False)[0]


#: channel split of a tile tensor: image, two-channel trimap, normalised image, clicks, scores
_SPLIT = (3, 2, 3, 6, 20)


def _create(config: MethodConfig) -> SimMatter:
    from mattecli import engine, models, semantic
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model, local_path

    variant = config.variant or DEFAULT_VARIANT
    if variant not in VARIANTS:
        raise BadOptionError(f"SIM variant must be one of {', '.join(VARIANTS)}, not {variant!r}")
    strategy = config.options.get("strategy") or "auto"
    if strategy not in STRATEGIES:
        raise BadOptionError(f"SIM strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    batch_size = int(config.options.get("batch_size") or semantic.DEFAULT_BATCH_SIZE)
    if batch_size < 1:
        raise BadOptionError(f"batch size must be >= 1, not {batch_size}")
    sizes = semantic.parse_patch_sizes(config.options.get("patch_sizes") or semantic.PATCH_SIZES)
    scales = config.options.get("scales")
    if scales:
        sizes = scaled_patch_sizes(scales)
    tiles = engine.tile_policy(models.get("sim"), config.options, device)
    net = load_model(variant, device, config.weights)
    net = net.fold_weight_standardization().to(memory_format=torch_channels_last())
    if config.options.get("compile"):
        import torch

        net = torch.compile(net)
    analyzer = semantic.load_analyzer(
        device=str(device),
        precision=config.precision,
        weights=config.options.get("classifier_weights"),
        patch_sizes=sizes,
        batch_size=batch_size,
    )
    return SimMatter(
        net,
        analyzer,
        device,
        config.precision,
        weights_path=config.weights or local_path(variant),
        strategy=strategy,
        tiles=tiles,
    )


def _weights_for(config: MethodConfig) -> tuple[str, ...]:
    """The matting network's variant (unless ``--weights`` replaces it) and the patch classifier
    (unless ``options["classifier_weights"]`` replaces it)."""
    main = () if config.weights is not None else (config.variant or DEFAULT_VARIANT,)
    return main + (() if config.options.get("classifier_weights") else (CLASSIFIER_VARIANT,))


def torch_channels_last():
    import torch

    return torch.channels_last


def scaled_patch_sizes(scales) -> tuple[int, ...]:
    """``--scales`` for SIM: the patch-analysis scales, as multiples of the 320 px base patch.

    The official multi-scale patches 320 and 800 are scales ``1,2.5``; ``1,2.5,5`` adds 1600 px
    patches. Each scale is one pass of the classifier; their CAMs are averaged per pixel.

    Raises:
        BadOptionError: not a list of positive numbers.
    """
    from mattecli.errors import BadOptionError

    parts = [p for p in scales.split(",") if p.strip()] if isinstance(scales, str) else list(scales)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if not values or any(v <= 0 for v in values) or any(round(v * CLICK_LENGTH) < 2 for v in values):
        raise BadOptionError(f"SIM --scales takes patch scales like 1,2.5 (x {CLICK_LENGTH} px), not {scales!r}")
    return tuple(round(v * CLICK_LENGTH) for v in values)


register(
    MethodSpec(
        name="sim",
        summary="SIM: semantic image matting (trimap + patch-classified semantic trimap, ResNet-50)",
        paper="Sun, Tang, Tai: Semantic Image Matting, CVPR 2021",
        needs_trimap=True,
        create=_create,
        weights=(DEFAULT_VARIANT, "sim-simd", CLASSIFIER_VARIANT),
        companions=(CLASSIFIER_VARIANT,),
        weights_for=_weights_for,
        stride=PAD_STRIDE,
        margin=64,
        scales=(1.0, 2.5),
    )
)
