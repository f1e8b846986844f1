"""Alpha-matting error metrics (SAD, MSE, MAD, Grad, Conn) in the two published conventions.

A dataset names its convention (:attr:`mattecli.datasets.Dataset.metric_mode`) and
:func:`evaluate` scores one image in it:

``"unknown"``: the Deep Image Matting (DIM) MATLAB evaluation
    (``evaluate.m``, ``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m``,
    ``compute_connectivity_error.m``, Ning Xu, 2018). Composition-1k, Distinctions-646, SIMD,
    folders with trimaps. Errors are summed or averaged over the **unknown region only, the
    pixels whose trimap value is exactly 128** (``trimap == 128``, not a range); known pixels are
    never checked. Trimaps that mark "unknown" with another grey level (pymatting's 102,
    anti-aliased edges) must first go through :func:`normalize_trimap`. Grad uses the DIM 9x9
    Gaussian-derivative kernel after ``mat2gray`` (:func:`grad`), Conn the exact decimal
    thresholds ``i / 10`` (:func:`conn`).

``"whole"``: the AIM authors' Python evaluation
    (github.com/JizhiziLi/AIM, commit 48e3dc8, ``core/evaluate.py`` as ``core/test.py`` calls it).
    AIM-500 and AM-2k (the same authors' test sets), folders without trimaps.
    SAD, MSE and MAD over the whole image, Grad as :func:`grad_aim`, Conn as :func:`conn_aim`,
    and, when a trimap is given, ``sad_trans`` / ``sad_fg`` / ``sad_bg``.

Where the two conventions' arithmetic differs (the AIM column is that code's arithmetic, step for
step; the DIM column is mattecli's float64 reading of the MATLAB code, which converts the 8-bit files
with ``single()``, so MATLAB's sums carry float32 rounding):

==================  ======================================  ==========================================
                    ``"unknown"`` (DIM)                     ``"whole"`` (AIM)
==================  ======================================  ==========================================
region              ``trimap == 128``                       every pixel
MSE / MAD divisor   unknown pixels (0.0 when none)          H*W
Grad filter         9x9 ``gaussgradient`` kernel, L2-       ``scipy.ndimage.gaussian_filter`` sigma 1.4,
                    normalised, replicated borders, on      order 1, 13 taps, reflected borders, on
                    ``mat2gray`` (min-max) values, float64  the [0, 1] values; float32 outputs
Grad sum            float64 sum / 1000                      float32 sum, then / 10 in float64
Conn thresholds     exact ``i / 10`` (8-bit 153 >= 0.6)     ``np.arange(0, 1.1, 0.1)``, whose 7th value
                                                            is 0.6000000000000001 (8-bit 153 is below)
Conn levels         float64 ``i / 10``                      ``float32`` (the code's ``l_map``)
Conn equal-size     first in column-major order (MATLAB     first in row-major order (scikit-image
largest components  ``bwconncomp``)                         ``label`` numbering + ``np.argmax``)
Conn empty          omega empty: pixels not yet assigned    threshold skipped
intersection        get ``t_{i-1}``
``sad_trans``       (not computed)                          SAD over the whole image after setting the
                                                            prediction to 1 / 0 where the trimap is
                                                            255 / 0 (the code's "SAD TRIMAP"): equal
                                                            to the SAD over ``trimap == 128`` when
                                                            the GT is 1 / 0 there
==================  ======================================  ==========================================

The 8-bit value 153 (exactly 0.6) is the one 8-bit value the thresholds tell apart (51, 102, 204
and 255 are the same doubles in both); in 16 bit it is 39321.

Inputs are alpha mattes of shape ``HxW`` (a trailing channel axis is allowed; channel 0 is used,
as ``evaluate.m`` does with the ground truth). They may be floats in [0, 1] or ``uint8`` /
``uint16`` arrays, which are converted exactly (``x / 255`` or ``x / 65535`` in float64: what
``core/test.py`` does with the 8-bit PNG ground truth, ``np.array(Image.open(path)) / 255.``).
Trimaps are ``uint8`` ``HxW`` with 0 / 128 / 255.

Units are those of the official codes: SAD = sum |p - g| / 1000; MSE = mean (p - g)^2, raw
(papers print it x 1e3, :data:`MSE_DISPLAY_SCALE`); MAD = mean |p - g|; Grad and Conn as above
(/ 1000, except AIM's Grad / 10).

**Empty unknown region** (an all-known trimap, DIM mode): SAD, Grad and Conn are 0 (an empty
sum). MSE and MAD are **0.0**, not NaN (the MATLAB code divides 0 by 0; the Python ports add
1e-8 to the divisor), so dataset means stay defined; :func:`evaluate` reports the pixel count
(``"unknown_px"``) so such images can be recognised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from mattecli.errors import InputError, TrimapError, UsageError

__all__ = [
    "UNKNOWN",
    "MSE_DISPLAY_SCALE",
    "METRIC_MODES",
    "GRAD_NORMS",
    "DIM_CONN_THRESHOLDS",
    "AIM_CONN_THRESHOLDS",
    "to_alpha",
    "normalize_trimap",
    "unknown_mask",
    "gauss_gradient_kernel",
    "gradient_magnitude",
    "mat2gray",
    "sad",
    "mse",
    "mad",
    "grad",
    "grad_aim",
    "conn",
    "conn_aim",
    "connectivity_levels",
    "connectivity_levels_aim",
    "evaluate",
    "metric_names",
]

#: The trimap value that marks the unknown region in the DIM evaluation code.
UNKNOWN = 128

#: Multiply a raw MSE by this to get the "MSE (x10^-3)" figure modern papers print.
MSE_DISPLAY_SCALE = 1e3

#: ``"unknown"``: the DIM MATLAB convention; ``"whole"``: the AIM authors' Python convention.
METRIC_MODES = ("unknown", "whole")
GRAD_NORMS = ("minmax", "255")

#: DIM ``gaussgradient`` parameters: sigma 1.4 and epsilon 1e-2 give a 9x9 kernel.
GRAD_SIGMA = 1.4
GRAD_EPSILON = 1e-2
#: Connectivity parameters of both codes: threshold step and the phi cut-off (inclusive).
CONN_STEP = 0.1
CONN_THETA = 0.15

#: Conn thresholds ``t_0 .. t_10`` of the DIM convention: the exact decimals ``i / 10`` (the double
#: nearest each), so 8-bit 153 / 255 (the double nearest 0.6) is >= ``t_6``.
DIM_CONN_THRESHOLDS = np.arange(11) / 10
#: Conn thresholds of the AIM code, ``np.arange(0, 1.1, 0.1)`` (``i * 0.1`` in float64):
#: ``t_3 = 0.30000000000000004``, ``t_6 = 0.6000000000000001``, ``t_7 = 0.7000000000000001``;
#: 8-bit 153 / 255 is below ``t_6``.
AIM_CONN_THRESHOLDS = np.arange(0, 1.1, 0.1)
#: The AIM code's levels: ``t_i`` stored in its float32 ``l_map``, read back as float64.
_AIM_CONN_LEVELS = AIM_CONN_THRESHOLDS.astype(np.float32).astype(np.float64)


# ----------------------------------------------------------------------------- inputs
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
    arr = np.asarray(values)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise InputError(f"{name} must be an HxW array, got shape {arr.shape}")
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


def _as_trimap_u8(trimap: np.ndarray) -> np.ndarray:
    """An 8-bit trimap (``HxW``), without changing any value; channel 0 of ``HxWxC``."""
    arr = np.asarray(trimap)
    if arr.ndim == 3:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise TrimapError(f"trimap must be an HxW array, got shape {arr.shape}")
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


def _prepare(
    pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
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


def _region(tri: np.ndarray | None, value: int = UNKNOWN) -> np.ndarray | None:
    """Mask of ``trimap == value``, or None for the whole image."""
    return None if tri is None else tri == value


# ----------------------------------------------------------------------------- SAD / MSE / MAD
def _abs_err(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.abs(p - g) if mask is None else np.abs(p[mask] - g[mask])


def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Sum of absolute differences / 1000 over ``trimap == 128`` (the whole image without a trimap).

    Inputs as :func:`to_alpha` reads them; the trimap uint8 ``HxW``. Both conventions agree.
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return float(_abs_err(p, g, _region(tri)).sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean squared error over ``trimap == 128`` (the whole image without a trimap); raw, 0.0 if empty."""
    p, g, tri = _prepare(pred, gt, trimap)
    err = _abs_err(p, g, _region(tri))
    return float(np.mean(err * err)) if err.size else 0.0


def mad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean absolute difference over ``trimap == 128`` (the whole image without a trimap); 0.0 if empty."""
    p, g, tri = _prepare(pred, gt, trimap)
    err = _abs_err(p, g, _region(tri))
    return float(np.mean(err)) if err.size else 0.0


# ----------------------------------------------------------------------------- Grad (DIM)
def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-(x**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


def _dgauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return -x * _gauss(x, sigma) / sigma**2


def _halfsize(sigma: float, epsilon: float) -> int:
    return math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * epsilon)))


def _grad_factors(sigma: float = GRAD_SIGMA, epsilon: float = GRAD_EPSILON) -> tuple[np.ndarray, np.ndarray]:
    """The two 1-D factors of the DIM kernel, each L2-normalised: (gauss, dgauss) over -h..h."""
    h = _halfsize(sigma, epsilon)
    u = np.arange(-h, h + 1, dtype=np.float64)
    g = _gauss(u, sigma)
    d = _dgauss(u, sigma)
    return g / np.linalg.norm(g), d / np.linalg.norm(d)


def gauss_gradient_kernel(sigma: float = GRAD_SIGMA, epsilon: float = GRAD_EPSILON) -> np.ndarray:
    """The DIM ``gaussgradient`` x-kernel ``hx`` (float64, 9x9 for sigma 1.4), L2-normalised.

    ``hx[i, j] = gauss(i - h) * dgauss(j - h) / ||.||_2`` with half-size
    ``h = ceil(sigma * sqrt(-2 log(sqrt(2 pi) sigma epsilon)))``: it differentiates along x
    (columns) and smooths along y; ``hy = hx.T``. The kernel is separable and its Frobenius
    norm is the product of the factors' norms, which is how :func:`gradient_magnitude`
    applies it. Its gain on a unit ramp is about 9.684.
    """
    g, d = _grad_factors(sigma, epsilon)
    return np.outer(g, d)


def gradient_magnitude(image: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """``sqrt(gx^2 + gy^2)`` of MATLAB ``imfilter(image, hx|hy, 'replicate', 'conv')``.

    Args:
        image: ``HxW``, any real dtype (computed in float64).
        sigma: the DIM kernel's sigma.

    Returns:
        float64 ``HxW``: a true convolution (the kernel is flipped) with replicated borders,
        done as two separable 1-D passes.
    """
    g, d = _grad_factors(sigma)
    img = np.ascontiguousarray(image, dtype=np.float64)
    # cv2 filters correlate; convolving flips the kernel: gauss is symmetric, dgauss changes sign.
    dk = np.ascontiguousarray(d[::-1])
    gx = cv2.sepFilter2D(img, cv2.CV_64F, dk, g, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(img, cv2.CV_64F, g, dk, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy)


def mat2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: rescale by the image's own min and max to [0, 1] (float64).

    A constant image (max == min) gives all zeros; its gradient is zero either way.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.size == 0:
        return img.copy()
    lo, hi = float(img.min()), float(img.max())
    if hi <= lo:
        return np.zeros_like(img)
    return (img - lo) / (hi - lo)


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, h)),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, w)),
    )


def _grad(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None, norm: str) -> float:
    if norm not in GRAD_NORMS:
        raise UsageError(f"grad normalisation must be one of {', '.join(GRAD_NORMS)}, not {norm!r}")
    if norm == "minmax":
        p, g = mat2gray(p), mat2gray(g)
    if mask is not None:
        box = _bbox(mask, _halfsize(GRAD_SIGMA, GRAD_EPSILON))
        if box is None:
            return 0.0
        p, g, mask = p[box], g[box], mask[box]
    diff = gradient_magnitude(p) - gradient_magnitude(g)
    if mask is not None:
        diff = diff[mask]
    return float(np.sum(diff * diff) / 1000.0)


def grad(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    norm: str = "minmax",
) -> float:
    """Gradient error / 1000, DIM convention (``compute_gradient_loss.m`` as ``evaluate.m`` calls it).

    ``sum((|grad p| - |grad g|)^2) / 1000`` with :func:`gradient_magnitude`, over
    ``trimap == 128`` (the whole image without a trimap), in float64.

    Args:
        pred, gt: as :func:`to_alpha` reads them.
        trimap: uint8 ``HxW`` or None.
        norm: ``"minmax"`` (default, MATLAB-faithful): each image is first rescaled by its
            own min and max (``mat2gray``); ``"255"``: the [0, 1] values as they are. The two
            agree whenever both images span the full range.

    Only the unknown region's bounding box grown by the kernel half-size is filtered; the
    values there are identical to filtering the whole image (mat2gray's min and max are
    still taken over the whole image).

    Raises:
        UsageError: an unknown ``norm``. InputError, TrimapError: as :func:`to_alpha`.
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _grad(p, g, _region(tri), norm)


# ----------------------------------------------------------------------------- Grad (AIM)
def _grad_aim(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> float:
    from scipy.ndimage import gaussian_filter  # the filter the AIM code calls (scipy's arithmetic, exactly)

    def magnitude(x: np.ndarray) -> np.ndarray:
        dx = gaussian_filter(x, sigma=GRAD_SIGMA, order=[1, 0], output=np.float32)
        dy = gaussian_filter(x, sigma=GRAD_SIGMA, order=[0, 1], output=np.float32)
        return np.sqrt(dx**2 + dy**2)

    error_map = np.square(magnitude(p) - magnitude(g))
    if mask is not None:
        error_map = error_map[mask]
    # np.sum of float32 is float32; the authors' numpy (1.19) divides that scalar by 10 in float64.
    return float(np.sum(error_map)) / 10.0


def grad_aim(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Gradient error as the AIM code computes it (``compute_gradient_whole_image``, AIM @ 48e3dc8).

    For each image ``x`` (float64 [0, 1], not rescaled):
    ``scipy.ndimage.gaussian_filter(x, sigma=1.4, order=[1, 0] | [0, 1], output=np.float32)``
    (13 taps, reflected borders, the first axis' pass stored as float32 before the second;
    gain about 1 on a unit ramp), the magnitude ``sqrt(dx**2 + dy**2)`` in float32; the error
    is ``np.sum((|grad p| - |grad g|)**2)`` (a float32 sum) **divided by 10** (in float64, as the
    authors' numpy 1.19 promotes a float32 scalar divided by a Python int).

    Args:
        pred, gt: as :func:`to_alpha` reads them.
        trimap: None (the AIM code: the whole image) or uint8 ``HxW``: then only
            ``trimap == 128`` is summed (an extension; the AIM code has no such variant).
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _grad_aim(p, g, _region(tri))


# ----------------------------------------------------------------------------- Conn
def _threshold_counts(x: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """uint8 count of the (increasing) ``thresholds`` ``t`` with ``x >= t``.

    ``(pred >= t_i) & (gt >= t_i)`` is then ``min(counts_pred, counts_gt) >= i``. Each
    comparison is the float64 one the evaluation code makes.
    """
    counts = np.zeros(x.shape, np.uint8)
    for t in thresholds:
        counts += x >= t
    return counts


def _largest_label(binary: np.ndarray, ties: str) -> tuple[np.ndarray, int]:
    """4-connected labels of a uint8 0/1 image with a foreground pixel, and the largest label.

    The background (label 0) is never chosen. Among equally large components the one whose
    first pixel comes first wins, in ``ties`` order: ``"column"`` (MATLAB's ``bwconncomp`` +
    ``max``: leftmost column, then topmost row) or ``"row"`` (scikit-image's ``label``, which
    numbers components by their first pixel in row-major order, + ``np.argmax``).
    """
    n, labels = cv2.connectedComponents(binary, connectivity=4, ltype=cv2.CV_32S)
    areas = np.bincount(labels.ravel(), minlength=n)
    areas[0] = -1
    best = np.flatnonzero(areas == areas.max())
    if best.size == 1:
        return labels, int(best[0])
    scan = np.ascontiguousarray(labels.T).ravel() if ties == "column" else labels.ravel()
    hit = np.isin(scan, best) if best.size > 8 else np.logical_or.reduce([scan == b for b in best])
    return labels, int(scan[int(np.argmax(hit))])


def _conn_counts(
    p: np.ndarray, g: np.ndarray, thresholds: np.ndarray, *, empty: str, ties: str, region: np.ndarray | None
) -> np.ndarray:
    """uint8 ``HxW``: for each pixel, how many thresholds ``t_1..t_n`` passed before it left omega.

    ``omega_i`` is the largest 4-connected component of ``(p >= t_i) & (g >= t_i)`` over the
    whole image. A pixel's count is ``i - 1`` for the first ``i`` whose ``omega_i`` does not
    contain it, ``n`` if every ``omega_i`` does. An empty intersection: ``empty="matlab"``
    (omega is empty: every pixel still counting stops there) or ``"skip"`` (the threshold is
    skipped; every later intersection is empty too, so survivors end at ``n``). With a
    ``region``, the loop may stop once every region pixel has its count (other pixels' counts
    are then not final).
    """
    n = len(thresholds)
    both = np.minimum(_threshold_counts(p, thresholds), _threshold_counts(g, thresholds))
    # counts[y, x] = the number of thresholds i whose omega_i (and all before it) contain the
    # pixel. alive = the pixels in every omega so far, stored over its bounding box, which only
    # shrinks (omega_i lies in B_i, inside B_{i-1}).
    counts = np.zeros(p.shape, np.uint8)
    alive = np.ones(p.shape, bool)
    top, left = 0, 0
    for i in range(1, n + 1):
        binary = (both >= i).view(np.uint8)
        x, y, w, h = cv2.boundingRect(binary)
        if w == 0 or h == 0:  # empty intersection
            if empty == "skip":  # every later one is empty too: survivors end at n
                ys, xs = slice(top, top + alive.shape[0]), slice(left, left + alive.shape[1])
                counts[ys, xs] += alive.view(np.uint8) * np.uint8(n - i + 1)
            break
        labels, best = _largest_label(np.ascontiguousarray(binary[y : y + h, x : x + w]), ties)
        alive = alive[y - top : y - top + h, x - left : x - left + w] & (labels == best)
        top, left = y, x
        ys, xs = slice(y, y + h), slice(x, x + w)
        counts[ys, xs] += alive.view(np.uint8)
        if region is not None and not (alive & region[ys, xs]).any():
            break  # every region pixel has its count
        if not alive.any():
            break
    return counts


def connectivity_levels(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    step: float = CONN_STEP,
    empty: str = "matlab",
    region: np.ndarray | None = None,
) -> np.ndarray:
    """The ``l_map`` of the DIM connectivity error (``compute_connectivity_error.m``).

    For thresholds ``t_i = i * step`` as exact decimals (``i / 10`` for the default step, so
    8-bit 153/255 counts as >= 0.6), ``omega_i`` is the largest 4-connected component of
    ``(pred >= t_i) & (gt >= t_i)`` over the whole image (equal sizes: the first in
    column-major order). A pixel's level is ``t_{i-1}`` for the first ``i`` whose ``omega_i``
    does not contain it, or 1 if every ``omega_i`` contains it.

    Args:
        pred, gt: float ``HxW`` in [0, 1].
        step: the threshold step; must divide 1.
        empty: what an empty intersection does: ``"matlab"`` (omega is empty, so every pixel
            still unassigned gets ``t_{i-1}``) or ``"skip"`` (the threshold is skipped, as the
            AIM code does; :func:`connectivity_levels_aim` is that code whole).
        region: boolean ``HxW``; None means every pixel.

    Returns:
        float64 levels of the region's pixels in row-major order (``HxW`` when ``region`` is None).

    Raises:
        UsageError: an unknown ``empty`` or a step that does not divide 1.
    """
    if empty not in ("matlab", "skip"):
        raise UsageError(f"empty must be 'matlab' or 'skip', not {empty!r}")
    n_steps = int(round(1.0 / step))
    if not math.isclose(n_steps * step, 1.0):
        raise UsageError(f"step must divide 1 (e.g. 0.1), not {step}")
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    thresholds = np.arange(1, n_steps + 1) / n_steps
    counts = _conn_counts(p, g, thresholds, empty=empty, ties="column", region=region)
    chosen = counts if region is None else counts[region]
    return chosen.astype(np.float64) / n_steps


def connectivity_levels_aim(pred: np.ndarray, gt: np.ndarray, *, region: np.ndarray | None = None) -> np.ndarray:
    """The ``l_map`` of the AIM code's connectivity error (``compute_connectivity_loss_whole_image``).

    Thresholds :data:`AIM_CONN_THRESHOLDS` (``np.arange(0, 1.1, 0.1)``: 8-bit 153/255 is below
    ``t_6 = 0.6000000000000001``); ``omega_i`` is the largest 4-connected component of
    ``(pred >= t_i) & (gt >= t_i)`` (equal sizes: the first in row-major order); empty
    intersections are skipped; a pixel's level is ``t_{i-1}`` for the first ``i`` whose
    ``omega_i`` does not contain it, else 1, stored as float32 as the code's ``l_map`` is.

    Args:
        pred, gt: float ``HxW`` in [0, 1].
        region: boolean ``HxW``; None means every pixel.

    Returns:
        float64 values of the float32 levels (``float32(0.1) = 0.10000000149011612``...), of the
        region's pixels in row-major order (``HxW`` when ``region`` is None).
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    counts = _conn_counts(p, g, AIM_CONN_THRESHOLDS[1:], empty="skip", ties="row", region=region)
    return _AIM_CONN_LEVELS[counts if region is None else counts[region]]


def _conn(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None, step: float, empty: str) -> float:
    if mask is not None and not mask.any():
        return 0.0
    levels = connectivity_levels(p, g, step=step, empty=empty, region=mask)
    if mask is not None:
        p, g = p[mask], g[mask]

    def shifted(x: np.ndarray) -> np.ndarray:
        # phi = 1 - d * [d >= 0.15] with d = x - l; return d * [d >= 0.15] = 1 - phi.
        d = np.subtract(x, levels)
        np.multiply(d, d >= CONN_THETA, out=d)
        return d

    diff = shifted(g)
    np.subtract(diff, shifted(p), out=diff)  # phi_p - phi_g
    np.abs(diff, out=diff)
    return float(diff.sum() / 1000.0)


def conn(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    step: float = CONN_STEP,
    empty: str = "matlab",
) -> float:
    """Connectivity error / 1000, DIM convention (``compute_connectivity_error.m``, ``evaluate.m``).

    Levels ``l`` from :func:`connectivity_levels` (components are found over the whole image,
    through known regions too); ``d = x - l``; ``phi = 1 - d * [d >= 0.15]`` (inclusive); the
    error is the float64 sum of ``|phi(pred) - phi(gt)|`` over ``trimap == 128`` (the whole
    image without a trimap), / 1000.

    Args:
        pred, gt: as :func:`to_alpha` reads them.
        trimap: uint8 ``HxW`` or None.
        step, empty: as :func:`connectivity_levels` (``empty="skip"`` keeps the exact decimal
            thresholds; :func:`conn_aim` is the AIM code).
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _conn(p, g, _region(tri), step, empty)


def _conn_aim(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is not None and not mask.any():
        return 0.0
    l_map = connectivity_levels_aim(p, g, region=mask)
    if mask is not None:
        p, g = p[mask], g[mask]
    d_pd = p - l_map
    d_gt = g - l_map
    phi_pd = 1 - d_pd * (d_pd >= CONN_THETA)
    phi_gt = 1 - d_gt * (d_gt >= CONN_THETA)
    return float(np.sum(np.abs(phi_pd - phi_gt)) / 1000)


def conn_aim(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Connectivity error as the AIM code computes it (``compute_connectivity_loss_whole_image``, AIM @ 48e3dc8).

    Levels ``l`` from :func:`connectivity_levels_aim` (float32 values); in float64
    ``d = x - l``, ``phi = 1 - d * [d >= 0.15]``; the error is
    ``np.sum(|phi(pred) - phi(gt)|) / 1000`` over the whole image.

    Args:
        pred, gt: as :func:`to_alpha` reads them (the AIM code gets float64 [0, 1]).
        trimap: None (the AIM code) or uint8 ``HxW``: then only ``trimap == 128`` is summed
            (an extension; the AIM code has no such variant).
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _conn_aim(p, g, _region(tri))


# ----------------------------------------------------------------------------- evaluate
def metric_names(mode: str, *, with_trimap: bool = True) -> list[str]:
    """The keys :func:`evaluate` returns in ``mode`` (besides the pixel counts).

    Raises:
        UsageError: an unknown mode.
    """
    if mode == "unknown":
        return ["sad", "mse", "mad", "grad", "conn"]
    if mode == "whole":
        names = ["sad", "mse", "mad", "grad", "conn"]
        return names + (["sad_trans", "sad_fg", "sad_bg"] if with_trimap else [])
    raise UsageError(f"metric mode must be one of {', '.join(METRIC_MODES)}, not {mode!r}")


def _evaluate_dim(p: np.ndarray, g: np.ndarray, tri: np.ndarray, wanted: list[str], grad_norm: str) -> dict:
    region = tri == UNKNOWN
    err = np.abs(p[region] - g[region])
    out: dict[str, float] = {}
    if "sad" in wanted:
        out["sad"] = float(err.sum() / 1000.0)
    if "mse" in wanted:
        out["mse"] = float(np.mean(err * err)) if err.size else 0.0
    if "mad" in wanted:
        out["mad"] = float(np.mean(err)) if err.size else 0.0
    if "grad" in wanted:
        out["grad"] = _grad(p, g, region, grad_norm)
    if "conn" in wanted:
        out["conn"] = _conn(p, g, region, CONN_STEP, "matlab")
    out["unknown_px"] = int(region.sum())
    return out


def _evaluate_aim(p: np.ndarray, g: np.ndarray, tri: np.ndarray | None, wanted: list[str]) -> dict:
    """The AIM code's ``core/test.py`` calls, in its arithmetic (float64 unless noted)."""
    out: dict[str, float] = {}
    pixel = p.shape[0] * p.shape[1]
    diff = p - g
    sad_diff = np.abs(diff)
    if "sad" in wanted:  # calculate_sad_mse_mad_whole_img
        out["sad"] = float(np.sum(sad_diff) / 1000)
    if "mse" in wanted:
        out["mse"] = float(np.sum(diff**2) / pixel)
    if "mad" in wanted:
        out["mad"] = float(np.sum(sad_diff) / pixel)
    if "grad" in wanted:
        out["grad"] = _grad_aim(p, g, None)
    if "conn" in wanted:
        out["conn"] = _conn_aim(p, g, None)
    if tri is not None:
        if "sad_trans" in wanted:  # calculate_sad_mse_mad: the known regions set from the trimap
            forced = p.copy()
            forced[tri == 255] = 1.0
            forced[tri == 0] = 0.0
            out["sad_trans"] = float(np.sum(np.abs(forced - g)) / 1000)
        for key, value in (("sad_fg", 255), ("sad_bg", 0)):  # calculate_sad_fgbg: 0/1 weights
            if key in wanted:
                out[key] = float(np.sum(sad_diff * (tri == value)) / 1000)
        out["unknown_px"] = int((tri == UNKNOWN).sum())
    else:
        out["unknown_px"] = int(p.size)
    return out


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    mode: str = "unknown",
    grad_norm: str = "minmax",
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """All metrics for one image, in one convention.

    Args:
        pred: predicted alpha, ``HxW`` float in [0, 1] or uint8/uint16 (see :func:`to_alpha`).
        gt: ground-truth alpha, same shape and conventions.
        trimap: uint8 ``HxW``; required in ``"unknown"`` mode, optional in ``"whole"``.
            Used as is (only ``== 128`` is unknown): run :func:`normalize_trimap` first for
            trimaps with other grey levels.
        mode: ``"unknown"``: the DIM MATLAB code (SAD, MSE, MAD, :func:`grad`, :func:`conn`
            over ``trimap == 128``); ``"whole"``: the AIM code (SAD, MSE, MAD over the whole
            image, :func:`grad_aim`, :func:`conn_aim`; with a trimap also ``sad_trans``, the
            code's "SAD TRIMAP": the SAD after setting the prediction to 1 / 0 where the trimap
            is 255 / 0, and ``sad_fg`` / ``sad_bg``: the SAD over trimap 255 / 0). See the
            module docstring for every difference.
        grad_norm: ``"minmax"`` or ``"255"``, for the DIM Grad (``"unknown"`` mode only).
        metrics: compute only these keys (default: all of the mode's).

    Returns:
        ``{"sad", "mse", "mad", "grad", "conn", ...}`` as floats in the official units (MSE
        raw), plus ``"unknown_px"`` (pixels with trimap 128; in whole mode without a trimap,
        all pixels) and ``"pixels"`` (H*W) as ints.

    Raises:
        UsageError: unknown mode / normalisation / metric, or ``"unknown"`` mode without a trimap.
        InputError, TrimapError: mismatched shapes or bad values.
    """
    if mode not in METRIC_MODES:
        raise UsageError(f"metric mode must be one of {', '.join(METRIC_MODES)}, not {mode!r}")
    if grad_norm not in GRAD_NORMS:
        raise UsageError(f"grad normalisation must be one of {', '.join(GRAD_NORMS)}, not {grad_norm!r}")
    if mode == "unknown" and trimap is None:
        raise UsageError("the 'unknown' metric mode needs a trimap", hint="use mode='whole' without one")
    p, g, tri = _prepare(pred, gt, trimap)
    wanted = metric_names(mode, with_trimap=tri is not None)
    if metrics is not None:
        bad = [m for m in metrics if m not in wanted]
        if bad:
            raise UsageError(f"unknown metric(s) {', '.join(bad)} for mode {mode!r}; known: {', '.join(wanted)}")
        wanted = list(metrics)
    out = _evaluate_dim(p, g, tri, wanted, grad_norm) if mode == "unknown" else _evaluate_aim(p, g, tri, wanted)
    out["pixels"] = int(p.size)
    return out
