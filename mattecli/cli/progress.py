"""Progress bars on stderr: one Rich bar for every command (files, images, rows, downloaded bytes).

:class:`Bar` is the one implementation: transient (it disappears when closed), drawn only when
stderr is a terminal and the command is not ``--quiet``, so logs and pipes get no control codes.
:class:`RichDownloadBar` is the same bar counting bytes behind tqdm's interface, for
``huggingface_hub`` and :func:`mattecli.weights.download.fetch`.
"""

from __future__ import annotations

import time
from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from mattecli.units import format_bytes

__all__ = ["Bar", "RichDownloadBar"]


def _columns(unit: str, *, note: bool, elapsed: bool, eta: bool) -> list[ProgressColumn]:
    """The bar's columns: description, bar, then bytes (size, speed, time left) or items (``done/total``,
    the ``note`` field, elapsed time, ``ETA`` and time left)."""
    columns: list[ProgressColumn] = [TextColumn("[bold]{task.description}"), BarColumn()]
    if unit == "bytes":
        return [*columns, DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
    columns.append(MofNCompleteColumn())
    if note:
        columns.append(TextColumn("{task.fields[note]}"))
    if elapsed:
        columns.append(TimeElapsedColumn())
    if eta:
        columns += [TextColumn("ETA"), TimeRemainingColumn()]
    return columns


class Bar:
    """One transient progress bar on stderr; a context manager (closing it removes the bar).

    Args:
        description: plain text before the bar (never read as Rich markup).
        total: the count at which it is full (``None``: unknown).
        completed: where it starts.
        unit: ``"items"`` (shows ``done/total``) or ``"bytes"`` (size, transfer speed, time left).
        note: an items bar shows a free text field after the count (:meth:`set` fills it).
        elapsed, eta: an items bar shows the time elapsed, and ``ETA`` with the time left.
        show: draw it at all (``False`` for ``--quiet``); it is drawn only when stderr is a terminal.
    """

    def __init__(
        self,
        description: str,
        total: float | None = None,
        *,
        completed: float = 0,
        unit: str = "items",
        note: bool = False,
        elapsed: bool = False,
        eta: bool = False,
        show: bool = True,
    ):
        self._progress: Progress | None = None
        self._task = None
        console = _stderr()
        if show and console.is_terminal:
            self._progress = Progress(
                *_columns(unit, note=note, elapsed=elapsed, eta=eta), console=console, transient=True
            )
            self._progress.start()
            self._task = self._progress.add_task(escape(description), total=total, completed=completed, note="")

    @property
    def shown(self) -> bool:
        """Whether the bar is drawn (stderr is a terminal and ``show`` was true)."""
        return self._progress is not None

    def advance(self, n: float = 1) -> None:
        """Move the bar by ``n`` (negative moves it back)."""
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def set(self, *, completed: float | None = None, note: str | None = None) -> None:
        """Set where the bar is and (items bars with ``note``) its text field."""
        if self._progress is not None:
            fields = {} if note is None else {"note": note}
            self._progress.update(self._task, completed=completed, **fields)

    def close(self) -> None:
        """Remove the bar (it may be closed more than once)."""
        if self._progress is not None:
            self._progress.stop()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RichDownloadBar(Bar):
    """A tqdm-compatible download bar: :class:`Bar` counting bytes.

    ``hf_hub_download(tqdm_class=RichDownloadBar)`` and :func:`mattecli.weights.download.fetch`
    create it with ``total``/``initial``/``desc`` (other tqdm arguments are ignored) and call
    ``update(n)`` per chunk (negative after a server ignored a resume request). When stderr is not
    a terminal (a log file, CI) it draws no bar and prints one line when the download starts and one
    when it ends instead (sizes and speed in SI units, :func:`mattecli.units.format_bytes`).
    """

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str | None = None, **_: Any):
        self._desc, self._done, self._start = desc or "download", initial, time.monotonic()
        self._plain = not _stderr().is_terminal
        if self._plain:
            size = f" ({format_bytes(total)})" if total else ""
            resumed = f", resuming at {format_bytes(initial)}" if initial else ""
            _stderr().print(f"[dim]downloading {escape(self._desc)}{size}{resumed}[/]")
        super().__init__(self._desc, total, completed=initial, unit="bytes")

    def update(self, n: int = 1) -> None:
        """tqdm's ``update``: ``n`` more bytes (negative: fewer)."""
        self._done += n
        self.advance(n)

    def close(self) -> None:
        super().close()
        if self._plain:
            seconds = max(time.monotonic() - self._start, 1e-3)
            _stderr().print(
                f"[dim]downloaded {escape(self._desc)}: {format_bytes(self._done)} in {seconds:.1f} s "
                f"({format_bytes(self._done / seconds)}/s)[/]"
            )
        self._plain = False  # close() may be called twice (context manager + explicit)


def _stderr():
    """The stderr console, read when used (tests swap it)."""
    from mattecli.cli import console

    return console.stderr
