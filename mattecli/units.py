"""Sizes for messages: one byte formatter, in SI units.

The convention: file sizes, downloads and transfer rates are shown in SI units (powers of 1000:
``kB``, ``MB``, ``GB``), as download tools and Rich's download columns show them. Memory budgets
are the one exception: :func:`mattecli.runtime.memory.format_memory` writes them in powers of 1024
the way ``--max-memory`` reads them (``3.2G``).
"""

from __future__ import annotations

__all__ = ["format_bytes"]

_SI_UNITS = ("kB", "MB", "GB", "TB")


def format_bytes(n: float | None) -> str:
    """``n`` bytes in SI units: ``"512 B"``, ``"1.2 kB"``, ``"221.5 MB"``, ``"6.5 GB"`` (one decimal
    from kB up, the largest unit whose value is below 1000, at most TB); ``"?"`` for ``None``."""
    if n is None:
        return "?"
    if abs(n) < 1000:
        return f"{n:.0f} B"
    for unit in _SI_UNITS:
        n /= 1000
        if abs(n) < 1000 or unit == _SI_UNITS[-1]:
            break
    return f"{n:.1f} {unit}"
