"""Trimaps from alpha mattes or binary masks, and trimap helpers shared by methods.

A trimap here is uint8 ``HxW`` with 0 = background, 128 = unknown, 255 = foreground.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mattecli.errors import BadOptionError

__all__ = [
    "TrimapSettings",
    "make_trimap",
    "clamp_known",
    "structuring_element",
    "cropped_element",
    "erode",
    "dilate",
    "distance_to_zero",
    "squared_distance_to_zero",
]

_SHAPES = {"ellipse": cv2.MORPH_ELLIPSE, "square": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}


@dataclass(frozen=True)
class TrimapSettings:
    """How a trimap is cut from an alpha matte or mask.

    Attributes:
        erode: radius (px) by which the certain foreground shrinks.
        dilate: radius (px) by which the possible foreground grows; outside is background.
        iterations: how many times each morphology pass is applied.
        threshold: if set, the input is binarised at this value in [0, 1] first (for
            soft masks); otherwise certain foreground is alpha == 1 and possible
            foreground is alpha > 0, so a matte's own soft edge stays unknown.
        shape: structuring element, ``ellipse`` (default), ``square`` or ``cross``.
    """

    erode: int = 10
    dilate: int = 10
    iterations: int = 1
    threshold: float | None = None
    shape: str = "ellipse"

    @classmethod
    def from_width(cls, width: int, **kw) -> TrimapSettings:
        """An unknown band ``width`` px wide centred on the edge (erode = width // 2, dilate = the rest)."""
        return cls(erode=width // 2, dilate=width - width // 2, **kw)

    def validate(self) -> TrimapSettings:
        if self.erode < 0 or self.dilate < 0:
            raise BadOptionError("--erode and --dilate must be >= 0")
        if self.iterations < 1:
            raise BadOptionError("--iterations must be >= 1")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise BadOptionError("--threshold must be in (0, 1]")
        if self.shape not in _SHAPES:
            raise BadOptionError(f"--shape must be one of {', '.join(_SHAPES)}")
        return self


def structuring_element(radius: int, shape: str = "ellipse") -> np.ndarray:
    """A (2r+1)x(2r+1) uint8 kernel (OpenCV's ellipse, rectangle or cross)."""
    return cv2.getStructuringElement(_SHAPES[shape], (2 * radius + 1, 2 * radius + 1))


#: The most work (pixels x passes x kernel points) an erosion may do exactly as repeated passes
#: (OpenCV does about 1e11 of these a second here); beyond it the limit shape's distance transform.
EXACT_WORK = 10**11

#: Rows of the full-size integer maps computed at a time from the feature transform (bounds the temporaries)
_BAND_PIXELS = 1 << 21


def _bands(nonzero: np.ndarray):
    """``(rows, dy, dx)`` per row band: the integer offsets of every pixel of ``nonzero`` (``HxW``, any
    dtype; zero or False = the set) to its nearest zero pixel, by the exact Euclidean feature
    transform of ``scipy.ndimage.distance_transform_edt`` (Maurer's algorithm, integer arithmetic)."""
    from scipy.ndimage import distance_transform_edt

    h, w = nonzero.shape
    nearest = np.empty((2, h, w), np.int32)
    distance_transform_edt(np.asarray(nonzero) != 0, return_distances=False, return_indices=True, indices=nearest)
    step = max(1, _BAND_PIXELS // max(1, w))
    cols = np.arange(w, dtype=np.int64)
    for y0 in range(0, h, step):
        y1 = min(h, y0 + step)
        dy = nearest[0, y0:y1].astype(np.int64) - np.arange(y0, y1, dtype=np.int64)[:, None]
        dx = nearest[1, y0:y1].astype(np.int64) - cols
        yield slice(y0, y1), dy, dx


def squared_distance_to_zero(nonzero: np.ndarray) -> np.ndarray:
    """Exact squared Euclidean distance (int64 ``HxW``) of every pixel of ``nonzero`` to its nearest
    zero pixel (0 on zero pixels; pixels outside the array are not zeros). ``nonzero`` must hold a
    zero pixel. Integer arithmetic throughout, so the same input always gives the same bytes."""
    out = np.empty(nonzero.shape, np.int64)
    for rows, dy, dx in _bands(nonzero):
        out[rows] = dy * dy + dx * dx
    return out


def distance_to_zero(nonzero: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance (float32 ``HxW``) of every pixel of ``nonzero`` to its nearest zero
    pixel: the square root of :func:`squared_distance_to_zero`'s integers, taken in float64 and
    rounded once to float32. ``nonzero`` must hold a zero pixel.

    What ``cv2.distanceTransform(src, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)`` defines, without its
    float32 arithmetic: OpenCV 5.1's result is off by up to ~5e-4 px at 1400 px, and the error changes
    from one call to the next in a single-threaded process, so two runs of the same command could
    differ (bench/RESULTS.md, "Same command, same matte"). Temporaries: 8 bytes per pixel (the
    feature transform) plus a band of rows."""
    out = np.empty(nonzero.shape, np.float32)
    for rows, dy, dx in _bands(nonzero):
        out[rows] = np.sqrt((dy * dy + dx * dx).astype(np.float64))
    return out


def cropped_element(radius: int, shape: str, ry: int, rx: int) -> np.ndarray:
    """The centre ``(2 ry + 1) x (2 rx + 1)`` of :func:`structuring_element` ``(radius, shape)``, built
    without the full kernel (``--erode 1000000`` would need a 2-million-pixel square of it).

    The ellipse's rows are OpenCV's own formula (``getStructuringElement``: half-width
    ``cvRound(r * sqrt((r^2 - dy^2) / r^2))``, rounding half to even), so the crop is equal,
    element for element, to cropping OpenCV's kernel.
    """
    if shape == "square":
        return np.ones((2 * ry + 1, 2 * rx + 1), np.uint8)
    kernel = np.zeros((2 * ry + 1, 2 * rx + 1), np.uint8)
    if shape == "cross":
        kernel[ry, :] = 1
        kernel[:, rx] = 1
        return kernel
    dy = np.arange(-ry, ry + 1, dtype=np.float64)
    r = float(radius)
    half = np.rint(r * np.sqrt((r * r - dy * dy) * (1.0 / (r * r)))).astype(np.int64)
    cols = np.arange(-rx, rx + 1)
    kernel[np.abs(cols)[None, :] <= np.minimum(half, rx)[:, None]] = 1
    return kernel


def _steps(n: int, reach: int) -> int:
    """Passes of a kernel reaching ``reach`` px that cross a side of ``n`` px (0 for a side of 1)."""
    return 0 if n <= 1 else -(-(n - 1) // reach)


def erode(mask: np.ndarray, radius: int, iterations: int = 1, shape: str = "ellipse") -> np.ndarray:
    """``iterations`` erosions of a uint8 0/1 ``mask`` by the ``radius`` element, in bounded work.

    Identical to ``cv2.erode(mask, structuring_element(radius, shape), iterations=iterations,
    borderType=cv2.BORDER_REPLICATE)`` whenever that takes at most ``EXACT_WORK``, however big
    ``radius`` and ``iterations`` are, because:

    * with the frame's edge pixels repeated beyond it, a pixel's erosion is the minimum over the
      kernel's offsets that land inside the frame (the element is symmetric and shrinks towards
      its centre, so each repeated pixel is also a nearer real one), so offsets beyond the frame
      change nothing and the kernel is cropped to the frame (``--erode 1000`` on 96x80 px:
      191x159 instead of 2001x2001);
    * after ``ceil((h-1)/ry) + ceil((w-1)/rx)`` passes (``ry``, ``rx`` the cropped kernel's arms)
      every pixel sees every other one, so the result no longer changes: more iterations are
      not run (``--iterations 100000``);
    * ``square``: N passes of a square of half-side r are one square of half-side N r
      (OpenCV does the same), cropped likewise: exact at any size.

    Beyond ``EXACT_WORK`` (ellipse, cross) the N-fold element is replaced by its limit shape, a
    pixel being kept when no 0 lies within distance ``radius * iterations``: Euclidean for the
    ellipse (a disk), city-block for the cross (a diamond), in one distance transform; the N-fold
    ellipse is a 2-D polygon that such a disk approximates to within a few percent of the radius.
    """
    h, w = mask.shape
    if radius <= 0 or iterations <= 0 or mask.all() or not mask.any():
        return mask
    ry, rx = min(radius, h - 1), min(radius, w - 1)
    if shape == "square":
        reach_y, reach_x = min(radius * iterations, h - 1), min(radius * iterations, w - 1)
        kernel = np.ones((2 * reach_y + 1, 2 * reach_x + 1), np.uint8)
        return cv2.erode(mask, kernel, borderType=cv2.BORDER_REPLICATE)
    passes = min(iterations, _steps(h, ry) + _steps(w, rx))
    if passes == 0:
        return mask
    kernel = cropped_element(radius, shape, ry, rx)
    if h * w * passes * int(np.count_nonzero(kernel)) <= EXACT_WORK:
        return cv2.erode(mask, kernel, iterations=passes, borderType=cv2.BORDER_REPLICATE)
    reach = min(radius * iterations, h + w)
    if shape == "cross":  # city-block distance: integers, exact in OpenCV
        distance = cv2.distanceTransform(mask, cv2.DIST_L1, 3)  # to the nearest 0 inside the frame, < h + w
        return (distance > reach).astype(np.uint8)
    out = np.empty(mask.shape, np.uint8)
    for rows, dy, dx in _bands(mask):  # the disk: exact squared distances against the squared reach
        out[rows] = dy * dy + dx * dx > reach * reach
    return out


def dilate(mask: np.ndarray, radius: int, iterations: int = 1, shape: str = "ellipse") -> np.ndarray:
    """The dilation matching :func:`erode` (``cv2.dilate`` with repeated edge pixels): its complement's erosion."""
    return 1 - erode(1 - mask, radius, iterations, shape)


def make_trimap(alpha: np.ndarray, settings: TrimapSettings | None = None) -> np.ndarray:
    """Cut a trimap from an alpha matte or mask.

    Args:
        alpha: float ``HxW`` in [0, 1] (or uint8, read as /255).
        settings: see :class:`TrimapSettings`.

    Returns:
        uint8 ``HxW`` in {0, 128, 255}: foreground = certain foreground eroded,
        background = outside the dilated possible foreground, unknown in between.
        Large radii and iterations cost bounded work (see :func:`erode`).
    """
    s = (settings or TrimapSettings()).validate()
    a = alpha.astype(np.float32) / 255.0 if alpha.dtype == np.uint8 else alpha.astype(np.float32)
    if s.threshold is not None:
        sure = possible = a >= s.threshold
    else:
        sure, possible = a >= 1.0, a > 0.0
    sure = sure.astype(np.uint8)
    possible = possible.astype(np.uint8)
    # Beyond the frame the edge pixels repeat: the frame border is not an object edge.
    # The work is bounded whatever the radii and iterations (see erode).
    sure = erode(sure, s.erode, s.iterations, s.shape)
    possible = dilate(possible, s.dilate, s.iterations, s.shape)
    trimap = np.zeros(a.shape, np.uint8)
    trimap[possible > 0] = 128
    trimap[sure > 0] = 255
    return trimap


def clamp_known(alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Force alpha to 0 / 1 where the trimap is certain background / foreground (in place)."""
    alpha[trimap == 0] = 0.0
    alpha[trimap == 255] = 1.0
    return alpha
