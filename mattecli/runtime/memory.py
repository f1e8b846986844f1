"""Memory plans from declared figures: what a method needs, what a run may use, never what happens to be free.

A method's memory is declared once per weights variant (:class:`Footprint`, in its spec): bytes held
once it is loaded, bytes per image pixel held at full size beside its network passes, and bytes per
input pixel of each pass at its peak. ``bench/memory_figures.py`` measures them on the CPU in fp32
and records them in ``bench/memory_figures.md``.

A run's :class:`Budget` is a bound on its peak: ``--max-memory`` when given, else the declared
:data:`DEFAULT_BUDGET` (what a 16 GB machine can give one run). It depends only on the options and
on the machine's *total* memory (a fixed property: on a machine with less than the default needs,
the default is lowered once, with a warning that the results record), never on free memory, so the
same command plans the same tiles, and writes the same bytes, on an idle and on a busy machine.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mattecli.errors import BadOptionError

__all__ = [
    "parse_memory",
    "format_memory",
    "Footprint",
    "Budget",
    "DEFAULT_BUDGET",
    "REFERENCE_MEMORY",
    "MACHINE_SHARE",
    "PLAN_MARGIN",
    "machine_memory",
    "resolve_budget",
    "MemoryPlan",
    "check_budget",
]

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

#: The machine the default plan is made for, and the share of it one run may plan to fill: the rest
#: is the OS's, the decoded images' ahead of the one being matted, and the C heap's kept blocks (a
#: CPU run keeps freed blocks for reuse, up to about 30% over the live peak: ``runtime/allocator.py``).
REFERENCE_MEMORY = 16 << 30
DEFAULT_BUDGET = 10 << 30
#: On a machine with less total memory than :data:`REFERENCE_MEMORY` needs, the default budget is
#: this share of it (rounded down to 256 MiB), with a warning.
MACHINE_SHARE = 0.6
#: Share of what is left under the budget (after the fixed and full-size figures) that a pass or a
#: batch of tiles may plan to fill; the rest absorbs allocator fragmentation and rounding.
PLAN_MARGIN = 0.85
_GRAIN = 256 << 20


def parse_memory(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"2000000"`` -> bytes (int).

    Raises:
        BadOptionError: not a size.
    """
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        raise BadOptionError(f"cannot read memory size {text!r}", hint="use e.g. 8G or 512M")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def format_memory(n: float) -> str:
    """Bytes as ``--max-memory`` reads them, rounded up to what a user would type: ``"3.2G"``, ``"640M"``."""
    for unit, size in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            value = math.ceil(n / size * 10) / 10
            return f"{value:g}{unit}"
    return f"{int(math.ceil(n))}"


@dataclass(frozen=True)
class Footprint:
    """A method variant's declared memory on the CPU in fp32 (the figures a plan is made of).

    ``fixed``: bytes the process holds once the method is loaded (interpreter, libraries, weights and
    their transformed copies). ``image``: bytes per image pixel held at full size beside the network
    passes (the decoded image, full-size maps, blend accumulators, the output), one number or one
    per strategy (``{"hybrid": ..., "tiled": ...}``: what a strategy keeps at full size differs;
    a strategy not named takes the largest). ``passes``: bytes per
    input pixel of each named pass at its peak (a whole pass, a tile, a reduced global pass), on top
    of the other two. Each figure is a measured peak slope, so ``fixed + image * N + passes[p] * P``
    bounds the peak of pass ``p`` over ``P`` pixels on an image of ``N`` pixels.
    """

    fixed: int
    image: float | Mapping[str, float]
    passes: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "passes", MappingProxyType(dict(self.passes)))
        if isinstance(self.image, Mapping):
            object.__setattr__(self, "image", MappingProxyType(dict(self.image)))

    def image_bytes(self, strategy: str | None = None) -> float:
        """Bytes per image pixel held at full size under ``strategy`` (the largest figure when the
        footprint has one per strategy and names none for it)."""
        if not isinstance(self.image, Mapping):
            return float(self.image)
        return float(self.image.get(strategy, max(self.image.values())))

    def per_pixel(self, name: str) -> float:
        """Bytes per input pixel of pass ``name``.

        Raises:
            KeyError: the footprint declares no such pass.
        """
        try:
            return self.passes[name]
        except KeyError:
            raise KeyError(
                f"no memory figure declared for pass {name!r} (declared: {', '.join(self.passes)})"
            ) from None


@dataclass(frozen=True)
class Budget:
    """The most memory a run plans to hold at its peak, in bytes, and where that figure comes from.

    ``source``: ``"--max-memory"``, ``"default"``, or ``"machine"`` (the default lowered to this
    machine's total memory; ``note`` says so in one line, for stderr and the results).
    """

    bytes: int
    source: str
    note: str | None = None

    @property
    def capped(self) -> bool:
        """Whether the user set it (``--max-memory``)."""
        return self.source == "--max-memory"

    def to_json(self) -> dict:
        return {"bytes": self.bytes, "source": self.source, "note": self.note}


def _cgroup_limit() -> int | None:
    """The memory limit of this process's cgroup (v2 ``memory.max`` or v1 ``limit_in_bytes``), if any."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            return int(text)
    return None


def machine_memory(device_type: str = "cpu", index: int | None = None) -> int | None:
    """The total memory of the machine (``MemTotal``, or a smaller cgroup limit: a container's size),
    or of CUDA device ``index``: a fixed property, never what is free. None where it cannot be read."""
    if device_type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(index or 0).total_memory)
    total = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) * 1024
                    break
    except OSError:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = None
    limit = _cgroup_limit()
    if limit is not None and (total is None or limit < total):
        total = limit
    return total


def resolve_budget(max_memory: int | None, device_type: str = "cpu", index: int | None = None) -> Budget:
    """The run's :class:`Budget`: ``max_memory`` (bytes, ``--max-memory``) when given; else
    :data:`DEFAULT_BUDGET`, lowered to :data:`MACHINE_SHARE` of a machine (or GPU) whose total memory
    is below :data:`REFERENCE_MEMORY` (``source="machine"``, with a note)."""
    if max_memory is not None:
        return Budget(int(max_memory), "--max-memory")
    total = machine_memory(device_type, index)
    if total is None or total >= REFERENCE_MEMORY * 0.85:  # a "16 GB" machine reports 15-15.6 GiB
        return Budget(DEFAULT_BUDGET, "default")
    lowered = max(_GRAIN, int(total * MACHINE_SHARE) // _GRAIN * _GRAIN)
    if lowered >= DEFAULT_BUDGET:
        return Budget(DEFAULT_BUDGET, "default")
    where = "this GPU" if device_type == "cuda" else "this machine"
    note = (
        f"{where} has {format_memory(total)} of memory, less than the {REFERENCE_MEMORY >> 30}G the default plan "
        f"assumes: planning for {format_memory(lowered)} (large images may be tiled where a {REFERENCE_MEMORY >> 30}G "
        "machine runs them whole); pass --max-memory to choose"
    )
    return Budget(lowered, "machine", note)


@dataclass(frozen=True)
class MemoryPlan:
    """What fits: a :class:`Footprint` against a :class:`Budget`, plus ``held`` bytes of other methods
    loaded in the same run (``--trimap auto``'s trimap method). Pure arithmetic on declared figures."""

    footprint: Footprint
    budget: Budget
    held: int = 0
    strategy: str | None = None

    def base(self, image_pixels: int) -> float:
        """Bytes held beside any pass on an image of ``image_pixels``: fixed, other methods, full-size maps
        (the figure of the run's ``strategy``)."""
        f = self.footprint
        return f.fixed + self.held + f.image_bytes(self.strategy) * image_pixels

    def room(self, image_pixels: int) -> float:
        """Bytes a pass may plan to fill on an image of ``image_pixels`` (may be negative)."""
        return (self.budget.bytes - self.base(image_pixels)) * PLAN_MARGIN

    def fits(self, name: str, pixels: int, image_pixels: int, *, extra: float = 0.0) -> bool:
        """Whether pass ``name`` over ``pixels`` input pixels (plus ``extra`` bytes: a solver's own
        model of what it adds) fits on an image of ``image_pixels``."""
        return self.footprint.per_pixel(name) * pixels + extra <= self.room(image_pixels)

    def least_budget(self, name: str, pixels: int, image_pixels: int, *, extra: float = 0.0) -> int:
        """The smallest budget under which pass ``name`` over ``pixels`` (+ ``extra`` bytes) fits, rounded
        up to 64 MiB."""
        need = self.base(image_pixels) + (self.footprint.per_pixel(name) * pixels + extra) / PLAN_MARGIN
        grain = 64 << 20
        return int(-(-need // grain) * grain)


def check_budget(budget: Budget, footprints: list[Footprint], smallest_pass: int = 64 * 64) -> None:
    """Refuse, before any image, a ``--max-memory`` that cannot hold the run at all: below the fixed
    memory of the methods it loads plus their costliest pass over ``smallest_pass`` pixels (a tile
    of the smallest size). Larger images need more; each image is checked when it is planned.

    Raises:
        BadOptionError: the message names the least cap that could work.
    """
    if not budget.capped or not footprints:
        return
    fixed = sum(f.fixed for f in footprints)
    per = max((max(f.passes.values(), default=0.0) for f in footprints), default=0.0)
    least = fixed + per * smallest_pass / PLAN_MARGIN
    if budget.bytes >= least:
        return
    least = -(-least // (64 << 20)) * (64 << 20)
    raise BadOptionError(
        f"--max-memory {format_memory(budget.bytes)} cannot hold this run: loading the method and running its "
        f"smallest pass need about {format_memory(least)}",
        hint=f"give --max-memory {format_memory(least)} or more (large images need more)",
    )
