"""Classical trimap-based matting that needs no weights: closed-form (Levin et al.) and KNN.

The solvers are pymatting's; this module validates inputs, converts pymatting's
errors into ours, and solves only on the part of the image that matters: the
bounding box of the unknown region grown by a margin that contains every local
window touching an unknown pixel. For closed-form matting with window radius r
that margin is 2r (a window around any pixel within r of an unknown pixel), so
the linear system -- and hence the answer -- is the same as on the whole image,
while the Laplacian is built on far fewer pixels.
"""

from __future__ import annotations

import numpy as np

from mattecli.errors import TrimapError

__all__ = ["CLASSICAL_METHODS", "estimate_alpha", "unknown_bbox"]

#: name -> (pymatting function name, crop margin in pixels or None for no cropping)
CLASSICAL_METHODS: dict[str, tuple[str, int | None]] = {
    # window radius 1: 2r = 2, plus one pixel of slack
    "cf": ("estimate_alpha_cf", 3),
    # KNN uses non-local neighbours in feature space: solve on the whole image
    "knn": ("estimate_alpha_knn", None),
}


def unknown_bbox(trimap: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Bounding box (rows, cols) of the unknown pixels grown by ``margin``; None if none are unknown."""
    unknown = (trimap > 0) & (trimap < 255)
    rows = np.flatnonzero(unknown.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(unknown.any(axis=0))
    h, w = trimap.shape
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)),
    )


def _validate(image: np.ndarray, trimap: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {image.shape}")
    if trimap.shape != image.shape[:2]:
        raise TrimapError(
            f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    if not (trimap == 255).any():
        raise TrimapError("trimap has no foreground (white, 255) pixels", hint="mark some certain foreground")
    if not (trimap == 0).any():
        raise TrimapError("trimap has no background (black, 0) pixels", hint="mark some certain background")


def estimate_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    method: str = "cf",
    *,
    crop: bool = True,
) -> np.ndarray:
    """Solve for alpha with a classical method.

    Args:
        image: float32/float64 ``HxWx3`` RGB in [0, 1].
        trimap: uint8 ``HxW`` in {0, 128, 255} (anything strictly between is unknown).
        method: ``"cf"`` (closed-form) or ``"knn"``.
        crop: solve on the unknown region's bounding box only (exact for ``cf``).

    Returns:
        float32 ``HxW`` alpha in [0, 1], exactly 0/1 in the known regions.

    Raises:
        TrimapError: wrong size, or no foreground / no background pixels.
    """
    import pymatting

    if method not in CLASSICAL_METHODS:
        raise ValueError(f"unknown classical method {method!r}")
    _validate(image, trimap)
    func_name, margin = CLASSICAL_METHODS[method]
    func = getattr(pymatting, func_name)
    alpha = (trimap >= 255).astype(np.float32)
    box = unknown_bbox(trimap, margin or 0) if (crop and margin is not None) else (slice(None), slice(None))
    if box is None:  # nothing unknown: the trimap is the answer
        return alpha
    sub_tri = trimap[box]
    if not (sub_tri == 255).any() or not (sub_tri == 0).any():
        # the crop lost every fg or bg constraint; solve on the whole image instead
        box = (slice(None), slice(None))
        sub_tri = trimap
    sub_img = np.asarray(image[box], dtype=np.float64)
    tri01 = sub_tri.astype(np.float64) / 255.0
    try:
        sub_alpha = func(sub_img, tri01)
    except ValueError as err:  # pymatting's own trimap checks
        raise TrimapError(f"{method} matting failed: {err}") from err
    sub_alpha = np.clip(sub_alpha, 0.0, 1.0).astype(np.float32)
    sub_alpha[sub_tri == 0] = 0.0
    sub_alpha[sub_tri == 255] = 1.0
    alpha[box] = sub_alpha
    return alpha
