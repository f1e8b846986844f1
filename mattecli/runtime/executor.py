"""One executor of the test strategies for every method: ``auto``, ``whole``, ``tiled`` and their fallbacks.

A method hands :class:`Executor` its two ways of computing an image -- one pass over the whole
image, or blended tiles (:func:`mattecli.runtime.tiles.tiled_apply_safe` through
:meth:`TilePolicy.run`) -- and the executor decides which runs:

* ``whole`` / ``tiled``: as asked;
* ``auto``: ``whole`` when that pass fits the memory budget (a cheap upper bound first, the measured
  peak when the bound does not settle it; or a method's own estimate, e.g. pymatting's solver model),
  else ``tiled``;
* a ``whole`` pass that runs out of memory falls back to ``tiled`` (with a warning), and tiles
  halve their batch, then their side, on out-of-memory errors (in the tiler);
* global passes (context, glance) that run out of memory are retried at half the size
  (:func:`run_shrinking`).

:class:`TilePolicy` sizes tiles and batches from ``--tile-size`` / ``--batch-size`` or from the
budget and the network's measured memory per pixel.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from mattecli.errors import BadOptionError, DeviceError
from mattecli.runtime.device import empty_cache, is_oom
from mattecli.runtime.memory import (
    RAM_SHARE,
    activation_bytes_per_pixel,
    measure_bytes_per_pixel,
    memory_budget,
    memory_headroom,
)
from mattecli.runtime.tiles import plan_tiles

__all__ = [
    "PLAN_MARGIN",
    "TilePolicy",
    "Probe",
    "Executor",
    "choose_strategy",
    "pass_fits",
    "measure_pass",
    "run_shrinking",
    "STRATEGIES",
]

T = TypeVar("T")

#: The strategies the executor knows; a method declares which of them (and of its own) it offers.
STRATEGIES = ("auto", "whole", "tiled")


#: Share of the free budget that planned tiles' measured activations may fill; the rest absorbs
#: allocator fragmentation and per-batch buffers (33 MP MSIA under 3G peaked 3.1-3.4 GiB at 100%).
PLAN_MARGIN = 0.85


#: Bytes per input pixel that no method's whole pass reaches (the upper bounds of
#: :func:`activation_bytes_per_pixel`: AIM's focus pass 4.6 KB); a pass this cheap needs no probe.
PASS_CEILING = 32 << 10


def measure_pass(forward, in_channels: int, device: torch.device, stride: int) -> float | None:
    """Measured peak bytes per input pixel of ``forward`` on zero inputs ``(1, in_channels, s, s)``
    (:func:`measure_bytes_per_pixel` at probe sides of 128 and 384 px, multiples of ``stride``)."""

    def make_input(side: int):
        side -= side % stride
        return torch.zeros(1, in_channels, side, side, device=device)

    sizes = (max(stride, 128 - 128 % stride), 384 - 384 % stride)
    return measure_bytes_per_pixel(forward, make_input, device, sizes=sizes)


@dataclass
class TilePolicy:
    """How one method tiles: tile side, halo, blend and batch, from options or from a memory budget.

    ``halo`` defaults to the method's receptive-field margin (``MethodSpec.margin``); tile
    and batch sizes come from ``budget`` and the network's measured memory per pixel
    (:func:`measure_bytes_per_pixel`, falling back to the upper bound of
    :func:`activation_bytes_per_pixel`) unless ``tile_size`` / ``batch_size`` are given.
    Tiles never shrink below ``2 * halo + blend`` plus one stride (with a warning when the
    budget asked for less).
    """

    stride: int
    halo: int
    blend: int = 32
    tile_size: int | None = None
    batch_size: int | None = None
    budget: int | None = None
    max_tile: int = 2048  # planned tiles hold at most max_tile^2 pixels (fewer where the layout gains)
    max_batch: int = 8
    bytes_per_pixel: float | None = None
    device: torch.device | None = None  # when set, memory already in use there counts against the budget

    @property
    def min_tile(self) -> int:
        need = 2 * self.halo + self.blend + self.stride
        return need + (-need) % self.stride

    def probe(self, net, forward, in_channels: int, device: torch.device) -> float:
        """Bytes per input pixel of ``forward`` (measured once, then cached; not needed with explicit sizes)."""
        if self.bytes_per_pixel is None and not (self.tile_size and self.batch_size):
            bpp = measure_pass(forward, in_channels, device, self.stride)
            if bpp is None:
                bpp = activation_bytes_per_pixel(net, in_channels, stride=self.stride, forward=forward)
            self.bytes_per_pixel = bpp
        return self.bytes_per_pixel

    def headroom(self, reserve: int = 0) -> int | None:
        """Bytes the network's activations may take: the budget less what ``device`` holds now and
        ``reserve`` (full-size maps still to come); the whole budget without a ``device``."""
        if self.budget is None:
            return None
        if self.device is None:
            return self.budget
        return memory_headroom(self.device, self.budget) - reserve

    def fits(self, pixels: int, reserve: int = 0, bytes_per_pixel: float | None = None) -> bool:
        """Whether a whole-image pass of ``pixels`` fits the budget (needs :meth:`probe` first, or
        ``bytes_per_pixel`` of another forward), ``reserve`` bytes of full-size maps still to come
        besides it. Planned like tiles: the pass may fill :data:`PLAN_MARGIN` of the headroom."""
        bpp = self.bytes_per_pixel if bytes_per_pixel is None else bytes_per_pixel
        if self.budget is None or bpp is None:
            return True
        room = self.headroom(reserve)
        return pixels * bpp <= (room if self.device is None else room * PLAN_MARGIN)

    def plan(self, reserve: int = 0) -> tuple[int, int]:
        """``(tile, batch)``: explicit sizes, else the largest that fit the budget's headroom
        (see :meth:`headroom`; ``reserve``: bytes of full-size outputs still to be allocated)."""
        if self.tile_size and self.batch_size:
            tile, batch = self.tile_size, self.batch_size
        elif self.budget is None or self.bytes_per_pixel is None:
            tile, batch = self.tile_size or self.max_tile, self.batch_size or 1
        else:
            room = self.headroom(reserve)
            if room < self.min_tile**2 * self.bytes_per_pixel:
                warnings.warn(
                    f"--max-memory {self.budget / 2**30:.2f} GiB leaves {max(room, 0) / 2**30:.2f} GiB for the "
                    "network after what this run already holds; using the smallest tiles",
                    RuntimeWarning,
                    stacklevel=2,
                )
            tile, batch = plan_tiles(
                max(int(room * PLAN_MARGIN), 0),
                self.bytes_per_pixel,
                stride=self.stride,
                max_tile=self.tile_size or self.max_tile,
                min_tile=self.min_tile,
                max_batch=self.max_batch,
            )
            tile = self.tile_size or tile
            batch = self.batch_size or batch
        tile = max(self.stride, tile - tile % self.stride)
        if tile < self.min_tile:
            warnings.warn(f"tile {tile} is below 2 x halo + blend; using {self.min_tile}", RuntimeWarning, stacklevel=2)
            tile = self.min_tile
        return tile, batch

    def run(self, fn, source, *, size=None, skip=None, out_channels: int = 1) -> torch.Tensor:
        """:func:`mattecli.runtime.tiles.tiled_apply_safe` with this policy's sizes."""
        from mattecli.runtime.tiles import tiled_apply_safe

        h, w = size if size is not None else source.shape[-2:]
        # the blend accumulators (output + weight) and the caller's full-size result are still to come
        tile, batch = self.plan(reserve=(out_channels + 2) * 4 * int(h) * int(w))
        return tiled_apply_safe(
            fn,
            source,
            tile=tile,
            halo=self.halo,
            blend=self.blend,
            stride=self.stride,
            batch_size=batch,
            skip=skip,
            size=size,
            out_channels=out_channels,
            by_area=not self.tile_size,
            max_batch=self.max_batch,
        )


def run_shrinking(
    run, size: tuple[int, int], stride: int, what: str, *, fits: Callable[[tuple[int, int]], bool] | None = None
):
    """``run(size)``, halving ``size`` (multiples of ``stride``) after each out-of-memory error, and
    first while ``fits(size)`` says the pass would not fit the memory budget (``--max-memory``).

    For global passes (context, glance) whose size only trades precision of global
    statistics for memory; each retry warns.

    Raises:
        DeviceError: out of memory even at one stride.
    """
    while fits is not None and max(size) > stride and not fits(size):
        size = tuple(max(stride, (s // 2) - (s // 2) % stride) for s in size)
        warnings.warn(
            f"{what} does not fit --max-memory: running it at {size[1]}x{size[0]}", RuntimeWarning, stacklevel=2
        )
    while True:
        try:
            return run(size)
        except Exception as err:
            if not is_oom(err):
                raise
            del err
            empty_cache()
            if max(size) <= stride:
                raise DeviceError(f"out of memory even for a {stride}x{stride} {what}") from None
            size = tuple(max(stride, (s // 2) - (s // 2) % stride) for s in size)
            warnings.warn(f"{what} out of memory: retrying at {size[1]}x{size[0]}", RuntimeWarning, stacklevel=2)


def choose_strategy(
    strategy: str | None,
    policy: TilePolicy,
    pixels: int,
    net,
    forward,
    in_channels: int,
    measure: Callable[[], float] | None = None,
) -> str:
    """``whole`` or ``tiled`` for ``auto`` (None): whole when the image's pass fits the memory budget.

    A cheap upper bound (:func:`activation_bytes_per_pixel` on a 64 px probe) settles most
    images; only when the bound does not fit is the real peak measured (:meth:`TilePolicy.probe`,
    on zero inputs), and only when that does not fit either is ``measure()`` asked (this image's
    bytes per pixel, for a network whose memory depends on the input and is at most the probe's).
    """
    if strategy not in (None, "auto"):
        return strategy
    if policy.budget is None:
        return "whole"
    if policy.bytes_per_pixel is None:
        bound = activation_bytes_per_pixel(net, in_channels, stride=policy.stride, forward=forward)
        if pixels * bound <= policy.budget:
            return "whole"
    policy.probe(net, forward, in_channels, next(iter(net.parameters()), torch.zeros(0)).device)
    if policy.fits(pixels):
        return "whole"
    if measure is not None:  # the zero-input probe is an upper bound: refine it for this image
        return "whole" if policy.fits(pixels, bytes_per_pixel=measure()) else "tiled"
    return "tiled"


def pass_fits(
    policy: TilePolicy,
    pixels: int,
    net,
    forward,
    in_channels: int,
    *,
    reserve: int = 0,
    cache: dict | None = None,
    key: str = "pass",
) -> bool:
    """Whether one whole pass of ``forward`` over ``pixels`` fits ``policy``'s budget, ``reserve`` bytes
    of full-size maps still to come besides what is in use now (the check a whole pass of fixed size
    -- a glance or context pass, a hybrid focus pass -- makes before it runs).

    The cheap upper bound (:func:`activation_bytes_per_pixel`) settles most passes; only when it
    does not is the real peak measured (:func:`measure_bytes_per_pixel`, kept in ``cache[key]``).
    The pass may fill :data:`PLAN_MARGIN` of the headroom, as planned tiles do.
    """
    if policy.budget is None:
        return True
    room = policy.headroom(reserve) * (PLAN_MARGIN if policy.device is not None else 1.0)
    if pixels * PASS_CEILING <= room:  # fits whatever the network: no probe forward at all
        return True
    cache = {} if cache is None else cache
    bound_key = key + ":bound"
    if bound_key not in cache:
        cache[bound_key] = activation_bytes_per_pixel(net, in_channels, stride=policy.stride, forward=forward)
    if pixels * cache[bound_key] <= room:
        return True
    if key not in cache:
        device = next(iter(net.parameters()), torch.zeros(0)).device
        bpp = measure_pass(forward, in_channels, device, policy.stride)
        cache[key] = cache[bound_key] if bpp is None else bpp
    return pixels * cache[key] <= room


@dataclass(frozen=True)
class Probe:
    """How to measure a network's memory per input pixel: ``forward`` on ``(1, in_channels, s, s)``,
    refined by ``measure()`` for this image where the network's memory depends on its content (when
    neither the cheap bound nor the zero-input probe settles the choice; see :func:`choose_strategy`)."""

    net: torch.nn.Module
    forward: Callable[[torch.Tensor], Any]
    in_channels: int
    measure: Callable[[], float] | None = None


class Executor:
    """Runs one image with the method's strategy: see the module docstring.

    ``strategy`` is ``auto`` / ``whole`` / ``tiled`` (a method's own strategies, such as AIM's
    ``hybrid``, never reach the executor's choice: the method decides them itself).
    """

    def __init__(self, policy: TilePolicy, strategy: str = "auto"):
        self.policy = policy
        self.strategy = strategy

    def choose(self, pixels: int, probe: Probe | None = None, estimate: Callable[[], int] | None = None) -> str:
        """``whole`` or ``tiled`` for an image of ``pixels`` (``auto`` decided by the budget).

        ``probe`` measures a network; ``estimate()`` gives the whole pass's bytes directly (a
        solver's model) and wins over ``probe``.
        """
        if self.strategy not in ("auto", "whole", None):
            return self.strategy
        if estimate is not None:
            room = self.policy.headroom()
            choice = "whole" if room is None or estimate() <= room else "tiled"
        elif probe is None:
            choice = "whole"
        else:
            choice = choose_strategy(
                None, self.policy, pixels, probe.net, probe.forward, probe.in_channels, probe.measure
            )
        if self.strategy == "whole" and choice == "tiled":  # as if the whole pass ran out of memory
            warnings.warn(
                f"the whole-image pass does not fit --max-memory {self.policy.budget / 2**30:.2f} GiB: "
                "computing it on tiles",
                RuntimeWarning,
                stacklevel=3,
            )
        return choice

    def run(
        self,
        *,
        whole: Callable[[], T],
        tiled: Callable[[], T],
        pixels: int = 0,
        probe: Probe | None = None,
        estimate: Callable[[], int] | None = None,
        what: str = "whole-image pass",
    ) -> T:
        """``whole()`` or ``tiled()`` as :meth:`choose` decides; a ``whole()`` that runs out of memory
        is redone by ``tiled()``."""
        if self.choose(pixels, probe, estimate) == "tiled":
            return tiled()
        return self.whole_or_tiles(whole, tiled, what)

    @staticmethod
    def whole_or_tiles(
        whole: Callable[[], T],
        tiled: Callable[[], T],
        what: str = "whole-image pass",
        *,
        fits: Callable[[], bool] | None = None,
    ) -> T:
        """``whole()``, or ``tiled()`` when it runs out of memory or ``fits()`` says it would not fit
        the memory budget (with a warning)."""
        if fits is not None and not fits():
            warnings.warn(f"{what} does not fit --max-memory: computing it on tiles", RuntimeWarning, stacklevel=3)
            return tiled()
        try:
            return whole()
        except Exception as err:
            if not is_oom(err):
                raise
            del err
            empty_cache()
        warnings.warn(f"{what} out of memory: computing it on tiles", RuntimeWarning, stacklevel=3)
        return tiled()


def tile_policy(
    *,
    stride: int,
    halo: int,
    tile_size: int | None = None,
    batch_size: int | None = None,
    max_memory: int | None = None,
    device: torch.device | None = None,
    min_tile_size: int | None = None,
    ram_share: float = RAM_SHARE,
    **defaults,
) -> TilePolicy:
    """A :class:`TilePolicy` from a run's engine options (``--tile-size``, ``--tile-overlap`` as
    ``halo``, ``--batch-size``, ``--max-memory`` in bytes); the budget is read on ``device``
    (without ``max_memory``: ``ram_share`` of the available RAM, see :func:`memory_budget`).

    Raises:
        BadOptionError: sizes below their minimum (a tile of at least ``min_tile_size``, default one
            ``stride``; a batch of at least 1; a halo of at least 0).
    """
    low = min_tile_size or stride
    if tile_size is not None and tile_size < low:
        raise BadOptionError(f"--tile-size must be >= {low}")
    if halo < 0:
        raise BadOptionError("--tile-overlap must be >= 0")
    if batch_size is not None and batch_size < 1:
        raise BadOptionError("--batch-size must be >= 1")
    budget = memory_budget(device, max_memory, ram_share=ram_share) if device is not None else max_memory
    return TilePolicy(
        stride=stride,
        halo=halo,
        tile_size=tile_size,
        batch_size=batch_size,
        budget=budget,
        device=device,
        **defaults,
    )
