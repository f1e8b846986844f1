"""Small pictures of one benchmark sample for ``bench --html``: image, ground truth, prediction, error map.

Each is reduced (area averaging) so that its longer side is at most ``side`` pixels and encoded
as a ``data:`` URI (JPEG for the photo and the error map, PNG for the mattes), so a report that
carries them (``row["thumbs"]``) is self-contained: ``bench --merge`` renders shards' reports
without the dataset at hand.

The error map is ``|prediction - ground truth|``, square-root scaled (small errors stay visible)
through a black-red-yellow-white ramp; pixels outside the scored region (datasets scored over the
trimap's unknown region) are dimmed.
"""

from __future__ import annotations

import base64

import cv2
import numpy as np

from mattecli.benchmark.metric_inputs import to_alpha

__all__ = ["THUMB_SIDE", "reduce", "data_uri", "error_map", "sample_thumbnails"]

#: the longer side of a thumbnail, in pixels
THUMB_SIDE = 160
#: how bright an error outside the scored region stays
DIM = 0.3


def reduce(values: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """``values`` (HxW or HxWxC) with its longer side at most ``side`` (area averaging; smaller ones unchanged)."""
    h, w = values.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return values
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(values), size, interpolation=cv2.INTER_AREA)


def data_uri(picture: np.ndarray, *, jpeg: bool = False) -> str:
    """uint8 HxW (grey) or HxWx3 (RGB) -> ``data:image/png;base64,...`` (or JPEG)."""
    from mattecli import io

    ext = ".jpg" if jpeg else ".png"
    data = io.encode_png(np.ascontiguousarray(picture), ext=ext)
    return f"data:image/{'jpeg' if jpeg else 'png'};base64," + base64.b64encode(data).decode("ascii")


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(values, np.float32) * 255.0), 0, 255).astype(np.uint8)


def _ramp(t: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB in [0, 1]: black, red, yellow, white."""
    t = np.clip(t, 0.0, 1.0)[..., None]
    return np.clip(np.concatenate([3 * t, 3 * t - 1, 3 * t - 2], axis=-1), 0.0, 1.0)


def error_map(pred: np.ndarray, gt: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """float RGB ``HxWx3`` in [0, 1] of ``|pred - gt|`` (both float in [0, 1]); dimmed outside ``region``."""
    err = np.abs(np.asarray(pred, np.float32) - np.asarray(gt, np.float32))
    rgb = _ramp(np.sqrt(err))
    if region is not None:
        rgb = np.where(region[..., None], rgb, rgb * DIM)
    return rgb.astype(np.float32)


def sample_thumbnails(
    image: np.ndarray,
    gt: np.ndarray,
    pred: np.ndarray,
    region: np.ndarray | None = None,
    *,
    side: int = THUMB_SIDE,
) -> dict[str, str]:
    """``{"image", "gt", "prediction", "error"}`` data URIs of one sample.

    Args:
        image: float ``HxWx3`` RGB in [0, 1].
        gt, pred: the ground-truth and predicted alphas (any dtype
            :func:`mattecli.benchmark.metric_inputs.to_alpha` reads).
        region: bool ``HxW``, the pixels the metrics score (None: all).
    """
    g, p = to_alpha(gt, name="ground truth"), to_alpha(pred, name="prediction")
    return {
        "image": data_uri(reduce(_u8(image), side), jpeg=True),
        "gt": data_uri(_u8(reduce(g.astype(np.float32), side))),
        "prediction": data_uri(_u8(reduce(p.astype(np.float32), side))),
        "error": data_uri(_u8(reduce(error_map(p, g, region), side)), jpeg=True),
    }
