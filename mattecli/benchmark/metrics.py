"""Alpha-matting error metrics (SAD, MSE, MAD, Grad, Conn) in the two published conventions.

A dataset names its convention (:attr:`mattecli.benchmark.samples.Dataset.metric_mode`) and
:func:`evaluate` scores one image in it:

``"unknown"``: the Deep Image Matting (DIM) MATLAB evaluation
    (``evaluate.m``, ``compute_sad_loss.m``, ``compute_mse_loss.m``, ``compute_gradient_loss.m``,
    ``compute_connectivity_error.m``, Ning Xu, 2018; distributed by the DIM authors, not in a public
    repository, so there is no commit to cite). Composition-1k, Distinctions-646, SIMD,
    folders with trimaps. Errors are summed or averaged over the **unknown region only, the
    pixels whose trimap value is exactly 128** (``trimap == 128``, not a range); known pixels are
    never checked. Trimaps that mark "unknown" with another grey level (pymatting's 102,
    anti-aliased edges) must first go through :func:`normalize_trimap`. Grad uses the DIM 9x9
    Gaussian-derivative kernel after ``mat2gray`` (:func:`grad`, :mod:`mattecli.benchmark.gradient_error`),
    Conn the exact decimal thresholds ``i / 10`` (:func:`conn`, :mod:`mattecli.benchmark.connectivity_error`).

``"whole"``: the AIM authors' Python evaluation
    (github.com/JizhiziLi/AIM, commit 48e3dc8, ``core/evaluate.py`` as ``core/test.py`` calls it).
    AIM-500 and AM-2k (the same authors' test sets), folders without trimaps.
    SAD, MSE and MAD over the whole image, Grad as :func:`grad_aim`, Conn as :func:`conn_aim`,
    and, when a trimap is given, ``sad_trans`` / ``sad_fg`` / ``sad_bg``.

This module is the metrics' one entry point: it re-exports the inputs
(:mod:`mattecli.benchmark.metric_inputs`), Grad and Conn beside SAD, MSE, MAD and :func:`evaluate`.

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

Errors: :class:`~mattecli.errors.UsageError` for an unknown mode, normalisation or metric name;
:class:`~mattecli.errors.InputError` / :class:`~mattecli.errors.TrimapError` for mattes and trimaps
of the wrong shape, dtype or range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mattecli.benchmark.connectivity_error import (
    AIM_CONN_THRESHOLDS,
    CONN_STEP,
    DIM_CONN_THRESHOLDS,
    conn,
    conn_aim,
    conn_aim_error,
    conn_error,
    connectivity_levels,
    connectivity_levels_aim,
)
from mattecli.benchmark.gradient_error import (
    GRAD_NORMS,
    gauss_gradient_kernel,
    grad,
    grad_aim,
    grad_aim_error,
    grad_error,
    gradient_magnitude,
    mat2gray,
)
from mattecli.benchmark.metric_inputs import UNKNOWN, normalize_trimap, prepare, region, to_alpha, unknown_mask
from mattecli.errors import UsageError

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

#: Multiply a raw MSE by this to get the "MSE (x10^-3)" figure modern papers print.
MSE_DISPLAY_SCALE = 1e3

#: ``"unknown"``: the DIM MATLAB convention; ``"whole"``: the AIM authors' Python convention.
METRIC_MODES = ("unknown", "whole")


# ----------------------------------------------------------------------------- SAD / MSE / MAD
def _abs_err(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return np.abs(p - g) if mask is None else np.abs(p[mask] - g[mask])


def sad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Sum of absolute differences / 1000 over ``trimap == 128`` (the whole image without a trimap).

    Inputs as :func:`to_alpha` reads them; the trimap uint8 ``HxW``. Both conventions agree.
    """
    p, g, tri = prepare(pred, gt, trimap)
    return float(_abs_err(p, g, region(tri)).sum() / 1000.0)


def mse(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean squared error over ``trimap == 128`` (the whole image without a trimap); raw, 0.0 if empty."""
    p, g, tri = prepare(pred, gt, trimap)
    err = _abs_err(p, g, region(tri))
    return float(np.mean(err * err)) if err.size else 0.0


def mad(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray | None = None) -> float:
    """Mean absolute difference over ``trimap == 128`` (the whole image without a trimap); 0.0 if empty."""
    p, g, tri = prepare(pred, gt, trimap)
    err = _abs_err(p, g, region(tri))
    return float(np.mean(err)) if err.size else 0.0


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
    unknown = tri == UNKNOWN
    err = np.abs(p[unknown] - g[unknown])
    out: dict[str, float] = {}
    if "sad" in wanted:
        out["sad"] = float(err.sum() / 1000.0)
    if "mse" in wanted:
        out["mse"] = float(np.mean(err * err)) if err.size else 0.0
    if "mad" in wanted:
        out["mad"] = float(np.mean(err)) if err.size else 0.0
    if "grad" in wanted:
        out["grad"] = grad_error(p, g, unknown, grad_norm)
    if "conn" in wanted:
        out["conn"] = conn_error(p, g, unknown, CONN_STEP, "matlab")
    out["unknown_px"] = int(unknown.sum())
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
        out["grad"] = grad_aim_error(p, g, None)
    if "conn" in wanted:
        out["conn"] = conn_aim_error(p, g, None)
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
    p, g, tri = prepare(pred, gt, trimap)
    wanted = metric_names(mode, with_trimap=tri is not None)
    if metrics is not None:
        bad = [m for m in metrics if m not in wanted]
        if bad:
            raise UsageError(f"unknown metric(s) {', '.join(bad)} for mode {mode!r}; known: {', '.join(wanted)}")
        wanted = list(metrics)
    out = _evaluate_dim(p, g, tri, wanted, grad_norm) if mode == "unknown" else _evaluate_aim(p, g, tri, wanted)
    out["pixels"] = int(p.size)
    return out
