"""Classical trimap-based matting that needs no weights: closed-form (Levin et al.) and KNN (``--method cf|knn``).

The solvers are pymatting's (``estimate_alpha_cf``, ``estimate_alpha_knn``); this module validates
inputs, handles the degenerate ones, converts pymatting's errors into ours and keeps its console
chatter off stdout.

Two strategies:

* ``whole``: one pymatting solve of the whole image (the official rule). Its memory grows with the
  image, not only with the unknown region: pymatting builds the Laplacian's arrays for every pixel
  (the spec's declared ``solve`` and ``unknown`` figures: cf ~0.4 KB per pixel plus ~2.6 KB per
  unknown pixel, knn ~3.7 KB per pixel), so a 33 MP photo would need 15-100 GB for cf and ~120 GB
  for knn.
* ``tiled``: the shared tiler (:mod:`mattecli.runtime.tiles`) cuts the image into tiles of
  ``tile_size`` px (default :data:`DEFAULT_TILE_SIZE`: a core of 1024 px for cf, 512 for knn, plus
  ``2 * tile_overlap``), neighbours overlapping by ``2 * tile_overlap``; every tile holding unknown
  pixels is solved on its box, and the solved tiles are blended with the tiler's raised-cosine
  weights: 0 over the outer ``tile_overlap / 2`` px of a side shared with a neighbour, then a ramp
  over ``tile_overlap`` px. While a box's unknown pixels have no known foreground or no known
  background within 2 px (cf's window reach; without it pymatting's CG breaks down on a zero
  right-hand side), the solved crop grows beyond the box: first towards the nearest 16-px block
  that holds such anchors, then, should that not do, by doubling its margin up to the whole image.
  Tiles without unknown pixels are not solved (the trimap is their answer), and known pixels stay
  exactly 0/1. KNN's spatial feature weights are rescaled by the crop's size relative to the image,
  since pymatting normalises coordinates by the solved image's size. Peak memory is bounded by the
  tile plus a few full-size planes, unless a crop must grow far to reach anchors.

``auto`` (default) solves whole when the declared figures of the whole solve fit the run's budget
(``--max-memory``, else the default plan: :mod:`mattecli.runtime.memory`), else tiled: the same
choice for the same image and trimap on every machine. The tiled solve differs from the whole one
where the unknown region is wide and its anchors far away; ``bench/RESULTS.md`` ("Classical
tiling") has the measurements behind the default tile sizes and halo.
"""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np

from mattecli.errors import BadOptionError, TrimapError
from mattecli.trimap import clamp_known

__all__ = [
    "CLASSICAL_METHODS",
    "DEFAULT_TILE_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "STRATEGIES",
    "ClassicalProcessor",
    "choose_strategy",
    "estimate_alpha",
    "trivial_alpha",
    "whole_solve_bytes",
    "load",
]

#: name -> pymatting function name
CLASSICAL_METHODS: dict[str, str] = {"cf": "estimate_alpha_cf", "knn": "estimate_alpha_knn"}

#: "auto" (also None): whole if its estimated peak memory fits ``max_memory``, else tiled
STRATEGIES: tuple[str, ...] = ("auto", "whole", "tiled")

#: halo on each side of a tile's core: neighbouring tiles overlap by twice this (the outer half of
#: it discarded, the inner half blended)
DEFAULT_TILE_OVERLAP = 128
#: tile side in pixels per method: a core (see the module docstring for the measurements behind
#: them: 1024 px for cf, 512 for knn) plus its halo on both sides; halved while a fully unknown tile
#: would not fit the memory budget
DEFAULT_TILE_SIZE: dict[str, int] = {"cf": 1024 + 2 * DEFAULT_TILE_OVERLAP, "knn": 512 + 2 * DEFAULT_TILE_OVERLAP}
#: tiles are never shrunk below this side to fit the budget
MIN_TILE_SIZE = 64
#: pixels a tile must keep between its halos (``--tile-size >= 2 * --tile-overlap + MIN_CORE``)
MIN_CORE = 32


def _validate(image: np.ndarray, trimap: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3, got shape {image.shape}")
    if trimap.shape != image.shape[:2]:
        raise TrimapError(
            f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}"
        )


def trivial_alpha(trimap: np.ndarray) -> np.ndarray | None:
    """The alpha of a trimap that needs no solve, or None when one is needed.

    * no unknown pixel: the trimap itself (``trimap / 255``), whatever it holds;
    * unknown pixels but only one kind of known pixel: that value everywhere. Both
      energies (closed-form's and KNN's Laplacian, plus the known-pixel penalty) are
      zero for a constant alpha, so with only background known (only foreground) the
      unique minimum is 0 (1) everywhere: what a solver would converge to, exactly.

    Raises:
        TrimapError: every pixel unknown: nothing fixes alpha (any constant is a minimum).
    """
    unknown = (trimap > 0) & (trimap < 255)
    if not unknown.any():
        return (trimap == 255).astype(np.float32)
    has_fg, has_bg = bool((trimap == 255).any()), bool((trimap == 0).any())
    if has_fg and has_bg:
        return None
    if not has_fg and not has_bg:
        raise TrimapError(
            "trimap has no known pixel: every pixel is unknown, so nothing fixes the matte",
            hint="mark some certain foreground (white, 255) and background (black, 0)",
        )
    return np.full(trimap.shape, 1.0 if has_fg else 0.0, np.float32)


def whole_solve_bytes(method: str, pixels: int, unknown: int) -> int:
    """Declared peak bytes one pymatting solve adds over ``pixels`` pixels, ``unknown`` of them unknown
    (the spec's ``solve`` and ``unknown`` figures)."""
    figures = _footprint(method).passes
    return int(figures["solve"] * pixels + figures["unknown"] * unknown)


def _footprint(method: str):
    from mattecli.methods.classical.spec import CF, KNN

    return {"cf": CF, "knn": KNN}[method].footprint


def _executor(method: str, strategy: str | None, tile_overlap: int, max_memory: int | None):
    """An executor for a standalone call: the method's declared figures against ``max_memory`` (or the
    default budget), tiles of the shared tiler's geometry."""
    from mattecli.runtime.executor import Executor, TilePolicy
    from mattecli.runtime.memory import MemoryPlan, resolve_budget

    tiles = TilePolicy(stride=1, halo=tile_overlap // 2, blend=tile_overlap)
    memory = MemoryPlan(_footprint(method), resolve_budget(max_memory))
    return Executor("cpu", strategy or "auto", tiles, memory)


def _unknown_count(trimap: np.ndarray) -> int:
    return int(np.count_nonzero((trimap > 0) & (trimap < 255)))


def choose_strategy(method: str, trimap: np.ndarray, max_memory: int | None = None) -> str:
    """``"whole"`` if the whole solve's declared figures fit under ``max_memory`` (bytes; default the
    default budget of :mod:`mattecli.runtime.memory`), else ``"tiled"``."""
    executor = _executor(method, "auto", DEFAULT_TILE_OVERLAP, max_memory)
    executor.begin(trimap.size)
    extra = _footprint(method).passes["unknown"] * _unknown_count(trimap)
    return "whole" if executor.fits("solve", trimap.size, extra=extra) else "tiled"


#: closed-form matting's windows are 3x3: a thinner image has none (its Laplacian is zero)
_CF_MIN_SIDE = 3
#: absolute residual at which pymatting's CG stops (see _solve): only an exactly zero system gets there
_CG_ATOL = 1e-20


def _solve(func, method: str, image: np.ndarray, trimap: np.ndarray, **kwargs) -> np.ndarray:
    """One pymatting solve; ``trimap`` is uint8 (0 background, 255 foreground, anything else unknown).

    Degenerate crops are handled first: one needing no solve gets :func:`trivial_alpha`; cf on
    an image thinner than its 3x3 windows (1xN, Nx1, 2xN strips) is solved on the image with
    its edge rows/columns repeated to 3 px (a repeated row carries the same colours, so the
    windows see the strip's own colour lines) and cropped back; knn on fewer pixels than its
    20 + 10 neighbours asks for as many neighbours as there are pixels.
    """
    trivial = trivial_alpha(trimap)
    if trivial is not None:
        return trivial
    h, w = trimap.shape
    pads = None
    if method == "cf" and min(h, w) < _CF_MIN_SIDE:
        dy, dx = max(0, _CF_MIN_SIDE - h), max(0, _CF_MIN_SIDE - w)
        pads = ((dy // 2, dy - dy // 2), (dx // 2, dx - dx // 2))
        image = np.pad(image, (*pads, (0, 0)), mode="edge")
        trimap = np.pad(trimap, pads, mode="edge")
    if method == "knn" and h * w <= max(_KNN_NEIGHBORS):
        lap = dict(kwargs.get("laplacian_kwargs") or {})
        lap["n_neighbors"] = [min(k, h * w) for k in _KNN_NEIGHBORS]
        kwargs = {**kwargs, "laplacian_kwargs": lap}
    # An unknown region that touches only background (its foreground lies elsewhere) gives cf's
    # reduced system a zero right-hand side: its solution is 0, but pymatting's CG, which stops
    # only on a residual below rtol * |b| = 0, divides 0 by 0 instead. A tiny absolute tolerance
    # stops it at once there and is never reached otherwise.
    kwargs = {**kwargs, "cg_kwargs": {"atol": _CG_ATOL, **(kwargs.get("cg_kwargs") or {})}}
    tri = np.full(trimap.shape, 0.5)
    tri[trimap == 0] = 0.0
    tri[trimap == 255] = 1.0
    try:
        # pymatting prints a "PERFORMANCE WARNING" to stdout when its preconditioner
        # needs a retry with a diagonal shift; the solve still succeeds. Keep stdout
        # clean for --json consumers, and numpy's floating-point warnings off stderr.
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
            alpha = func(np.asarray(image, dtype=np.float64), tri, **kwargs)
    except ValueError as err:  # pymatting's own trimap checks
        raise TrimapError(f"{method} matting failed: {err}") from err
    alpha = np.nan_to_num(np.clip(alpha, 0.0, 1.0), nan=0.5).astype(np.float32)
    if pads is not None:
        (top, _), (left, _) = pads
        alpha = np.ascontiguousarray(alpha[top : top + h, left : left + w])
    return alpha


def _tile_size_for(method: str, tile: int, room: float | None, overlap: int = 0) -> int:
    """Halve the default tile until a fully unknown tile's declared solve fits ``room`` bytes (never below
    :data:`MIN_TILE_SIZE`, nor below what the tile overlap needs)."""
    low = max(MIN_TILE_SIZE, 2 * overlap + MIN_CORE)
    while room is not None and tile > low and whole_solve_bytes(method, tile * tile, tile * tile) > room:
        tile //= 2
    return max(tile, low)


#: pymatting's knn_laplacian default distance weights (features: r, g, b, weight * x / width, weight * y / height)
_KNN_DISTANCE_WEIGHTS = (2.0, 0.1)
#: and its default neighbour counts, one per distance weight
_KNN_NEIGHBORS = (20, 10)


def _crop_kwargs(method: str, crop: tuple[int, int], full: tuple[int, int]) -> dict:
    """Solver arguments for a crop so that it sees the image as the whole solve does.

    KNN's spatial features are coordinates normalised by the solved image's size,
    so a crop would weigh distance (full / crop) times more than the whole solve;
    scale the distance weights by the crop's relative size (geometric mean of the
    two axes) to keep one pixel step as heavy as in the whole image.
    """
    if method != "knn":
        return {}
    s = math.sqrt(max(crop[0] - 1, 1) / max(full[0] - 1, 1) * max(crop[1] - 1, 1) / max(full[1] - 1, 1))
    return {"laplacian_kwargs": {"distance_weights": [d * s for d in _KNN_DISTANCE_WEIGHTS]}}


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a ``(2 r + 1)`` square (separable, numpy only)."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        n = out.shape[axis]
        for d in range(1, min(r, n - 1) + 1):
            lo, hi = [slice(None)] * 2, [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            grown[tuple(lo)] |= out[tuple(hi)]
            grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


def _anchors(trimap: np.ndarray, unknown: np.ndarray) -> tuple[bool, bool]:
    """Whether known foreground / known background pixels lie within 2 px of unknown ones.

    Closed-form's 3x3 windows couple pixels up to 2 px apart: without foreground
    (background) in that reach the crop's system has a zero right-hand side (all
    zero or all one) and pymatting's CG breaks down, even if the crop holds
    foreground (background) elsewhere.
    """
    near = _dilate(unknown, 2)
    return bool((near & (trimap == 255)).any()), bool((near & (trimap == 0)).any())


#: side of the blocks of the coarse anchor maps that direct a crop's growth
_ANCHOR_BLOCK = 16


def _anchor_blocks(trimap: np.ndarray, unknown: np.ndarray) -> list[np.ndarray]:
    """Pixel boxes ``(n, 4)`` (y0, y1, x0, x1) of the blocks holding anchors: [foreground, background].

    An anchor is a known pixel within 2 px of an unknown one (see ``_anchors``).
    """
    b = _ANCHOR_BLOCK
    h, w = trimap.shape
    near = _dilate(unknown, 2)
    boxes = []
    for value in (255, 0):
        anchor = np.zeros((-(-h // b) * b, -(-w // b) * b), bool)
        np.logical_and(near, trimap == value, out=anchor[:h, :w])
        by, bx = np.nonzero(anchor.reshape(anchor.shape[0] // b, b, anchor.shape[1] // b, b).any(axis=(1, 3)))
        boxes.append(np.stack([by * b, np.minimum(by * b + b, h), bx * b, np.minimum(bx * b + b, w)], axis=1))
    return boxes


def _reach(box: tuple[int, int, int, int], core: tuple[int, int, int, int], blocks: np.ndarray, margin: int, shape):
    """``box`` grown to hold the anchor block nearest to ``core``, plus ``margin`` px around it."""
    if not len(blocks):
        return box
    y0, y1, x0, x1 = core
    dy = np.maximum(0, np.maximum(y0 - blocks[:, 1], blocks[:, 0] - y1))
    dx = np.maximum(0, np.maximum(x0 - blocks[:, 3], blocks[:, 2] - x1))
    by0, by1, bx0, bx1 = blocks[np.argmin(dy * dy + dx * dx)].tolist()
    return (
        max(min(box[0], by0 - margin), 0),
        min(max(box[1], by1 + margin), shape[0]),
        max(min(box[2], bx0 - margin), 0),
        min(max(box[3], bx1 + margin), shape[1]),
    )


def _crop_box(box, margin: int, trimap: np.ndarray, unknown: np.ndarray, blocks) -> tuple[int, int, int, int]:
    """The crop solved for a tile ``box``: the box itself, grown until its unknown pixels are anchored.

    A crop missing foreground (background) anchors first stretches towards the nearest block that
    has them, plus ``margin`` px (so its memory grows with that distance, in one direction);
    should that not do, it grows by a doubling margin up to the whole image. ``blocks`` is a
    one-element list caching ``_anchor_blocks`` (computed on first use).
    """
    h, w = trimap.shape
    y0, y1, x0, x1 = box

    def grown(halo):
        return max(y0 - halo, 0), min(y1 + halo, h), max(x0 - halo, 0), min(x1 + halo, w)

    def anchors(b):
        return _anchors(trimap[b[0] : b[1], b[2] : b[3]], unknown[b[0] : b[1], b[2] : b[3]])

    found = anchors(box)
    if all(found):
        return box
    if not blocks:
        blocks.append(_anchor_blocks(trimap, unknown))
    for ok, boxes in zip(found, blocks[0], strict=True):
        if not ok:
            box = _reach(box, box, boxes, max(margin, 2), (h, w))
    halo = max(margin, 8)
    while not all(anchors(box)) and box != (0, h, 0, w):
        halo = max(2 * halo, 16)
        g = grown(halo)
        box = (min(box[0], g[0]), max(box[1], g[1]), min(box[2], g[2]), max(box[3], g[3]))
    return box


def _solve_tiled(func, method: str, image: np.ndarray, trimap: np.ndarray, policy, tile: int):
    """``(alpha, tiles solved)``: every tile holding unknown pixels solved (on its anchored crop) and
    blended by the shared tiler."""
    from mattecli.runtime.tiles import blend_boxes, tile_boxes

    h, w = trimap.shape
    unknown = (trimap > 0) & (trimap < 255)
    blocks: list = []  # the coarse anchor maps, computed when a crop first needs to grow
    overlap = 2 * policy.halo + policy.blend

    def solve(box):
        cy0, cy1, cx0, cx1 = _crop_box(box, policy.halo, trimap, unknown, blocks)
        crop = trimap[cy0:cy1, cx0:cx1]
        alpha = _solve(func, method, image[cy0:cy1, cx0:cx1], crop, **_crop_kwargs(method, crop.shape, (h, w)))
        y0, y1, x0, x1 = box
        return alpha[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]

    boxes = [b for b in tile_boxes(h, w, tile, overlap) if unknown[b[0] : b[1], b[2] : b[3]].any()]
    # every unknown pixel lies where some solved tile has a positive weight
    return blend_boxes(h, w, boxes, solve, halo=policy.halo, blend=policy.blend), len(boxes)


def estimate_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    method: str = "cf",
    *,
    strategy: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    max_memory: int | None = None,
    executor=None,
) -> np.ndarray:
    """Solve for alpha with a classical method.

    Args:
        image: float32/float64 ``HxWx3`` RGB in [0, 1].
        trimap: uint8 ``HxW`` in {0, 128, 255} (anything strictly between is unknown).
        method: ``"cf"`` (closed-form) or ``"knn"``.
        strategy: ``"whole"`` (one solve), ``"tiled"``, or ``"auto"`` / None: whole if
            its estimated peak memory fits ``max_memory``, else tiled.
        tile_size: tile side in px for the tiled strategy (default ``DEFAULT_TILE_SIZE``,
            halved while a tile would not fit the budget).
        tile_overlap: halo around each tile's core, px (default ``DEFAULT_TILE_OVERLAP``):
            neighbouring tiles overlap by twice this, blended over its inner half.
        max_memory: a bound on the process's peak memory, bytes (default: the default budget of
            :mod:`mattecli.runtime.memory`, the same on every machine of 16 GB or more).
        executor: the :class:`~mattecli.runtime.executor.Executor` of a loaded method, already begun
            on this image (it plans and records); None: one made from ``strategy`` / ``max_memory``.

    Returns:
        float32 ``HxW`` alpha in [0, 1], exactly 0/1 in the known regions.

    Degenerate inputs get their obvious answer, never a solver failure: a trimap with no
    unknown pixel is its own alpha, one with only background (foreground) known gives 0 (1)
    everywhere (see :func:`trivial_alpha`), and images too thin or too small for the solver
    (1x1, 1xN, Nx1, 2xN) are solved as :func:`_solve` describes.

    Raises:
        TrimapError: wrong size, or every pixel unknown.
        BadOptionError: unknown strategy, a tile size / overlap out of range, or a ``max_memory`` that
            cannot hold even the smallest tile (the message names the least that works).
    """
    import pymatting

    if method not in CLASSICAL_METHODS:
        raise ValueError(f"unknown classical method {method!r}")
    if strategy is not None and strategy not in STRATEGIES:
        raise BadOptionError(f"{method} strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if tile_overlap is not None and tile_overlap < 0:
        raise BadOptionError(f"tile overlap must be >= 0, not {tile_overlap}")
    overlap = DEFAULT_TILE_OVERLAP if tile_overlap is None else int(tile_overlap)
    if tile_size is not None and tile_size < 2 * overlap + MIN_CORE:
        raise BadOptionError(
            f"tile size {tile_size} is too small for a {overlap} px tile overlap: "
            f"give at least {2 * overlap + MIN_CORE}"
        )
    _validate(image, trimap)
    trivial = trivial_alpha(trimap)
    if trivial is not None:  # nothing to solve (see trivial_alpha)
        return trivial
    if executor is None:
        executor = _executor(method, strategy, overlap, max_memory)
        executor.begin(trimap.size)
    func = getattr(pymatting, CLASSICAL_METHODS[method])
    per_unknown = _footprint(method).passes["unknown"]

    def tiled():
        room = executor.room()
        tile = (
            int(tile_size)
            if tile_size is not None
            else _tile_size_for(method, DEFAULT_TILE_SIZE[method], room, overlap)
        )
        need = whole_solve_bytes(method, tile * tile, tile * tile)
        if room is not None and need > room and executor.memory.budget.capped:
            executor.refuse("solve", tile * tile, f"{method} solve", extra=per_unknown * tile * tile)
        alpha, count = _solve_tiled(func, method, image, trimap, executor.tiles_policy, tile)
        executor.note(tile=[tile, tile], tiles=count, batch=1)
        return alpha

    alpha = executor.run(
        "solve",
        whole=lambda: _solve(func, method, image, trimap),
        tiled=tiled,
        pixels=trimap.size,
        what=f"{method} solve",
        extra=per_unknown * _unknown_count(trimap),
    )
    return clamp_known(alpha, trimap)


class ClassicalProcessor:
    """A pymatting solver run by the shared executor (needs a trimap; no weights, CPU only)."""

    def __init__(self, method: str, resolved):
        from mattecli.methods.base import Provenance
        from mattecli.runtime.executor import Executor, TilePolicy
        from mattecli.runtime.memory import MemoryPlan

        self.method = method
        e = resolved.engine
        self.tile_size = e.tile_size
        self.tile_overlap = resolved.halo
        tiles = TilePolicy(stride=1, halo=resolved.halo // 2, blend=resolved.halo)
        memory = MemoryPlan(resolved.footprint, resolved.budget, strategy=resolved.strategy)
        self.executor = Executor("cpu", resolved.strategy, tiles, memory)
        self.provenance = Provenance(method, device="cpu", budget=resolved.budget.to_json())

    def process(self, image: np.ndarray, trimap: np.ndarray | None, *, extras: bool = False):
        from mattecli.methods.base import Prediction

        if trimap is None:
            raise TrimapError(f"method {self.method} needs a trimap", hint="pass --trimap FILE_OR_FOLDER")
        if trivial_alpha(trimap) is not None:
            self.executor.note(strategy="whole")
        alpha = estimate_alpha(
            image,
            trimap,
            self.method,
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            executor=self.executor,
        )
        return Prediction(alpha)


def load(resolved) -> ClassicalProcessor:
    """The spec's ``load`` (nothing to load: the solver runs in the process)."""
    return ClassicalProcessor(resolved.spec.name, resolved)
