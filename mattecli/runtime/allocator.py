"""How the C heap hands memory back: kept for reuse (fast) or returned to the OS (glibc's default).

glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mapping and unmaps
it on free. A large image's feature maps are far above that, so each new map is page-faulted in,
zero-filled by the kernel and handed back when freed, over and over. :func:`keep_freed_memory`
turns mappings off (``M_MMAP_MAX`` 0) and heap trimming off (``M_TRIM_THRESHOLD``), so freed blocks
stay resident and are reused -- the effect PyTorch's CPU tuning guides get by preloading jemalloc or
tcmalloc, here from glibc's own ``mallopt``. The price is memory: the heap keeps its high-water
mark, up to about 30% above the live peak (``bench/RESULTS.md`` has the measurements).

This is a setting of the whole process, so library code never makes it: the command line does,
at start-up, through :func:`configure_for_cli` -- for CPU runs without ``--max-memory`` (a memory
cap keeps glibc's defaults, whose returned memory keeps the cap's figures true), unless
``MATTECLI_KEEP_FREED_MEMORY=0``. Elsewhere than glibc (no ``mallopt``) nothing changes.
"""

from __future__ import annotations

__all__ = ["keep_freed_memory", "keeps_freed_memory", "configure_for_cli"]

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_KEEPING = False


def _mallopt():
    try:
        import ctypes

        return getattr(ctypes.CDLL("libc.so.6"), "mallopt", None)
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Keep freed C-heap blocks for reuse from now on in this process (see the module docstring);
    True when glibc took both settings. Idempotent. A process-wide setting: for programs (the CLI),
    not for libraries."""
    global _KEEPING
    if _KEEPING:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    _KEEPING = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _KEEPING


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` is in effect."""
    return _KEEPING


def configure_for_cli(device: str | None, max_memory: int | None) -> bool:
    """The command line's start-up choice: keep freed memory for a run on the CPU (``device`` ``cpu``, or
    ``auto`` / None without CUDA) without ``max_memory``, unless ``MATTECLI_KEEP_FREED_MEMORY=0``.
    Returns whether freed memory is kept."""
    from mattecli import constants

    if max_memory is not None or not constants.MATTECLI_KEEP_FREED_MEMORY:
        return keeps_freed_memory()
    kind = (device or "auto").strip().lower().split(",")[0].split(":")[0]
    if kind == "auto":
        import torch

        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if kind != "cpu":
        return keeps_freed_memory()
    return keep_freed_memory()
