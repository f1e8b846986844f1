"""How the C heap hands memory back: kept for reuse (fast) or returned to the OS (exact budgets).

glibc serves every block above its mmap threshold (at most 32 MiB) with a fresh mapping and
unmaps it on free. A large image's feature maps are far above that (SIM's layer-4 map of a
5.2 MP photo is 668 MB), so each new map is page-faulted in, zero-filled by the kernel,
and handed back when freed, over and over: on one core allocating and touching 668 MB took
0.42 s against 0.08 s for writing the same bytes in place. Once freed blocks were kept, SIM's
matting network alone at 2 MP ran 36 s instead of 48-50 s, and ``matte --method sim`` at
5.2 MP took 297 s instead of 520 s on its first image and 212 s instead of 233 s on the next
(``bench/RESULTS.md``, "Issue 22"). This is the reason PyTorch's CPU tuning guides
preload jemalloc or tcmalloc; here the same effect comes from glibc's own ``mallopt``.

:func:`keep_freed_memory` turns mappings off (``M_MMAP_MAX`` 0) and heap trimming off
(``M_TRIM_THRESHOLD``), so freed blocks stay resident and are reused. The price is memory:
the heap keeps its high-water mark, and torch's aligned allocations cannot reuse a freed block
of exactly their own size, so the heap grows for a few rounds before it settles: SIM's peak
RSS was 22% higher at 2 MP and 28% at 5.2 MP, then flat over repeated passes (+7% on the
second, nothing after); a bare loop of four blocks settled at 1.3-2.9x its live size, after 2 to
15 rounds. That is why a run under ``--max-memory`` leaves glibc as it is: the budget planner
measures what a pass adds, and memory handed back keeps that measurement true. Elsewhere than
glibc (no ``mallopt``) nothing changes.
"""

from __future__ import annotations

__all__ = ["keep_freed_memory", "keeps_freed_memory"]

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
    True when glibc took both settings. Idempotent."""
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
