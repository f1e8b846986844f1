"""Tiled inference for dense-prediction networks, and replay of their global context.

Large images are cut into overlapping tiles. Each tile is run with a *halo*: a margin
of ``halo`` pixels on every side that borders another tile, whose outputs are thrown
away because the network saw a zero-padded (not the true) neighbourhood there. Next
to the halo, ``blend`` pixels ramp in with a raised cosine, so where neighbouring
tiles disagree slightly the seam fades instead of stepping. Sides on the image border
keep full weight (the whole-image pass sees the same border there). Neighbouring
tiles therefore overlap by ``2 * halo + blend`` pixels, and the normalised weights of
all tiles covering a pixel sum to one.

All tiles of an image have one size, so they batch. A planned tile is bounded by its
pixels (memory grows with them), its shape follows the image (:func:`area_tile_shape`:
the layout that runs the fewest pixels, overlaps included).

Tile origins are multiples of the network's ``stride``, so every tile sees the same
down-sampling grid as the whole image: with a halo as wide as the network's receptive
field and global statistics taken from the whole image (:class:`GlobalContext`), tiled
and whole-image outputs agree to floating-point rounding. With narrower halos (the
practical ones: receptive fields of deep backbones are hundreds of pixels wide) they
agree to a tolerance that ``bench/speed.py`` measures per method.

:func:`blend_boxes` is the one blender: deep methods reach it through :func:`tiled_apply`
(batched tensors, out-of-memory retries), classical solvers directly (numpy crops).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from mattecli.errors import DeviceError
from mattecli.runtime.device import empty_cache, is_oom

__all__ = [
    "Box",
    "tile_starts",
    "balanced_tile",
    "tile_boxes",
    "area_tile_shape",
    "needed_cells",
    "axis_weight",
    "tile_weight",
    "blend_window",
    "blend_boxes",
    "plan_tiles",
    "tiled_apply",
    "tiled_apply_safe",
    "resize_crop",
]

Box = tuple[int, int, int, int]  # y0, y1, x0, x1


# ----------------------------------------------------------------------------- layout
def tile_starts(length: int, tile: int, overlap: int, stride: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)``, neighbours sharing ``>= overlap`` px.

    Steps are multiples of ``stride``; when ``length`` and ``tile`` are too, every start
    is (the last tile is aligned to the end, so all tiles lie inside when ``length >= tile``).
    """
    if length <= tile:
        return [0]
    step = max(stride, (tile - overlap) // stride * stride)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def balanced_tile(length: int, tile: int, overlap: int, stride: int = 1) -> int:
    """The smallest tile side (a multiple of ``stride``, at most ``tile``) that covers ``length`` with as
    few tiles as ``tile`` needs: an 1155 px axis takes two 672 px tiles, not two 1024 px ones."""
    if length <= tile:
        return length
    n = -(-(length - overlap) // max(1, tile - overlap))
    need = -(-(length + (n - 1) * overlap) // n)
    need += (-need) % stride
    return min(tile, max(need, overlap + stride))


def _side_for(length: int, n: int, overlap: int, stride: int) -> int:
    """The smallest stride-aligned side that covers ``length`` with ``n`` tiles overlapping by ``overlap``."""
    if n <= 1:
        return length
    need = max(-(-(length + (n - 1) * overlap) // n), overlap + stride)
    return need + (-need) % stride


def _count(length: int, tile: int, overlap: int, stride: int) -> int:
    """``len(tile_starts(length, tile, overlap, stride))`` without building the list."""
    if length <= tile:
        return 1
    step = max(stride, (tile - overlap) // stride * stride)
    return -(-(length - tile) // step) + 1


def needed_cells(h: int, w: int, skip: Callable[[int, int, int, int], bool], cell: int) -> np.ndarray:
    """bool ``(ceil(h / cell), ceil(w / cell))``: the cells of an ``h x w`` image that ``skip`` does not
    rule out. ``skip`` must be a "nothing to do in this box" test (true for a box when true for every
    part of it), as all the methods' are: no unknown pixel, no unknown probability."""
    rows, cols = -(-h // cell), -(-w // cell)
    grid = np.zeros((rows, cols), bool)
    for i in range(rows):
        for j in range(cols):
            grid[i, j] = not skip(i * cell, min(h, (i + 1) * cell), j * cell, min(w, (j + 1) * cell))
    return grid


def _sides(length: int, overlap: int, stride: int, floor: int) -> list[int]:
    """Candidate tile sides along one axis: the balanced side for 1, 2, ... tiles, down to ``floor``."""
    out: list[int] = []
    n = 1
    while n <= length:
        side = min(length, _side_for(length, n, overlap, stride))
        if side not in out:
            out.append(side)
        if side <= floor:
            break
        n += 1
    return out


def area_tile_shape(
    h: int, w: int, area: int, overlap: int, stride: int = 1, *, needed: np.ndarray | None = None, cell: int = 1
) -> tuple[int, int]:
    """``(th, tw)`` of tiles holding at most ``area`` pixels (any aspect) that cover ``h x w`` while
    running the fewest pixels in all (overlaps counted each time), then with the fewest tiles.

    Memory grows with a tile's pixels, not its shape, so a ``1152 x 1728`` image under a
    ``1024^2`` budget takes three ``1152 x 704`` strips (1.22x the pixels run) rather than four
    ``672 x 960`` tiles (1.30x). With ``needed`` (:func:`needed_cells` of ``cell`` px), tiles
    without a needed cell cost nothing: a thin unknown band across a large image then gets
    smaller tiles than the budget allows, a 2 MP image full of unknown pixels a few large ones.
    Sides never go below ``overlap + stride`` (unless the image is smaller), so a tiny area
    still gives valid, if larger, tiles.
    """
    least = overlap + stride
    least += (-least) % stride
    floor = max(least, math.isqrt(max(area, 1)) // 4)
    sat = None
    if needed is not None:
        sat = np.zeros((needed.shape[0] + 1, needed.shape[1] + 1), np.int64)
        sat[1:, 1:] = needed.cumsum(0).cumsum(1)

    def runs(th: int, tw: int) -> int:
        if sat is None:
            return _count(h, th, overlap, stride) * _count(w, tw, overlap, stride)
        ys = np.asarray(tile_starts(h, th, overlap, stride))
        xs = np.asarray(tile_starts(w, tw, overlap, stride))
        r0, r1 = ys // cell, np.minimum(-(-(ys + th) // cell), sat.shape[0] - 1)
        c0, c1 = xs // cell, np.minimum(-(-(xs + tw) // cell), sat.shape[1] - 1)
        inside = sat[np.ix_(r1, c1)] - sat[np.ix_(r0, c1)] - sat[np.ix_(r1, c0)] + sat[np.ix_(r0, c0)]
        return int(np.count_nonzero(inside))

    best = None
    for th in _sides(h, overlap, stride, floor):
        for tw in _sides(w, overlap, stride, floor):
            if th * tw > area and best is not None and not best[0][0]:
                continue
            n = runs(th, tw)
            cost = (th * tw > area, n * th * tw, n, abs(th - tw))  # within the area first
            if best is None or cost < best[0]:
                best = (cost, (th, tw))
    return best[1]


def tile_boxes(
    h: int,
    w: int,
    tile: int,
    overlap: int,
    stride: int = 1,
    *,
    area: int | None = None,
    needed: np.ndarray | None = None,
    cell: int = 1,
) -> list[Box]:
    """``(y0, y1, x0, x1)`` of every tile (rows outer), all of one size: per axis the
    :func:`balanced_tile` of ``tile`` (``min(tile, side)`` when one tile covers it); with
    ``area``, the :func:`area_tile_shape` of tiles of at most that many pixels instead."""
    if area is not None:
        th, tw = area_tile_shape(h, w, area, overlap, stride, needed=needed, cell=cell)
    else:
        th, tw = balanced_tile(h, tile, overlap, stride), balanced_tile(w, tile, overlap, stride)
    return [
        (y0, y0 + th, x0, x0 + tw)
        for y0 in tile_starts(h, th, overlap, stride)
        for x0 in tile_starts(w, tw, overlap, stride)
    ]


def axis_weight(n: int, inner_lo: bool, inner_hi: bool, halo: int, blend: int) -> torch.Tensor:
    """Weights along one tile axis of ``n`` px: 0 over the halo, a raised-cosine ramp over ``blend``, then 1.

    Only sides that border another tile (``inner_lo`` / ``inner_hi``) get a halo and a ramp.
    """
    w = torch.ones(n, dtype=torch.float32)
    ramp = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(blend, dtype=torch.float32) + 0.5) / max(blend, 1))
    for inner, flip in ((inner_lo, False), (inner_hi, True)):
        if not inner:
            continue
        side = torch.cat([torch.zeros(halo), ramp])[: n // 2]
        side = side.flip(0) if flip else side
        if flip:
            w[n - side.numel() :] = torch.minimum(w[n - side.numel() :], side)
        else:
            w[: side.numel()] = torch.minimum(w[: side.numel()], side)
    return w


def tile_weight(box: Box, h: int, w: int, halo: int, blend: int) -> torch.Tensor:
    """The ``(y1-y0, x1-x0)`` blending weight of one tile of an ``h x w`` image."""
    y0, y1, x0, x1 = box
    wy = axis_weight(y1 - y0, y0 > 0, y1 < h, halo, blend)
    wx = axis_weight(x1 - x0, x0 > 0, x1 < w, halo, blend)
    return wy[:, None] * wx[None, :]


def blend_boxes(
    h: int,
    w: int,
    boxes: list[Box],
    solve: Callable[[Box], np.ndarray],
    *,
    halo: int,
    blend: int,
) -> np.ndarray:
    """Blend ``solve(box)`` (float ``(y1-y0, x1-x0)`` arrays) over an ``h x w`` image with the tile
    weights of :func:`tile_weight`: the one blender, for callers that compute tiles one at a time on
    the host (classical solvers); :func:`tiled_apply` is the batched tensor form. Pixels no box
    covers with a positive weight are 0."""
    acc = np.zeros((h, w), np.float32)
    weight = np.zeros((h, w), np.float32)
    for box in boxes:
        y0, y1, x0, x1 = box
        win = tile_weight(box, h, w, halo, blend).numpy()
        acc[y0:y1, x0:x1] += win * np.asarray(solve(box), np.float32)
        weight[y0:y1, x0:x1] += win
    np.divide(acc, weight, out=acc, where=weight > 0)
    return acc


def blend_window(height: int, width: int, overlap: int) -> torch.Tensor:
    """A separable ``(height, width)`` window: raised-cosine ramps over ``overlap`` px at every edge, 1 inside.

    Strictly positive (no halo), for callers that blend fixed-size patches on their own.
    """
    return (
        axis_weight(height, True, True, 0, min(overlap, height // 2))[:, None]
        * axis_weight(width, True, True, 0, min(overlap, width // 2))[None, :]
    )


def plan_tiles(
    budget: int,
    bytes_per_pixel: float,
    *,
    stride: int,
    max_tile: int = 1024,
    min_tile: int | None = None,
    max_batch: int = 8,
) -> tuple[int, int]:
    """The largest tile (a multiple of ``stride``) and then the largest batch that fit ``budget``."""
    min_tile = min_tile or stride
    tile = max_tile - max_tile % stride
    while tile > min_tile and tile * tile * bytes_per_pixel > budget:
        tile -= stride
    batch = max(1, min(max_batch, int(budget // max(1.0, tile * tile * bytes_per_pixel))))
    return max(tile, min_tile), batch


class _TileTooLarge(Exception):
    """One tile per batch still ran out of memory: the caller must shrink the tile."""


def _cropper(source, size):
    if isinstance(source, torch.Tensor):
        return (lambda y0, y1, x0, x1: source[:, :, y0:y1, x0:x1]), tuple(source.shape[-2:]), source.device
    if size is None:
        raise ValueError("a callable tile source needs size=(H, W)")
    return source, tuple(size), None


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    source,
    *,
    tile: int,
    halo: int = 0,
    blend: int = 16,
    stride: int = 1,
    out_channels: int = 1,
    batch_size: int = 4,
    skip: Callable[[int, int, int, int], bool] | None = None,
    size: tuple[int, int] | None = None,
    retry_oom: bool = False,
    by_area: bool = False,
    max_batch: int = 8,
    info: dict | None = None,
) -> torch.Tensor:
    """Run ``fn`` on overlapping tiles and blend the results into ``(1, out_channels, H, W)``.

    Args:
        fn: ``(N, C, t, t) -> (N, out_channels, t, t)``.
        source: the ``(1, C, H, W)`` input, or ``crop(y0, y1, x0, x1) -> (1, C, y1-y0, x1-x0)``
            that builds tile inputs on demand (then ``size=(H, W)`` is required), so that a
            huge image's per-pixel encodings never exist at full size.
        tile: tile side; ``halo`` / ``blend``: see the module docstring. Neighbouring tiles
            overlap by ``2 * halo + blend``; ``tile`` must exceed that.
        stride: tile origins are multiples of it (pad H and W to multiples first).
        batch_size: tiles per ``fn`` call.
        skip: ``skip(y0, y1, x0, x1) -> True`` leaves that tile out; pixels no tile covers are 0.
        retry_oom: on an out-of-memory error, halve the batch and retry the same tiles (tiles
            already blended are kept); at batch 1 raise ``_TileTooLarge``.
        by_area: ``tile`` only bounds a tile's pixels (``tile * tile``), the shape follows the
            image (:func:`area_tile_shape`): fewer overlapping pixels for the same memory; the
            batch then grows (up to ``max_batch``) to keep its ``batch_size * tile^2`` pixels.
        info: filled with what ran: ``tile`` ``[th, tw]``, ``tiles`` (how many ran), ``batch``, and
            ``fallback`` (why the batch shrank, if it did).
    """
    crop, (h, w), device = _cropper(source, size)
    overlap = 2 * halo + blend
    if min(tile, h) <= overlap and h > tile or min(tile, w) <= overlap and w > tile:
        raise ValueError(f"tile {tile} must be larger than 2 * halo + blend = {overlap}")
    if by_area:
        # the shape that runs the fewest pixels, skipped tiles free; the batch keeps its pixel budget
        cell = stride * max(1, 64 // stride)
        needed = None if skip is None else needed_cells(h, w, skip, cell)
        layout = tile_boxes(h, w, tile, overlap, stride, area=tile * tile, needed=needed, cell=cell)
        th, tw = layout[0][1] - layout[0][0], layout[0][3] - layout[0][2]
        batch_size = max(batch_size, min(max_batch, batch_size * tile * tile // max(1, th * tw)))
    else:
        layout = tile_boxes(h, w, tile, overlap, stride)
    boxes = [b for b in layout if skip is None or not skip(*b)]
    if info is not None:
        th, tw = layout[0][1] - layout[0][0], layout[0][3] - layout[0][2]
        info.update(tile=[th, tw], tiles=len(boxes), batch=min(batch_size, max(1, len(boxes))))
    out = weight = None
    i = 0
    while i < len(boxes):
        chunk = boxes[i : i + batch_size]
        try:
            batch = torch.cat([crop(*b) for b in chunk], dim=0)
            result = fn(batch).float()
        except Exception as err:
            if not (retry_oom and is_oom(err)):
                raise
            del err
            empty_cache()
            if batch_size == 1:
                raise _TileTooLarge() from None
            batch_size //= 2
            message = f"out of memory: retrying with batch size {batch_size}"
            if info is not None:
                info["batch"] = batch_size
                info["fallback"] = message
            warnings.warn(message, RuntimeWarning, stacklevel=3)
            continue
        if out is None:
            device = result.device
            out = torch.zeros(1, out_channels, h, w, dtype=torch.float32, device=device)
            weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=device)
        for k, (y0, y1, x0, x1) in enumerate(chunk):
            win = tile_weight((y0, y1, x0, x1), h, w, halo, blend).to(device)
            out[:, :, y0:y1, x0:x1] += result[k : k + 1] * win
            weight[:, :, y0:y1, x0:x1] += win
        i += len(chunk)
    if out is None:
        return torch.zeros(1, out_channels, h, w, dtype=torch.float32, device=device or "cpu")
    return out.div_(weight.clamp_min_(1e-12))  # in place: no full-size temporaries


def tiled_apply_safe(
    fn, source, *, tile: int, halo: int = 0, blend: int = 16, stride: int = 1, retry_oom: bool = True, **kwargs
):
    """:func:`tiled_apply` that survives running out of memory (``retry_oom``), never losing the image.

    On an out-of-memory error the batch is halved and the same tiles are retried; at
    batch 1 the tile is halved (kept a multiple of ``stride`` and larger than the
    overlap) and the image restarted with the smaller tiles. Only when no smaller tile
    is possible does it give up with a :class:`DeviceError`. Each fallback warns (and is
    recorded in ``info`` when given). Without ``retry_oom``: :func:`tiled_apply` as it is.
    """
    if not retry_oom:
        return tiled_apply(fn, source, tile=tile, halo=halo, blend=blend, stride=stride, **kwargs)
    minimum = 2 * halo + blend + stride
    while True:
        try:
            return tiled_apply(fn, source, tile=tile, halo=halo, blend=blend, stride=stride, retry_oom=True, **kwargs)
        except _TileTooLarge:
            smaller = (tile // 2) - (tile // 2) % stride
            if smaller < minimum:
                raise DeviceError(
                    f"out of memory even with one {tile}x{tile} tile per batch",
                    hint="lower --max-memory / --tile-size, use --precision fp16/bf16, or free the GPU",
                ) from None
            tile = smaller
            kwargs["batch_size"] = 1
            message = f"out of memory: retrying with {tile}x{tile} tiles"
            if kwargs.get("info") is not None:
                kwargs["info"]["fallback"] = message
            warnings.warn(message, RuntimeWarning, stacklevel=2)


def resize_crop(small: torch.Tensor, size: tuple[int, int], box: Box) -> torch.Tensor:
    """``F.interpolate(small, size, bilinear, align_corners=False)[..., y0:y1, x0:x1]`` without the full-size map.

    Lets tiles take their part of an upsampled low-resolution map (semantic scores, a
    trimap from a reduced-scale pass) while only tile-sized tensors exist.
    """
    import torch.nn.functional as F

    n, c, sh, sw = small.shape
    y0, y1, x0, x1 = box
    big_h, big_w = size
    if (sh, sw) == (big_h, big_w):
        return small[:, :, y0:y1, x0:x1]

    def coords(lo: int, hi: int, src: int, dst: int) -> torch.Tensor:
        # source coordinate of each output pixel, clamped at 0 as PyTorch's bilinear kernel does
        pos = ((torch.arange(lo, hi, dtype=torch.float64) + 0.5) * (src / dst) - 0.5).clamp_min(0.0)
        return (pos + 0.5) / src * 2 - 1  # grid_sample's normalised coordinate (align_corners=False)

    gy = coords(y0, y1, sh, big_h).to(small.device, torch.float32)
    gx = coords(x0, x1, sw, big_w).to(small.device, torch.float32)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].expand(n, -1, -1, 2)
    return F.grid_sample(small.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
