"""Alpha mattes and trimaps as the metrics read them: exact conversion, trimap checks, the scored region.

:func:`to_alpha` turns an ``HxW`` (or ``HxWxC``: channel 0) matte into float64 in [0, 1] exactly:
``uint8`` / ``uint16`` are divided by 255 / 65535 in float64 (what both evaluation codes do with the
8-bit PNGs; the AIM code's ``core/test.py`` reads ``np.array(Image.open(path)) / 255.``), ``bool`` is
0 / 1, floats in [0, 1] are kept. Trimaps are uint8 ``HxW`` with 0 / 128 / 255; only ``== 128`` is
the DIM unknown region (:func:`unknown_mask`); :func:`normalize_trimap` maps any other convention
(pymatting's 102, soft, 16-bit or float trimaps) to that.

Errors: :class:`~mattecli.errors.InputError` for a matte of the wrong shape, dtype or range (NaN,
values outside [0, 1]), :class:`~mattecli.errors.TrimapError` for a trimap of the wrong shape or
with values that are not integers 0..255.
"""

from __future__ import annotations

import math

import numpy as np

from mattecli.errors import InputError, TrimapError

__all__ = ["UNKNOWN", "to_alpha", "normalize_trimap", "unknown_mask", "prepare", "region"]

#: The trimap value that marks the unknown region in the DIM evaluation code.
UNKNOWN = 128


def to_alpha(values: np.ndarray, *, name: str = "alpha") -> np.ndarray:
    """Convert an alpha matte to float64 ``HxW`` in [0, 1], exactly.

    Args:
        values: ``HxW`` or ``HxWxC`` (channel 0 is used): ``uint8`` (divided by 255 in float64,
            so 8-bit 153 becomes the double nearest 0.6), ``uint16`` (divided by 65535),
            ``bool`` (0 / 1) or floats in [0, 1] (kept as they are).
        name: what the array is, for error messages.

    Returns:
        float64 ``HxW`` (the input itself when it already is float64 ``HxW``).

    Raises:
        InputError: wrong number of dimensions, an unsupported dtype, NaN, or float values
            outside [0, 1].
    """
    arr = _plane(values, name, InputError)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    if arr.dtype == np.bool_:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        out = arr.astype(np.float64, copy=False)
        if out.size:
            lo, hi = float(out.min()), float(out.max())
            if math.isnan(lo) or math.isnan(hi):
                raise InputError(f"{name} contains NaN")
            if lo < 0.0 or hi > 1.0:
                raise InputError(
                    f"{name} values must lie in [0, 1], found [{lo:.4g}, {hi:.4g}]",
                    hint="pass uint8/uint16 arrays as they are; they are scaled exactly",
                )
        return out
    raise InputError(f"{name}: unsupported dtype {arr.dtype} (use float in [0, 1], uint8 or uint16)")


def _plane(values, name: str, error: type[Exception]) -> np.ndarray:
    """``values`` as an ``HxW`` array (channel 0 of ``HxWxC``); ``error`` for any other shape."""
    arr = np.asarray(values)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise error(f"{name} must be an HxW array, got shape {arr.shape}")
    return arr


def _as_trimap_u8(trimap: np.ndarray) -> np.ndarray:
    """An 8-bit trimap (``HxW``), without changing any value; channel 0 of ``HxWxC``."""
    arr = _plane(trimap, "trimap", TrimapError)
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating):
        if arr.size and (arr.min() < 0 or arr.max() > 255 or not np.array_equal(arr, np.round(arr))):
            raise TrimapError(
                "trimap must hold integer values 0..255 (uint8)",
                hint="convert float [0, 1] or 16-bit trimaps with metrics.normalize_trimap",
            )
        return arr.astype(np.uint8)
    raise TrimapError(f"trimap: unsupported dtype {arr.dtype}")


def normalize_trimap(trimap: np.ndarray) -> np.ndarray:
    """Map any trimap to uint8 {0, 128, 255} with "strictly between black and white" = unknown.

    For non-DIM data (pymatting's 102, soft or anti-aliased trimaps, 16-bit or float
    trimaps) before DIM-style scoring, which only counts ``trimap == 128``.

    * ``uint8`` / integer: 0 -> 0, 255 -> 255, anything in between -> 128;
    * ``uint16``: 0 -> 0, 65535 -> 255, anything in between -> 128;
    * float (taken as [0, 1]): <= 0 -> 0, >= 1 -> 255, anything in between -> 128.

    Returns:
        uint8 ``HxW`` (channel 0 of an ``HxWxC`` input).
    """
    arr = np.asarray(trimap)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint16:
        top = 65535
    elif np.issubdtype(arr.dtype, np.floating):
        top = 1.0
    else:
        top = 255
    out = np.full(arr.shape, UNKNOWN, np.uint8)
    out[arr <= 0] = 0
    out[arr >= top] = 255
    return out


def unknown_mask(trimap: np.ndarray) -> np.ndarray:
    """Boolean ``HxW`` mask of the DIM unknown region: ``trimap == 128`` exactly.

    Raises:
        TrimapError: not ``HxW(xC)``, or values that are not integers 0..255.
    """
    return _as_trimap_u8(trimap) == UNKNOWN


def prepare(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(pred, gt, trimap)`` as float64 ``HxW``, float64 ``HxW`` and uint8 ``HxW`` (or None), checked
    to have one shape.

    Raises:
        InputError, TrimapError: as :func:`to_alpha`, or sizes that differ.
    """
    p = to_alpha(pred, name="prediction")
    g = to_alpha(gt, name="ground truth")
    if p.shape != g.shape:
        raise InputError(f"prediction is {p.shape[1]}x{p.shape[0]} but the ground truth is {g.shape[1]}x{g.shape[0]}")
    tri = None
    if trimap is not None:
        tri = _as_trimap_u8(trimap)
        if tri.shape != g.shape:
            raise TrimapError(
                f"trimap is {tri.shape[1]}x{tri.shape[0]} but the ground truth is {g.shape[1]}x{g.shape[0]}"
            )
    return p, g, tri


def region(tri: np.ndarray | None, value: int = UNKNOWN) -> np.ndarray | None:
    """Mask of ``trimap == value``, or None for the whole image."""
    return None if tri is None else tri == value
