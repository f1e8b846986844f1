"""Download progress on stderr: a tqdm-compatible Rich bar for huggingface_hub and mattecli's own downloads."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

__all__ = ["RichDownloadBar", "human_bytes"]


class RichDownloadBar:
    """A tqdm-compatible download bar drawn with Rich on stderr.

    ``hf_hub_download(tqdm_class=RichDownloadBar)`` and :func:`mattecli.weights.download.fetch`
    create it with ``total``/``initial``/``desc`` and call ``update(n)`` per chunk (negative after a
    server ignored a resume request). When stderr is not a terminal (a log file, CI) it draws no
    bar and prints one line when the download starts and one when it ends instead.
    """

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str | None = None, **_: Any):
        import time

        self._desc, self._total, self._done, self._start = desc or "download", total, initial, time.monotonic()
        self._plain = not _stderr().is_terminal
        if self._plain:
            size = f" ({human_bytes(total)})" if total else ""
            resumed = f", resuming at {human_bytes(initial)}" if initial else ""
            _stderr().print(f"[dim]downloading {escape(self._desc)}{size}{resumed}[/]")
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=_stderr(),
            transient=True,
            disable=not _stderr().is_terminal,
        )
        self._progress.start()
        self._task = self._progress.add_task(escape(desc or "download"), total=total, completed=initial)

    def update(self, n: int = 1) -> None:
        self._done += n
        self._progress.advance(self._task, n)

    def close(self) -> None:
        import time

        self._progress.stop()
        if self._plain:
            seconds = max(time.monotonic() - self._start, 1e-3)
            _stderr().print(
                f"[dim]downloaded {escape(self._desc)}: {human_bytes(self._done)} in {seconds:.1f} s "
                f"({human_bytes(self._done / seconds)}/s)[/]"
            )
        self._plain = False  # close() may be called twice (context manager + explicit)

    def __enter__(self) -> RichDownloadBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def human_bytes(n: float | None) -> str:
    """Bytes in SI units, as download tools print them (``221.5 MB``)."""
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _stderr():
    """The stderr console, read when used (tests swap it)."""
    from mattecli.cli import console

    return console.stderr
