"""The two consoles of every command: results on stdout, everything else (progress, tables, errors) on stderr.

Neither replaces emoji codes (a file named ``:fire: shot.png`` is printed as named); text that holds
a file name is printed as plain text, never as Rich markup (see :func:`mattecli.cli.common.write_line`).
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["stderr", "stdout"]

stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
stdout = Console(highlight=False, soft_wrap=True, emoji=False)
