"""The gradient error (Grad) in its two published conventions.

:func:`grad` is the Deep Image Matting authors' MATLAB ``compute_gradient_loss.m`` as ``evaluate.m``
calls it (Ning Xu, 2018; distributed by the Deep Image Matting authors, not in a public repository,
so there is no commit to cite): each matte rescaled by its own min and max (``mat2gray``; ``norm="255"``
keeps the [0, 1] values, as the Python ports do), filtered with the 9x9 ``gaussgradient`` kernel
(sigma 1.4, epsilon 1e-2, L2-normalised, replicated borders, a true convolution), and
``sum((|grad p| - |grad g|)^2) / 1000`` over ``trimap == 128``, in float64.

:func:`grad_aim` is ``compute_gradient_whole_image`` of the AIM authors' ``core/evaluate.py``
(github.com/JizhiziLi/AIM, commit 48e3dc8): ``scipy.ndimage.gaussian_filter`` (sigma 1.4, order 1,
13 taps, reflected borders) on the [0, 1] values with float32 outputs, and the float32 sum of the
squared differences divided by 10.

Inputs are mattes as :func:`mattecli.benchmark.metric_inputs.to_alpha` reads them and uint8 trimaps;
results are floats in those units. Errors: :class:`~mattecli.errors.UsageError` for an unknown
``norm``; :class:`~mattecli.errors.InputError` / :class:`~mattecli.errors.TrimapError` for bad inputs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mattecli.benchmark.metric_inputs import prepare, region
from mattecli.errors import UsageError

__all__ = [
    "GRAD_NORMS",
    "GRAD_SIGMA",
    "GRAD_EPSILON",
    "gauss_gradient_kernel",
    "gradient_magnitude",
    "mat2gray",
    "grad",
    "grad_aim",
    "grad_error",
    "grad_aim_error",
]

GRAD_NORMS = ("minmax", "255")
#: DIM ``gaussgradient`` parameters: sigma 1.4 and epsilon 1e-2 give a 9x9 kernel.
GRAD_SIGMA = 1.4
GRAD_EPSILON = 1e-2


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


def grad_error(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None, norm: str) -> float:
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
    p, g, tri = prepare(pred, gt, trimap)
    return grad_error(p, g, region(tri), norm)


def grad_aim_error(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> float:
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
    p, g, tri = prepare(pred, gt, trimap)
    return grad_aim_error(p, g, region(tri))
