"""Semantic trimaps: SIM's patch classifier over the unknown region, stitched into 20 score maps.

A *semantic trimap* (Sun, Tang, Tai, "Semantic Image Matting", CVPR 2021) is an ordinary trimap
plus one score map per matting class (:data:`CLASS_NAMES`, the official alphabetical order). The
maps are built exactly as the official test code does (``scripts/main.py``
``extract_semantic_trimap_whole`` at nowsyn/SIM dc5ed5a):

* two passes with square patches of side 320 and 800 (:data:`PATCH_SIZES`) at the image's native
  resolution (no resizing, no flips); per axis the patch starts are ``0, step/2, step, ...`` below
  ``size - step``, plus one patch flush with the bottom/right border;
* when the image is *smaller* than the patch, the single start ``size - step`` is negative and the
  official code slices with Python's negative-index rules, so the patch covers only rows
  ``[max(0, 2*size - step), size)``; :func:`patch_span` reproduces that;
* a patch is evaluated only if it contains unknown pixels (trimap == 128); the classifier sees
  ``[ImageNet-normalised RGB, trimap / 255]`` and its class-activation map (fc weight x layer-4
  features, no bias, no ReLU) is upsampled bilinearly (``align_corners=False``) to the patch size;
* overlapping CAMs are averaged (sum / max(count, 1)); then ONE global min-max normalisation over
  all 20 channels and all pixels (uncovered pixels count as 0), and everything outside the unknown
  region is set to 0. Values are in [0, 1]; classes are not normalised separately.

The official test pipeline computes the semantic trimap on the image padded for the matting
network (bottom/right, ``BORDER_REFLECT``, to ``(h // 8 + 1) * 8``); :meth:`PatchAnalyzer.analyze`
does the same and crops back, so the maps written by ``mattecli semantic-trimap`` are exactly the
ones ``matte --method sim`` feeds to the network. Deviation: when the CAMs are constant (e.g. no
unknown pixel at all) the official division by ``max - min = 0`` gives NaN; here the maps are 0.

Patches of the same size are classified in batches of ``batch_size`` (eval-mode batch norm makes
batching exact).

Outputs of ``mattecli semantic-trimap`` (:mod:`mattecli.pipelines.semantic_trimap`) for an
input ``<stem>`` (``OUT`` a folder):

* ``<stem>_semantic.safetensors``: ``scores`` float32 ``20xHxW`` and ``trimap`` uint8 ``HxW``;
  metadata ``classes`` (JSON list), the patch sizes, the source file and the classifier variant
  (:func:`read_semantic_trimap` reads it back);
* ``<stem>_classes.png``: uint8 class index (argmax of the scores; ties go to the lower index)
  inside the unknown region, :data:`KNOWN_INDEX` (255) on known pixels;
* ``<stem>_preview.png`` (``--preview``): the image dimmed, the unknown region coloured by class
  (:data:`PALETTE`), and a legend of the classes present with their share of the unknown region.

With exactly one input, ``OUT`` may name a file instead: ``name.png`` is the class-index PNG and the
others are written beside it as ``name_semantic.safetensors`` / ``name_preview.png``; or
``name.safetensors`` is the score file, with ``name_classes.png`` / ``name_preview.png`` beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mattecli.errors import BadOptionError, TrimapError

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "PATCH_SIZES",
    "DEFAULT_BATCH_SIZE",
    "CPU_BATCH_SIZE",
    "default_batch_size",
    "KNOWN_INDEX",
    "PALETTE",
    "CLASSIFIER_VARIANT",
    "SemanticTrimap",
    "PatchAnalyzer",
    "patch_starts",
    "patch_span",
    "patch_boxes",
    "stitch_cams",
    "minmax_scores",
    "normalize_scores",
    "load_analyzer",
    "place_classifier",
    "class_index",
    "class_shares",
    "render_preview",
    "encode_scores",
    "read_semantic_trimap",
    "parse_patch_sizes",
]

#: Matting classes in the official order (fc outputs and score-map channels).
CLASS_NAMES: tuple[str, ...] = (
    "defocus",
    "fire",
    "fur",
    "glass_ice",
    "hair_easy",
    "hair_hard",
    "insect",
    "motion",
    "net",
    "plant_flower",
    "plant_leaf",
    "plant_tree",
    "plastic_bag",
    "sharp",
    "smoke_cloud",
    "spider_web",
    "texture_holed",
    "texture_smooth",
    "water_drop",
    "water_spray",
)
NUM_CLASSES = len(CLASS_NAMES)
#: Official patch sides, one pass each, at native resolution.
PATCH_SIZES: tuple[int, ...] = (320, 800)
#: patches per forward pass on a GPU (``--batch-size`` unset)
DEFAULT_BATCH_SIZE = 4
#: and on the CPU, where one patch at a time is the fastest (one thread: 0.257 s per 320 px patch
#: against 0.276 s in batches of 4, 1.67 s per 800 px patch against 1.97 s in pairs; the larger
#: batches' feature maps no longer fit in the caches)
CPU_BATCH_SIZE = 1
#: Value of known (non-unknown) pixels in the class-index PNG.
KNOWN_INDEX = 255
CLASSIFIER_VARIANT = "sim-classifier"
UNKNOWN = 128

#: Preview colour (RGB) per class, same order as :data:`CLASS_NAMES`.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 255),  # defocus: periwinkle
    (255, 69, 0),  # fire: orange red
    (205, 133, 63),  # fur: brown
    (0, 255, 255),  # glass_ice: cyan
    (255, 215, 0),  # hair_easy: gold
    (255, 140, 0),  # hair_hard: dark orange
    (128, 0, 0),  # insect: maroon
    (255, 0, 255),  # motion: magenta
    (160, 160, 160),  # net: grey
    (255, 105, 180),  # plant_flower: pink
    (50, 205, 50),  # plant_leaf: lime
    (0, 100, 0),  # plant_tree: dark green
    (240, 230, 140),  # plastic_bag: khaki
    (255, 255, 255),  # sharp: white
    (176, 196, 222),  # smoke_cloud: steel blue
    (148, 0, 211),  # spider_web: violet
    (0, 128, 128),  # texture_holed: teal
    (127, 255, 212),  # texture_smooth: aquamarine
    (30, 144, 255),  # water_drop: dodger blue
    (0, 0, 205),  # water_spray: medium blue
)


def default_batch_size(device) -> int:
    """Classifier patches per pass when ``--batch-size`` is not given: :data:`CPU_BATCH_SIZE` on the
    CPU, :data:`DEFAULT_BATCH_SIZE` on a GPU (batching is exact either way: eval-mode batch norm)."""
    return CPU_BATCH_SIZE if getattr(device, "type", str(device)) == "cpu" else DEFAULT_BATCH_SIZE


# ----------------------------------------------------------------------------- patch grid
def patch_starts(size: int, step: int) -> list[int]:
    """Official patch starts along one axis: ``range(0, size - step, step // 2) + [size - step]``.

    The last start may be negative when ``size < step`` (see :func:`patch_span`).
    """
    return list(range(0, size - step, step // 2)) + [size - step]


def patch_span(start: int, step: int, size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` that Python's ``a[start:start + step]`` selects on an axis of length ``size``.

    For ``start >= 0`` that is ``[start, min(start + step, size))``; for the negative start of an
    axis shorter than the patch, both bounds are taken modulo the length the way Python does,
    e.g. ``size=312, step=320`` -> ``[304, 312)``, ``size=100, step=320`` -> ``[0, 100)``.
    """
    lo, hi, _ = slice(start, start + step).indices(size)
    return lo, max(lo, hi)


def patch_boxes(h: int, w: int, step: int) -> list[tuple[int, int, int, int]]:
    """Official patches ``(y0, y1, x0, x1)`` of one pass, rows outer, columns inner (duplicates kept)."""
    ys = [patch_span(s, step, h) for s in patch_starts(h, step)]
    xs = [patch_span(s, step, w) for s in patch_starts(w, step)]
    return [(y0, y1, x0, x1) for y0, y1 in ys for x0, x1 in xs]


# ----------------------------------------------------------------------------- stitching
def stitch_cams(
    cam_fn: Callable,
    image_n,
    trimap,
    *,
    patch_sizes: Sequence[int] = PATCH_SIZES,
    batch_size: int = DEFAULT_BATCH_SIZE,
):
    """Average the class-activation maps of all official patches that touch the unknown region.

    Args:
        cam_fn: ``(B,4,ph,pw)`` classifier input -> ``(B,C,h,w)`` CAMs (any ``h, w``).
        image_n: ``(1,3,H,W)`` ImageNet-normalised RGB tensor.
        trimap: ``(1,1,H,W)`` float tensor with values 0..255 (unknown = exactly 128).
        patch_sizes: one pass per patch side.
        batch_size: patches of equal size per ``cam_fn`` call.

    Returns:
        ``(cam, count)``: ``(1,C,H,W)`` float32 average CAM (0 where no patch was evaluated) and
        ``(1,1,H,W)`` the number of patches that covered each pixel.
    """
    import torch
    import torch.nn.functional as F

    _, _, h, w = image_n.shape
    unknown = trimap == UNKNOWN
    groups: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for step in patch_sizes:
        for box in patch_boxes(h, w, int(step)):
            y0, y1, x0, x1 = box
            if y1 > y0 and x1 > x0 and bool(unknown[:, :, y0:y1, x0:x1].any()):
                groups.setdefault((y1 - y0, x1 - x0), []).append(box)
    count = torch.zeros((1, 1, h, w), dtype=torch.float32, device=image_n.device)
    cam_sum = None
    for (ph, pw), boxes in groups.items():
        for i in range(0, len(boxes), max(1, int(batch_size))):
            chunk = boxes[i : i + max(1, int(batch_size))]
            x = torch.cat(
                [
                    torch.cat([image_n[:, :, y0:y1, x0:x1], trimap[:, :, y0:y1, x0:x1] / 255.0], dim=1)
                    for y0, y1, x0, x1 in chunk
                ]
            )
            cams = F.interpolate(cam_fn(x).float(), size=(ph, pw), mode="bilinear", align_corners=False)
            if cam_sum is None:
                cam_sum = torch.zeros((1, cams.shape[1], h, w), dtype=torch.float32, device=image_n.device)
            for (y0, y1, x0, x1), c in zip(chunk, cams, strict=True):
                cam_sum[0, :, y0:y1, x0:x1] += c
                count[0, :, y0:y1, x0:x1] += 1
    if cam_sum is None:  # no unknown pixel anywhere
        cam_sum = torch.zeros((1, NUM_CLASSES, h, w), dtype=torch.float32, device=image_n.device)
    return cam_sum / torch.clamp_min(count, 1.0), count


def minmax_scores(cam):
    """The official global min-max over all classes and pixels of ``cam`` ``(1,C,H,W)``, before masking.

    Constant CAMs (officially a division by zero giving NaN) give all-zero maps.
    """
    lo, hi = cam.min(), cam.max()
    span = hi - lo
    if not bool(span > 0):
        return cam.new_zeros(cam.shape)
    return (cam - lo) / span


def normalize_scores(cam, trimap):
    """Official normalisation: :func:`minmax_scores`, then 0 outside the unknown region.

    ``cam`` is ``(1,C,H,W)``, ``trimap`` ``(1,1,H,W)`` in 0..255.
    """
    return minmax_scores(cam) * (trimap == UNKNOWN).to(cam.dtype)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SemanticTrimap:
    """A trimap with its 20 class score maps.

    Attributes:
        scores: float32 ``20xHxW`` in [0, 1], zero outside the unknown region.
        trimap: uint8 ``HxW`` in {0, 128, 255}.
    """

    scores: np.ndarray
    trimap: np.ndarray

    @property
    def unknown(self) -> np.ndarray:
        return self.trimap == UNKNOWN


def class_index(st: SemanticTrimap) -> np.ndarray:
    """uint8 ``HxW``: argmax class (0..19) in the unknown region, :data:`KNOWN_INDEX` elsewhere."""
    out = np.full(st.trimap.shape, KNOWN_INDEX, np.uint8)
    if st.unknown.any():
        out[st.unknown] = np.argmax(st.scores[:, st.unknown], axis=0).astype(np.uint8)
    return out


def class_shares(st: SemanticTrimap) -> dict[str, float]:
    """Share of the unknown region won by each class present, largest first (rounded to 4 digits)."""
    idx = class_index(st)
    unknown = int(st.unknown.sum())
    if unknown == 0:
        return {}
    counts = np.bincount(idx[st.unknown], minlength=NUM_CLASSES)
    order = np.argsort(-counts, kind="stable")
    return {CLASS_NAMES[i]: round(float(counts[i]) / unknown, 4) for i in order if counts[i] > 0}


def encode_scores(st: SemanticTrimap, metadata: dict[str, str] | None = None) -> bytes:
    """The ``.safetensors`` bytes: ``scores`` (float32 20xHxW), ``trimap`` (uint8 HxW), class names in
    metadata; the same maps always give the same bytes (a canonical header)."""
    from safetensors.numpy import save

    from mattecli.weights.imports import canonical_safetensors

    meta = {
        "format": "mattecli.semantic_trimap",
        "version": "1",
        "classes": json.dumps(list(CLASS_NAMES)),
        "class_index_known_value": str(KNOWN_INDEX),
        "normalization": "global min-max over all classes and pixels; 0 outside the unknown region",
    }
    meta.update(metadata or {})
    tensors = {
        "scores": np.ascontiguousarray(st.scores, dtype=np.float32),
        "trimap": np.ascontiguousarray(st.trimap, dtype=np.uint8),
    }
    return canonical_safetensors(save(tensors, metadata=meta))


def read_semantic_trimap(path: str | os.PathLike) -> tuple[SemanticTrimap, dict[str, str]]:
    """Read a file written by :func:`encode_scores`: ``(semantic trimap, metadata)``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        meta = dict(fh.metadata() or {})
        st = SemanticTrimap(fh.get_tensor("scores"), fh.get_tensor("trimap"))
    return st, meta


def _font_scale(h: int) -> float:
    return float(min(1.6, max(0.45, h / 700.0)))


def render_preview(image: np.ndarray, st: SemanticTrimap) -> np.ndarray:
    """A colour-coded picture of a semantic trimap: uint8 RGB ``H x (W + legend) x 3``.

    The image is dimmed (background darker than foreground), each unknown pixel takes its class
    colour from :data:`PALETTE` over a faint copy of the image, and a legend panel on the right
    lists the classes present with their colours and share of the unknown region.
    """
    h, w = st.trimap.shape
    img = np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0
    out = img * 0.3
    out[st.trimap == 255] = img[st.trimap == 255] * 0.6
    idx = class_index(st)
    palette = np.asarray(PALETTE + ((0, 0, 0),) * (256 - NUM_CLASSES), np.float32)
    unknown = st.unknown
    out[unknown] = img[unknown] * 0.3 + palette[idx[unknown]] * 0.7
    picture = np.clip(np.round(out), 0, 255).astype(np.uint8)

    shares = class_shares(st)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, _font_scale(h)
    thick = 1 if scale < 0.9 else 2
    (_, th), base = cv2.getTextSize("Ag", font, scale, thick)
    line = int(th + base + 8 * scale + 4)
    pad = int(10 * scale + 4)
    swatch = th + base
    title = "classes (share of unknown)" if shares else "no unknown region"
    rows = [(None, title)] + [(CLASS_NAMES.index(n), f"{n} {100 * s:.1f}%") for n, s in shares.items()]
    text_w = max(cv2.getTextSize(t, font, scale, thick)[0][0] + (0 if i is None else swatch + pad) for i, t in rows)
    panel_w = text_w + 2 * pad
    canvas_h = max(h, pad * 2 + line * len(rows))
    canvas = np.full((canvas_h, w + panel_w, 3), 32, np.uint8)
    canvas[:h, :w] = picture
    y = pad
    for i, text in rows:
        x = w + pad
        if i is not None:
            cv2.rectangle(canvas, (x, y), (x + swatch, y + swatch), PALETTE[i], thickness=-1)
            cv2.rectangle(canvas, (x, y), (x + swatch, y + swatch), (200, 200, 200), thickness=1)
            x += swatch + pad
        cv2.putText(canvas, text, (x, y + th), font, scale, (235, 235, 235), thick, cv2.LINE_AA)
        y += line
    return canvas


# ----------------------------------------------------------------------------- running the classifier
@dataclass
class PatchAnalyzer:
    """A loaded SIM patch classifier with the official patch analysis.

    Attributes:
        net: a :class:`~mattecli.methods.sim.net.SIMClassifier` (eval mode) on ``device``.
        device: ``torch.device``.
        precision: ``fp32``, ``fp16`` or ``bf16`` (autocast; CAMs are accumulated in float32).
        patch_sizes: patch sides, one pass each (official: 320, 800).
        batch_size: patches per forward pass.
    """

    net: object
    device: object
    precision: str = "fp32"
    patch_sizes: tuple[int, ...] = PATCH_SIZES
    batch_size: int = DEFAULT_BATCH_SIZE

    def _cam(self, x):
        import torch

        from mattecli.runtime.precision import autocast

        x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.net.cam(x).float()

    def score_tensor(self, image_n, trimap):
        """Official ``extract_semantic_trimap_whole`` on tensors already at the working size.

        ``image_n`` ``(1,3,H,W)`` normalised RGB, ``trimap`` ``(1,1,H,W)`` float 0..255, both on
        ``device``; returns ``(1,20,H,W)`` float32 score maps.
        """
        import torch

        return self.unmasked_scores(image_n, trimap) * (trimap == UNKNOWN).to(torch.float32)

    def unmasked_scores(self, image_n, trimap):
        """:meth:`score_tensor` before its masking to the unknown region (for upsampling, then masking)."""
        import torch

        with torch.inference_mode():
            cam, _ = stitch_cams(self._cam, image_n, trimap, patch_sizes=self.patch_sizes, batch_size=self.batch_size)
            return minmax_scores(cam)

    def analyze(self, image: np.ndarray, trimap: np.ndarray) -> SemanticTrimap:
        """The semantic trimap of a float32 ``HxWx3`` RGB image in [0, 1] and its uint8 trimap.

        Computed on the image padded as SIM's test code pads it, then cropped back.
        """
        from mattecli.methods.sim.encode import encode_inputs

        h, w = trimap.shape
        if image.shape[:2] != (h, w):
            raise TrimapError(f"trimap is {w}x{h} but the image is {image.shape[1]}x{image.shape[0]}")
        enc = encode_inputs(image, trimap, self.device, clicks=False)
        scores = self.score_tensor(enc["image_n"], enc["trimap"])
        return SemanticTrimap(scores[0, :, :h, :w].cpu().numpy().astype(np.float32), trimap.copy())


def parse_patch_sizes(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"320,800"`` (or a sequence) -> ``(320, 800)``; None -> the official sizes.

    Raises:
        BadOptionError: not a comma-separated list of positive integers.
    """
    if text is None:
        return PATCH_SIZES
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    try:
        sizes = tuple(int(p) for p in parts if p != "")
    except (TypeError, ValueError):
        raise BadOptionError(f"patch sizes must be positive integers like 320,800, not {text!r}") from None
    if not sizes or any(s < 2 for s in sizes):
        raise BadOptionError(f"patch sizes must be integers >= 2 like 320,800, not {text!r}")
    return sizes


def place_classifier(net):
    """The classifier (loaded, batch norms folded) as it runs: channels-last, its large convolutions
    on Winograd's path on the CPU (the last step of loading it, for ``matte`` and ``semantic-trimap``)."""
    import torch

    from mattecli.runtime.winograd import use_winograd

    net = net.to(memory_format=torch.channels_last)
    use_winograd(net)
    return net


def load_analyzer(
    classifier,
    *,
    device: str = "auto",
    precision: str = "fp32",
    weights: Path | None = None,
    patch_sizes: Sequence[int] | str | None = None,
    batch_size: int | None = None,
    download: bool = True,
) -> PatchAnalyzer:
    """Build the patch classifier (``classifier``: its :class:`~mattecli.methods.base.Variant`, the
    spec's companion ``sim-classifier``; weights from the cache or the ``weights`` file) on ``device``,
    with its batch norms folded and its large convolutions on Winograd's path on the CPU, as
    ``matte --method sim`` loads it (:func:`mattecli.methods.loading.load_network`).
    ``batch_size`` None: :func:`default_batch_size`.

    Raises:
        BadOptionError, DeviceError, WeightsError (e.g. weights not imported: the message names
        ``mattecli weights import sim-classifier ...``).
    """

    from mattecli.runtime.device import select_device
    from mattecli.runtime.fold import fold_batchnorm
    from mattecli.runtime.precision import check_precision
    from mattecli.weights import load_model

    sizes = parse_patch_sizes(patch_sizes)
    if batch_size is not None and int(batch_size) < 1:
        raise BadOptionError(f"--batch-size must be >= 1, not {batch_size}")
    dev = select_device(device)
    check_precision(dev, precision)  # reject a bad precision before loading weights
    net = load_model(classifier.name, dev, weights, download=download, architecture=classifier.architecture)
    fold_batchnorm(net.eval())
    return PatchAnalyzer(place_classifier(net), dev, precision, sizes, int(batch_size or default_batch_size(dev)))
