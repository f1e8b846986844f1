"""The connectivity error (Conn) in its two published conventions.

:func:`conn` is the Deep Image Matting authors' MATLAB ``compute_connectivity_error.m`` as
``evaluate.m`` calls it (Ning Xu, 2018; distributed by the Deep Image Matting authors, not in a public
repository, so there is no commit to cite): thresholds the exact decimals ``i / 10`` (8-bit 153 is
>= 0.6), ``omega_i`` the largest 4-connected component of ``(pred >= t_i) & (gt >= t_i)`` over the
whole image (equal sizes: the first in column-major order, as ``bwconncomp`` numbers them), an empty
intersection ends every pixel still counting, float64 levels.

:func:`conn_aim` is ``compute_connectivity_loss_whole_image`` of the AIM authors'
``core/evaluate.py`` (github.com/JizhiziLi/AIM, commit 48e3dc8): thresholds
``np.arange(0, 1.1, 0.1)`` (whose 7th value is 0.6000000000000001, so 8-bit 153 is below it), ties
in row-major order (scikit-image's ``label`` + ``np.argmax``), empty intersections skipped, levels
stored as float32.

Both: ``d = x - l``, ``phi = 1 - d * [d >= 0.15]``, error ``sum |phi(pred) - phi(gt)| / 1000`` over
``trimap == 128`` (DIM) or the whole image (AIM). Inputs are mattes as
:func:`mattecli.benchmark.metric_inputs.to_alpha` reads them and uint8 trimaps. Errors:
:class:`~mattecli.errors.UsageError` for a bad ``empty`` or ``step``;
:class:`~mattecli.errors.InputError` / :class:`~mattecli.errors.TrimapError` for bad inputs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mattecli.benchmark.metric_inputs import prepare, region
from mattecli.errors import UsageError

__all__ = [
    "CONN_STEP",
    "CONN_THETA",
    "DIM_CONN_THRESHOLDS",
    "AIM_CONN_THRESHOLDS",
    "connectivity_levels",
    "connectivity_levels_aim",
    "conn",
    "conn_aim",
    "conn_error",
    "conn_aim_error",
]

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


def conn_error(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None, step: float, empty: str) -> float:
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
    p, g, tri = prepare(pred, gt, trimap)
    return conn_error(p, g, region(tri), step, empty)


def conn_aim_error(p: np.ndarray, g: np.ndarray, mask: np.ndarray | None) -> float:
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
    p, g, tri = prepare(pred, gt, trimap)
    return conn_aim_error(p, g, region(tri))
