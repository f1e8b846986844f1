"""SIM's official input encodings (``scripts/main.py``, ``data/util.py`` at nowsyn/SIM dc5ed5a).

Per image, no resizing: the image and trimap padded at the bottom/right by
``(h // 8 + 1) * 8 - h`` (always 1..8 px) with OpenCV ``BORDER_REFLECT``; RGB in [0, 1],
ImageNet-normalised RGB, the two-channel trimap ``[trimap == 0, trimap == 255]`` and six Gaussians
of the exact Euclidean distance to the background and to the foreground,
``exp(-d^2 / (2 (s L)^2))`` for ``s`` = 0.02, 0.08, 0.16 and ``L`` = 320. Tiles take crops of the
whole padded image's distance maps (:func:`padded_crop`, :func:`distance_maps`), so no full-size
padded copy of a large image is needed.
"""

from __future__ import annotations

import numpy as np

from mattecli.methods.base import IMAGENET

__all__ = [
    "PAD_STRIDE",
    "CLICK_LENGTH",
    "CLICK_SIGMAS",
    "pad_amounts",
    "pad_reflect",
    "two_channel_trimap",
    "distance_maps",
    "padded_index",
    "padded_crop",
    "gaussian_encoding",
    "distance_encoding",
    "encode_padded",
    "encode_inputs",
]

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
    """Exact Euclidean distance of every pixel to the background and to the foreground.

    float32 ``HxW`` each, ``None`` for an empty region; :func:`gaussian_encoding` turns them into
    the network's six channels (tiles take crops of these maps, so the distances stay global). The
    official ``trimap_to_clks`` calls ``cv2.distanceTransform(..., cv2.DIST_L2, 0)``, the precise
    transform; :func:`mattecli.trimap.distance_to_zero` gives the same distances exactly, so the
    same trimap always gives the same bytes (OpenCV's float32 result varies by a few ulps).
    """
    from mattecli.trimap import distance_to_zero

    out: list[np.ndarray | None] = []
    for value in (0, 255):  # background, foreground (the channels of two_channel_trimap)
        region = trimap != value  # zero on the region: distance to it
        out.append(distance_to_zero(region) if not region.all() else None)
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
    from mattecli.runtime.tensors import image_to_tensor

    out = {
        "image": _nchw(img, device),
        "image_n": image_to_tensor(img, device, IMAGENET.mean, IMAGENET.std),
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
