"""The two consoles of every command: results on stdout, everything else (progress, tables, errors) on stderr."""

from __future__ import annotations

from rich.console import Console

__all__ = ["stderr", "stdout"]

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)
