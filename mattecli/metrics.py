"""Alpha-matting error metrics: SAD, MSE, MAD, Grad and Conn.

Two evaluation modes, matching the two conventions in the literature
(``shared/refs/metrics.md``):

``"unknown"`` (Composition-1k, Distinctions-646, SIMD, alphamatting.com)
    The official Deep Image Matting MATLAB evaluation code. Errors are summed or
    averaged over the **unknown region only, i.e. pixels whose trimap value is
    exactly 128** (``trimap == 128``, not a range); known pixels are never
    checked. Trimaps that mark "unknown" with another grey level (pymatting's
    102, anti-aliased edges) must first go through :func:`normalize_trimap`,
    which maps every value strictly between 0 and 255 to 128.

``"whole"`` (AIM-500, AM-2k: trimap-free benchmarks)
    The AIM/GFM evaluation code: SAD, MSE and MAD over the whole image, Grad and
    Conn over the whole image as that code defines them (see :func:`grad_aim`,
    :func:`conn`), plus, when a trimap is given, SAD over the transition region
    (``trimap == 128``), the foreground (``255``) and the background (``0``).

Inputs are alpha mattes of shape ``HxW`` (a trailing channel axis is allowed;
channel 0 is used, as ``evaluate.m`` does with the ground truth). They may be
floats in [0, 1] or ``uint8`` / ``uint16`` arrays, which are converted exactly
(``x / 255`` or ``x / 65535`` in float64). All arithmetic is float64.

Units are those of the official code:

* SAD = sum |p - g| / 1000;
* MSE = mean (p - g)^2 over the region, raw (papers often print it x 1e3;
  :data:`MSE_DISPLAY_SCALE` is that factor);
* MAD = mean |p - g| over the region;
* Grad = sum (|grad p| - |grad g|)^2 / 1000 with the DIM 9x9 Gaussian-derivative
  kernel (:func:`gauss_gradient_kernel`);
* Conn = sum |phi(p) - phi(g)| / 1000.

**Empty unknown region** (an all-known trimap): SAD, Grad and Conn are 0 (an
empty sum). MSE and MAD are defined as **0.0**, not NaN: the MATLAB code would
divide 0 by 0 (NaN), the Python ports add 1e-8 to the denominator (0). We follow
the ports so that dataset means stay defined; :func:`evaluate` reports the pixel
count (``"unknown_px"``) so such images can be recognised.
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
    "gaussian_derivative_kernels",
    "conn",
    "connectivity_levels",
    "evaluate",
    "metric_names",
]

#: The trimap value that marks the unknown region in the DIM evaluation code.
UNKNOWN = 128

#: Multiply a raw MSE by this to get the "MSE (x10^-3)" figure modern papers print.
MSE_DISPLAY_SCALE = 1e3

METRIC_MODES = ("unknown", "whole")
GRAD_NORMS = ("minmax", "255")

#: DIM ``gaussgradient`` parameters: sigma 1.4 and epsilon 1e-2 give a 9x9 kernel.
GRAD_SIGMA = 1.4
GRAD_EPSILON = 1e-2
#: Connectivity parameters of the DIM code: threshold step and the phi cut-off (inclusive).
CONN_STEP = 0.1
CONN_THETA = 0.15


# ----------------------------------------------------------------------------- inputs
def to_alpha(values: np.ndarray, *, name: str = "alpha") -> np.ndarray:
    """Convert an alpha matte to float64 ``HxW`` in [0, 1], exactly.

    ``uint8`` is divided by 255 and ``uint16`` by 65535 in float64 (so 8-bit 153
    becomes exactly the double nearest 0.6, as in MATLAB); ``bool`` becomes 0/1;
    floats are taken as they are and must lie in [0, 1]. An ``HxWxC`` array gives
    its channel 0.

    Raises:
        InputError: wrong number of dimensions, NaN, or float values outside [0, 1].
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
    """Boolean ``HxW`` mask of the DIM unknown region: ``trimap == 128`` exactly."""
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
    """Sum of absolute differences / 1000 over ``trimap == 128`` (whole image without a trimap)."""
    p, g, tri = _prepare(pred, gt, trimap)
    return float(_abs_err(p, g, _region(tri)).sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean squared error over ``trimap == 128`` (whole image without a trimap); raw, 0.0 if empty."""
    p, g, tri = _prepare(pred, gt, trimap)
    err = _abs_err(p, g, _region(tri))
    return float(np.mean(err * err)) if err.size else 0.0


def mad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean absolute difference over ``trimap == 128`` (whole image without a trimap); 0.0 if empty."""
    p, g, tri = _prepare(pred, gt, trimap)
    err = _abs_err(p, g, _region(tri))
    return float(np.mean(err)) if err.size else 0.0


# ----------------------------------------------------------------------------- Grad
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
    """The DIM ``gaussgradient`` x-kernel ``hx`` (9x9 for sigma 1.4), L2-normalised.

    ``hx[i, j] = gauss(i - h) * dgauss(j - h) / ||.||_2``: it differentiates along x
    (columns) and smooths along y; ``hy = hx.T``. The kernel is separable and its
    Frobenius norm is the product of the factors' norms, which is how
    :func:`gradient_magnitude` applies it.
    """
    g, d = _grad_factors(sigma, epsilon)
    return np.outer(g, d)


def gradient_magnitude(image: np.ndarray, sigma: float = GRAD_SIGMA) -> np.ndarray:
    """``sqrt(gx^2 + gy^2)`` of ``imfilter(image, hx|hy, 'replicate', 'conv')`` (float64).

    True convolution (the kernel is flipped) with replicated borders, done as two
    separable 1-D passes.
    """
    g, d = _grad_factors(sigma)
    img = np.ascontiguousarray(image, dtype=np.float64)
    # cv2 filters correlate; convolving flips the kernel: gauss is symmetric, dgauss changes sign.
    dk = np.ascontiguousarray(d[::-1])
    gx = cv2.sepFilter2D(img, cv2.CV_64F, dk, g, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.sepFilter2D(img, cv2.CV_64F, g, dk, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy)


def mat2gray(image: np.ndarray) -> np.ndarray:
    """MATLAB ``mat2gray``: rescale by the image's own min and max to [0, 1].

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
    """Gradient error / 1000 (DIM ``compute_gradient_loss`` + ``evaluate.m``).

    ``norm="minmax"`` (default, MATLAB-faithful) first rescales prediction and GT
    each by its own min and max (``mat2gray``); ``norm="255"`` uses the [0, 1]
    values as they are (the Python ports' ``/255``). The two agree whenever both
    images span the full range. Summed over ``trimap == 128``, or over the whole
    image without a trimap.

    Only the unknown region's bounding box grown by the kernel half-size is
    filtered; the values there are identical to filtering the whole image
    (mat2gray's min and max are still taken over the whole image).
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _grad(p, g, _region(tri), norm)


def gaussian_derivative_kernels(sigma: float = GRAD_SIGMA, truncate: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """The 1-D kernels of ``scipy.ndimage.gaussian_filter`` orders 0 and 1 (as convolution kernels).

    Radius ``int(truncate * sigma + 0.5)`` (6 for sigma 1.4: 13 taps); the order-0
    kernel sums to 1 and the order-1 kernel is ``-x / sigma^2`` times it.
    """
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k0 = np.exp(-0.5 / sigma**2 * x**2)
    k0 /= k0.sum()
    return k0, -x / sigma**2 * k0


def _grad_aim(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> float:
    k0, k1 = gaussian_derivative_kernels()
    k1c = np.ascontiguousarray(k1[::-1])  # convolution = correlation with the flipped kernel

    def magnitude(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x)
        # scipy's mode "reflect" (d c b a | a b c d | d c b a) is OpenCV's BORDER_REFLECT.
        gx = cv2.sepFilter2D(x, cv2.CV_64F, k1c, k0, borderType=cv2.BORDER_REFLECT)
        gy = cv2.sepFilter2D(x, cv2.CV_64F, k0, k1c, borderType=cv2.BORDER_REFLECT)
        return np.sqrt(gx * gx + gy * gy)

    diff = magnitude(p) - magnitude(g)
    if mask is not None:
        diff = diff[mask]
    return float(np.sum(diff * diff) / 10.0)


def grad_aim(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Gradient error as the AIM/GFM evaluation defines it (AIM-500 / AM-2k numbers).

    ``scipy.ndimage.gaussian_filter(x, 1.4, order=1)`` along each axis (13 taps,
    reflected borders; gain about 1 on a unit ramp, unlike the DIM kernel's 9.684)
    on the [0, 1] values without rescaling; the sum of squared magnitude
    differences is **divided by 10**, over the whole image (or over
    ``trimap == 128`` if a trimap is given).
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _grad_aim(p, g, _region(tri))


# ----------------------------------------------------------------------------- Conn
def _threshold_counts(x: np.ndarray, n_steps: int) -> np.ndarray:
    """uint8 count of thresholds ``i / n_steps`` (i = 1..n_steps) with ``x >= i / n_steps``.

    ``(pred >= t_i) & (gt >= t_i)`` is then ``min(counts_pred, counts_gt) >= i``.
    Each comparison is the exact float64 one (``i / n_steps`` is the double nearest
    the decimal threshold, so 8-bit 153/255 >= 0.6 holds, as in MATLAB).
    """
    counts = np.zeros(x.shape, np.uint8)
    for i in range(1, n_steps + 1):
        counts += x >= i / n_steps
    return counts


def _largest_label(binary: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected labels of a uint8 0/1 image with a foreground pixel, and the largest label.

    The background (label 0) is never chosen. Ties are broken as MATLAB's
    ``bwconncomp`` + ``max`` do: among equally large components, the one whose
    first pixel comes first in **column-major** order (leftmost column, then
    topmost row) wins.
    """
    n, labels = cv2.connectedComponents(binary, connectivity=4, ltype=cv2.CV_32S)
    areas = np.bincount(labels.ravel(), minlength=n)
    areas[0] = -1
    best = np.flatnonzero(areas == areas.max())
    if best.size == 1:
        return labels, int(best[0])
    column_major = np.ascontiguousarray(labels.T).ravel()
    hit = np.isin(column_major, best) if best.size > 8 else np.logical_or.reduce([column_major == b for b in best])
    return labels, int(column_major[int(np.argmax(hit))])


def connectivity_levels(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    step: float = CONN_STEP,
    empty: str = "matlab",
    region: np.ndarray | None = None,
) -> np.ndarray:
    """The ``l_map`` of the DIM connectivity error, at the ``region`` pixels.

    For thresholds ``t_i = i / 10`` (``i = 1..10`` for the default step; exact
    decimal thresholds, so 8-bit 153/255 counts as >= 0.6 as in MATLAB),
    ``omega_i`` is the largest 4-connected component of
    ``(pred >= t_i) & (gt >= t_i)`` over the whole image. A pixel's level is
    ``t_{i-1}`` for the first ``i`` whose ``omega_i`` does not contain it, or 1 if
    every ``omega_i`` contains it.

    ``empty`` says what an empty intersection does: ``"matlab"`` (the GCA copy of
    the official code: omega is empty, so every pixel still unassigned gets
    ``t_{i-1}``) or ``"skip"`` (the AIM/GFM code: the threshold is skipped).

    Args:
        pred, gt: float ``HxW`` in [0, 1].
        region: boolean ``HxW``; None means every pixel.

    Returns:
        float64 levels of the region's pixels in row-major order (``HxW`` when
        ``region`` is None).
    """
    if empty not in ("matlab", "skip"):
        raise UsageError(f"empty must be 'matlab' or 'skip', not {empty!r}")
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    n_steps = int(round(1.0 / step))
    if not math.isclose(n_steps * step, 1.0):
        raise UsageError(f"step must divide 1 (e.g. 0.1), not {step}")
    both = np.minimum(_threshold_counts(p, n_steps), _threshold_counts(g, n_steps))
    # counts[y, x] = the number of thresholds i whose omega_i (and all before it) contain
    # the pixel; the level is counts / n_steps. alive = the pixels in every omega so far,
    # stored over its bounding box, which only shrinks (omega_i lies in B_i, inside B_{i-1}).
    counts = np.zeros(p.shape, np.uint8)
    alive = np.ones(p.shape, bool)
    top, left = 0, 0
    for i in range(1, n_steps + 1):
        binary = (both >= i).view(np.uint8)
        x, y, w, h = cv2.boundingRect(binary)
        if w == 0 or h == 0:  # empty intersection
            if empty == "skip":  # every later one is empty too: survivors end at level 1
                ys, xs = slice(top, top + alive.shape[0]), slice(left, left + alive.shape[1])
                counts[ys, xs] += alive.view(np.uint8) * np.uint8(n_steps - i + 1)
            break
        labels, best = _largest_label(np.ascontiguousarray(binary[y : y + h, x : x + w]))
        alive = alive[y - top : y - top + h, x - left : x - left + w] & (labels == best)
        top, left = y, x
        ys, xs = slice(y, y + h), slice(x, x + w)
        counts[ys, xs] += alive.view(np.uint8)
        if region is not None and not (alive & region[ys, xs]).any():
            break  # every region pixel has its level
        if not alive.any():
            break
    chosen = counts if region is None else counts[region]
    return chosen.astype(np.float64) / n_steps


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
    """Connectivity error / 1000 (DIM ``compute_connectivity_error`` + ``evaluate.m``).

    Levels ``l`` from :func:`connectivity_levels` (components are found over the
    whole image, through known regions too); ``d = x - l``;
    ``phi = 1 - d * [d >= 0.15]`` (inclusive); the error is the sum of
    ``|phi(pred) - phi(gt)|`` over ``trimap == 128`` (whole image without a trimap).
    ``empty="skip"`` gives the AIM/GFM treatment of empty intersections.
    """
    p, g, tri = _prepare(pred, gt, trimap)
    return _conn(p, g, _region(tri), step, empty)


# ----------------------------------------------------------------------------- evaluate
def metric_names(mode: str, *, with_trimap: bool = True) -> list[str]:
    """The keys :func:`evaluate` returns in ``mode`` (besides the pixel counts)."""
    if mode == "unknown":
        return ["sad", "mse", "mad", "grad", "conn"]
    if mode == "whole":
        names = ["sad", "mse", "mad", "grad", "conn"]
        return names + (["sad_trans", "sad_fg", "sad_bg"] if with_trimap else [])
    raise UsageError(f"metric mode must be one of {', '.join(METRIC_MODES)}, not {mode!r}")


def evaluate(
    pred: np.ndarray,
    gt: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    mode: str = "unknown",
    grad_norm: str = "minmax",
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """All metrics for one image.

    Args:
        pred: predicted alpha, ``HxW`` float in [0, 1] or uint8/uint16.
        gt: ground-truth alpha, same shape and conventions.
        trimap: uint8 ``HxW``; required in ``"unknown"`` mode, optional in ``"whole"``.
            Used as is (only ``== 128`` is unknown): run :func:`normalize_trimap`
            first for trimaps with other grey levels.
        mode: ``"unknown"`` (DIM: SAD, MSE, MAD, Grad, Conn over ``trimap == 128``)
            or ``"whole"`` (AIM/GFM: SAD, MSE, MAD over the whole image, Grad as
            :func:`grad_aim`, Conn over the whole image with empty thresholds
            skipped; plus ``sad_trans`` / ``sad_fg`` / ``sad_bg`` over trimap 128 /
            255 / 0 when a trimap is given).
        grad_norm: ``"minmax"`` or ``"255"``, for the DIM Grad (``"unknown"`` mode).
        metrics: compute only these keys (default: all of the mode's).

    Returns:
        ``{"sad", "mse", "mad", "grad", "conn", ...}`` in the official units (MSE raw),
        plus ``"unknown_px"`` (pixels with trimap 128; in whole mode without a
        trimap, all pixels) and ``"pixels"`` (H*W).

    Raises:
        UsageError: unknown mode / normalisation, or ``"unknown"`` mode without a trimap.
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
    out: dict[str, float] = {}
    region = tri == UNKNOWN if mode == "unknown" else None
    err = np.abs(p[region] - g[region]) if region is not None else np.abs(p - g)
    if "sad" in wanted:
        out["sad"] = float(err.sum() / 1000.0)
    if "mse" in wanted:
        out["mse"] = float(np.mean(err * err)) if err.size else 0.0
    if "mad" in wanted:
        out["mad"] = float(np.mean(err)) if err.size else 0.0
    if mode == "unknown":
        if "grad" in wanted:
            out["grad"] = _grad(p, g, region, grad_norm)
        if "conn" in wanted:
            out["conn"] = _conn(p, g, region, CONN_STEP, "matlab")
        out["unknown_px"] = int(region.sum())
    else:
        if "grad" in wanted:
            out["grad"] = _grad_aim(p, g, None)
        if "conn" in wanted:
            out["conn"] = _conn(p, g, None, CONN_STEP, "skip")
        if tri is not None:
            for key, value in (("sad_trans", UNKNOWN), ("sad_fg", 255), ("sad_bg", 0)):
                if key in wanted:
                    out[key] = float(err[tri == value].sum() / 1000.0)
            out["unknown_px"] = int((tri == UNKNOWN).sum())
        else:
            out["unknown_px"] = int(p.size)
    out["pixels"] = int(p.size)
    return out
