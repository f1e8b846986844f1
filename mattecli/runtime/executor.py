"""One executor of every method's passes: whole, tiled or reduced, decided from declared figures, and recorded.

A processor hands :class:`Executor` its ways of computing a pass -- one pass over the whole input,
or blended tiles (:meth:`Executor.tiles`) -- and the executor decides which runs, from the run's
:class:`~mattecli.runtime.memory.MemoryPlan` (the method's declared figures against the budget) and
the image's size only. The same image, options and device type therefore always get the same plan,
whatever memory happens to be free. Modes of :meth:`Executor.run`:

* ``auto``: the whole pass when it fits the plan, else tiles (a choice, not a fallback);
* ``whole``: as asked; under ``--max-memory`` a pass that does not fit runs on tiles, with a warning;
* ``official``: a method's own fixed-size pass (AIM's hybrid focus pass, SHM's M-Net in ``whole``):
  whole when it fits the plan, else tiles with a warning (a deviation from the official rule);
* ``tiled``: tiles.

Global passes (context, glance) that do not fit run at half the size, then half again
(:meth:`Executor.run_global`). On CUDA a real out-of-memory error still retries (tiles, halved
batches, halved global passes) with a one-line warning; on the CPU an out-of-memory ends in the
kernel's OOM killer more often than in an exception, so nothing relies on catching one there.

Whatever ran -- strategy, tile size and count, reduced global passes, each fallback and its
reason -- is recorded per image (:meth:`Executor.record`): ``--json`` rows, the bench report and
the provenance show it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from mattecli.errors import BadOptionError, DeviceError
from mattecli.runtime.device import empty_cache, is_oom
from mattecli.runtime.memory import MemoryPlan, format_memory
from mattecli.runtime.tiles import plan_tiles

__all__ = ["TilePolicy", "Executor", "MODES", "STRATEGIES"]

T = TypeVar("T")

#: The strategies the executor knows; a method declares which of them (and of its own) it offers.
STRATEGIES = ("auto", "whole", "tiled")
MODES = ("auto", "whole", "official", "tiled")


@dataclass
class TilePolicy:
    """The geometry of one method's tiles: stride grid, halo, blend ramp, and the sizes the flags fix.

    ``halo`` defaults to the method's receptive-field margin (``--tile-overlap``); ``tile_size`` and
    ``batch_size`` are ``--tile-size`` / ``--batch-size`` (None: planned from the memory figures, at
    most ``max_tile`` px on a side and ``max_batch`` tiles). Tiles never shrink below
    :attr:`min_tile` (``2 * halo + blend`` plus one stride).
    """

    stride: int
    halo: int
    blend: int = 32
    tile_size: int | None = None
    batch_size: int | None = None
    max_tile: int = 2048
    max_batch: int = 8

    @property
    def min_tile(self) -> int:
        need = 2 * self.halo + self.blend + self.stride
        return need + (-need) % self.stride

    def sizes(self, room: float | None, bytes_per_pixel: float | None) -> tuple[int, int]:
        """``(tile, batch)``: the flags' sizes, else the largest tile then batch whose pixels times
        ``bytes_per_pixel`` fit ``room`` bytes (:func:`~mattecli.runtime.tiles.plan_tiles`), else the
        largest tile one at a time (no plan). Never below :attr:`min_tile`."""
        if self.tile_size and self.batch_size:
            tile, batch = self.tile_size, self.batch_size
        elif room is None or bytes_per_pixel is None:
            tile, batch = self.tile_size or self.max_tile, self.batch_size or 1
        else:
            tile, batch = plan_tiles(
                max(int(room), 0),
                bytes_per_pixel,
                stride=self.stride,
                max_tile=self.tile_size or self.max_tile,
                min_tile=self.min_tile,
                max_batch=self.max_batch,
            )
            tile, batch = self.tile_size or tile, self.batch_size or batch
        tile = max(self.stride, tile - tile % self.stride, self.min_tile)
        return tile, batch


def _empty_record() -> dict[str, Any]:
    return {"strategy": None, "tile": None, "tiles": None, "batch": None, "passes": {}, "fallback": None}


class Executor:
    """Runs one image's passes for one method (see the module docstring) and records what ran.

    ``strategy`` is the method's resolved ``auto`` / ``whole`` / ``tiled`` (methods with strategies
    of their own pass a mode to :meth:`run`); ``memory`` the run's plan (None: no figures, nothing is
    ever tiled for memory, e.g. a caller's own network). Call :meth:`begin` with each image's pixel
    count before its passes.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        strategy: str = "auto",
        tiles: TilePolicy | None = None,
        memory: MemoryPlan | None = None,
    ):
        self.device = torch.device(device)
        self.strategy = strategy
        self.tiles_policy = tiles if tiles is not None else TilePolicy(stride=1, halo=64)
        self.memory = memory
        self.image_pixels = 0
        self._record = _empty_record()

    # ------------------------------------------------------------------ the record
    def begin(self, pixels: int) -> None:
        """Start a new image of ``pixels`` pixels: its passes are planned against it and recorded anew."""
        self.image_pixels = int(pixels)
        self._record = _empty_record()

    def record(self) -> dict[str, Any]:
        """What ran on the current image: ``strategy`` (``whole``, ``tiled``, or the method's own),
        ``tile`` ``[h, w]``, ``tiles`` (how many ran), ``batch``, ``passes`` (name -> ``[h, w]`` of
        reduced global passes) and ``fallback`` (why a pass deviated from the plan's first choice:
        ``"; "``-joined, None if none)."""
        rec = dict(self._record)
        rec["passes"] = dict(rec["passes"])
        return rec

    def note(self, **fields: Any) -> None:
        """Record fields of the current image (``strategy=...``), for what a method decides itself."""
        self._record.update(fields)

    def fallback(self, reason: str) -> None:
        """Record a fallback and warn once with ``reason`` (one line)."""
        previous = self._record["fallback"]
        self._record["fallback"] = reason if not previous else f"{previous}; {reason}"
        warnings.warn(reason, RuntimeWarning, stacklevel=3)

    # ------------------------------------------------------------------ plan
    def fits(self, name: str, pixels: int, *, extra: float = 0.0) -> bool:
        """Whether pass ``name`` over ``pixels`` input pixels (+ ``extra`` bytes) fits the plan."""
        return self.memory is None or self.memory.fits(name, pixels, self.image_pixels, extra=extra)

    def room(self) -> float | None:
        """Bytes a pass may fill on the current image (None without a plan)."""
        return None if self.memory is None else self.memory.room(self.image_pixels)

    def _limit(self) -> str:
        b = self.memory.budget
        return f"--max-memory {format_memory(b.bytes)}" if b.capped else f"the plan's {format_memory(b.bytes)}"

    def refuse(self, name: str, pixels: int, what: str, *, extra: float = 0.0) -> None:
        """Raise the usage error of a pass that cannot fit even at its smallest (``pixels`` input pixels,
        ``extra`` bytes), naming the least ``--max-memory`` that works.

        Raises:
            BadOptionError: always.
        """
        least = self.memory.least_budget(name, pixels, self.image_pixels, extra=extra)
        raise BadOptionError(
            f"{self._limit()} cannot hold the {what} of a {self.image_pixels / 1e6:.1f} MP image "
            f"(the method, its full-size maps and its smallest pass need about {format_memory(least)})",
            hint=f"give --max-memory {format_memory(least)} or more",
        )

    # ------------------------------------------------------------------ run
    def run(
        self,
        name: str,
        *,
        whole: Callable[[], T],
        tiled: Callable[[], T],
        pixels: int,
        what: str = "whole-image pass",
        mode: str | None = None,
        extra: float = 0.0,
    ) -> T:
        """``whole()`` or ``tiled()`` for pass ``name`` over ``pixels`` input pixels (+ ``extra`` bytes), as
        ``mode`` (default the executor's strategy) and the plan decide; recorded. On CUDA a ``whole()``
        that runs out of memory is redone by ``tiled()`` with a warning."""
        mode = mode or self.strategy
        if mode not in MODES:
            raise ValueError(f"unknown executor mode {mode!r}")
        if mode == "tiled":
            self.note(strategy="tiled")
            return tiled()
        forced = mode == "whole" and (self.memory is None or not self.memory.budget.capped)
        if not forced and not self.fits(name, pixels, extra=extra):
            if mode == "auto":
                self.note(strategy="tiled")
            else:
                need = format_memory(self.memory.least_budget(name, pixels, self.image_pixels, extra=extra))
                self.fallback(f"the {what} needs about {need}, more than {self._limit()}: computed on tiles")
            return tiled()
        if self._record["strategy"] is None:
            self.note(strategy="whole")
        try:
            return whole()
        except Exception as err:
            if not (self.device.type == "cuda" and is_oom(err)):
                raise
            del err
            empty_cache()
        self.fallback(f"the {what} ran out of GPU memory: computed on tiles")
        return tiled()

    def run_global(
        self, name: str, run: Callable[[tuple[int, int]], T], size: tuple[int, int], stride: int, what: str
    ) -> T:
        """``run(size)`` for a global pass (context, glance) whose size only trades precision of global
        statistics for memory: halved (multiples of ``stride``) until it fits the plan, each halving
        recorded with a warning; on CUDA halved again after an out-of-memory error.

        Raises:
            BadOptionError: under ``--max-memory``, not even a ``stride``-sized pass fits.
            DeviceError: out of GPU memory even at one stride.
        """

        def half(s: tuple[int, int]) -> tuple[int, int]:
            return tuple(max(stride, (v // 2) - (v // 2) % stride) for v in s)

        start = size
        while not self.fits(name, size[0] * size[1]):
            if max(size) <= stride:
                if self.memory.budget.capped:
                    self.refuse(name, size[0] * size[1], what)
                break  # the default plan on a tiny machine: run it, the note already warned
            size = half(size)
        if size != start:
            self._record["passes"][name] = list(size)
            self.fallback(f"the {what} does not fit {self._limit()}: run at {size[1]}x{size[0]}")
        while True:
            try:
                return run(size)
            except Exception as err:
                if not (self.device.type == "cuda" and is_oom(err)):
                    raise
                del err
                empty_cache()
                if max(size) <= stride:
                    raise DeviceError(f"out of GPU memory even for a {stride}x{stride} {what}") from None
                size = half(size)
                self._record["passes"][name] = list(size)
                self.fallback(f"the {what} ran out of GPU memory: run at {size[1]}x{size[0]}")

    def tiles(
        self,
        name: str,
        fn: Callable[[torch.Tensor], torch.Tensor],
        source,
        *,
        size: tuple[int, int] | None = None,
        skip: Callable[[int, int, int, int], bool] | None = None,
        out_channels: int = 1,
        what: str = "tiled pass",
    ) -> torch.Tensor:
        """Pass ``name`` on blended tiles (:func:`~mattecli.runtime.tiles.tiled_apply_safe`), their size and
        batch from the flags or the plan; the tile shape and count recorded.

        Raises:
            BadOptionError: under ``--max-memory``, not even the smallest tile fits.
        """
        from mattecli.runtime.tiles import tiled_apply_safe

        policy = self.tiles_policy
        h, w = size if size is not None else source.shape[-2:]
        per = None if self.memory is None else self.memory.footprint.per_pixel(name)
        room = self.room()
        if per is not None and not (policy.tile_size and policy.batch_size):
            smallest = policy.min_tile**2
            if per * smallest > room:
                if self.memory.budget.capped:
                    self.refuse(name, smallest, what)
                room = per * smallest  # the default plan on a tiny machine: the smallest tiles
        tile, batch = policy.sizes(room, per)
        info: dict = {}
        out = tiled_apply_safe(
            fn,
            source,
            tile=tile,
            halo=policy.halo,
            blend=policy.blend,
            stride=policy.stride,
            batch_size=batch,
            skip=skip,
            size=(int(h), int(w)),
            out_channels=out_channels,
            by_area=not policy.tile_size,
            max_batch=policy.max_batch if policy.batch_size is None else batch,
            retry_oom=self.device.type == "cuda",
            info=info,
        )
        self._record.update(tile=info.get("tile"), tiles=info.get("tiles"), batch=info.get("batch"))
        if info.get("fallback"):
            self.fallback(info["fallback"])
        return out
