"""What every command shares: error mapping, consoles, per-file reporting, exit codes.

The options and arguments commands share are declared in :mod:`mattecli.cli.options`.

Rules kept here so commands stay thin:

* stdout carries only results (``--json`` lines, ``weights path``); everything
  else (progress, tables, errors) goes to stderr;
* a typed :class:`~mattecli.errors.MatteCliError` becomes one red line plus an
  optional hint and an exit code (see ``EXIT_CODES``); ``MATTECLI_DEBUG=1``
  re-raises so the traceback shows;
* exit codes: 0 all done, 1 some inputs failed, 2 usage error (nothing done);
  interrupted: 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP);
* file names are shown byte-exact: ``--json`` rows are written as JSON (escaped only as JSON
  requires), and a name in an ``error:`` / ``warning:`` line is written as it is, never read as
  Rich markup (``[red]``) or emoji codes (``:fire:``);
* signal handlers (SIGTERM, SIGHUP) are installed here, by :func:`handles_errors`, for the
  duration of a command, and the previous ones restored after: library code installs none.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from mattecli import constants
from mattecli.cli.console import stderr, stdout  # one pair of consoles for every command
from mattecli.cli.progress import Bar
from mattecli.errors import (  # noqa: F401  (re-exported for commands)
    DatasetError,
    DeviceError,
    InputError,
    MatteCliError,
    OutputError,
    UsageError,
    WeightsCacheError,
    WeightsError,
)

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_CODES",
    "stderr",
    "stdout",
    "handles_errors",
    "print_error",
    "print_json",
    "write_line",
    "Terminated",
    "Reporter",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Exit code per error family when the error stops a whole command (subclasses first).
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (UsageError, EXIT_USAGE),
    (WeightsCacheError, EXIT_FAILED),  # the run was right; the disk or the cache folder was not
    (WeightsError, EXIT_USAGE),
    (DeviceError, EXIT_USAGE),
    (DatasetError, EXIT_USAGE),
    (OutputError, EXIT_USAGE),
    (InputError, EXIT_FAILED),
    (MatteCliError, EXIT_FAILED),
]


def exit_code_for(err: BaseException) -> int:
    for family, code in EXIT_CODES:
        if isinstance(err, family):
            return code
    return EXIT_FAILED


def _styled(console, label: str, style: str) -> str:
    """``label`` in ``style`` as the console would draw it (ANSI codes only where it draws colour)."""
    with console.capture() as capture:
        console.print(Text(label, style=style), end="")
    return capture.get()


def write_line(console, text: str, *, label: str = "", style: str = "") -> None:
    """One line on ``console``'s stream: ``label`` (styled) then ``text`` exactly as given.

    ``text`` is never read as Rich markup or emoji codes, and its tabs, backslashes and other
    characters reach the stream unchanged (names that are not valid UTF-8 as their original bytes).
    On a terminal the line goes through Rich instead (so that it lands above a progress bar), still
    as plain text. A stream that cannot be written any more (a closed terminal after SIGHUP) is
    left alone.
    """
    try:
        if _is_tty(console.file):
            line = Text.assemble((label, style), " ", text) if label else Text(text)
            console.print(line, markup=False, emoji=False, highlight=False, soft_wrap=True)
        else:
            _write(console.file, (_styled(console, label, style) + " " if label else "") + text + "\n")
    except (OSError, ValueError):
        pass


def _is_tty(file: Any) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _write(file: Any, text: str) -> None:
    """``text`` on ``file`` as UTF-8, undecodable bytes of file names (surrogate escapes) as they were."""
    buffer = getattr(file, "buffer", None)
    if buffer is None:  # a text-only stream (StringIO)
        file.write(text)
    else:
        file.flush()
        buffer.write(text.encode("utf-8", "surrogateescape"))
    file.flush()


def print_error(message: str, hint: str | None = None) -> None:
    """One red ``error:`` line on stderr (the message exactly as given), plus an optional dim hint line."""
    write_line(stderr, message, label="error:", style="bold red")
    if hint:
        write_line(stderr, hint, label="hint:", style="dim")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (a fallback taken, e.g. tiles after out-of-memory; an input skipped) as one
    yellow line."""
    write_line(stderr, str(message), label="warning:", style="yellow")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_line(row: dict) -> str:
    """``row`` as one JSON line: non-ASCII text as it is, only what JSON requires escaped (a name that
    is not valid UTF-8 keeps its undecodable bytes as ``\\udcXX`` escapes, which decode back to them)."""
    text = json.dumps(row, ensure_ascii=False, default=str)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def print_json(row: dict) -> None:
    """One ``--json`` row on stdout, byte-exact (never through Rich's markup or emoji codes)."""
    _write(stdout.file, json_line(row) + "\n")


@contextlib.contextmanager
def _library_warnings_quiet():
    """While a command runs: third-party warnings (numpy, pymatting, Pillow, torch...) are not shown,
    mattecli's own show as one ``warning:`` line; ``MATTECLI_DEBUG=1`` leaves Python's defaults."""
    if constants.MATTECLI_DEBUG:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"mattecli(\.|$)")
        warnings.showwarning = _show_warning
        yield


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by :func:`handles_errors`' handler for SIGTERM or SIGHUP.

    A ``KeyboardInterrupt``, so that everything that cleans up after Ctrl-C (an atomic write
    removing its temporary file, the job runner cancelling its queued work, the devices backend
    stopping its workers) cleans up after these signals the same way.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


#: the signals a command stops on like Ctrl-C (SIGTERM: kill, timeout, SLURM, Kubernetes; SIGHUP: the
#: terminal closed)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _signals_stop_the_command():
    """While a command runs, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    Only from the main thread (``signal`` allows no other); a signal that is ignored (``nohup``
    ignores SIGHUP) stays ignored. After the first, later ones are ignored so that the clean-up
    finishes. The previous handlers are restored when the command ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def stop(signum: int, frame: Any) -> None:
        for sig in previous:
            with contextlib.suppress(OSError, ValueError):
                signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    for sig in STOP_SIGNALS:
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, stop)
        except (OSError, ValueError):
            continue
    try:
        yield
    finally:
        for sig, old in previous.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _stopped(err: KeyboardInterrupt) -> int:
    """One line for an interrupted command; returns its exit code (128 + the signal: 130 for Ctrl-C)."""
    if isinstance(err, Terminated):
        what, code = f"terminated ({err.name})", 128 + err.signum
    else:
        what, code = "interrupted", 130
    with contextlib.suppress(OSError, ValueError):
        stderr.print(f"[yellow]{what}[/]: finished outputs are kept; run again to resume")
    return code


def handles_errors(func: Callable) -> Callable:
    """Decorate a command: typed errors -> one-line message + exit code; Ctrl-C -> 130,
    SIGTERM -> 143, SIGHUP -> 129, each with one line.

    Library warnings are kept off stderr meanwhile (see ``_library_warnings_quiet``), and SIGTERM /
    SIGHUP stop the command the way Ctrl-C does (see ``_signals_stop_the_command``): the file being
    written is completed or removed, never left as a temporary file.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _signals_stop_the_command():  # held through the clean-up: a second SIGTERM cannot cut it short
            try:
                with _library_warnings_quiet():
                    return func(*args, **kwargs)
            except MatteCliError as err:
                if constants.MATTECLI_DEBUG:
                    raise
                print_error(err.message, err.hint)
                raise typer.Exit(exit_code_for(err)) from None
            except KeyboardInterrupt as err:
                code = _stopped(err)
                if _abandoned_writes():  # a write blocked for good: its thread would hold the exit forever
                    _exit_now(code)
                raise typer.Exit(code) from None

    return wrapper


#: Seconds a stopping command gives the writes in flight in I/O threads to finish.
STOP_GRACE_SECONDS = 5.0


def _abandoned_writes() -> bool:
    """Let this process's atomic writes in flight finish (up to ``STOP_GRACE_SECONDS``); whether any
    had to be abandoned (their temporary files are removed)."""
    io = sys.modules.get("mattecli.io")  # nothing was written when it was never imported
    if io is None:
        return False
    try:
        return bool(io.abandon_writes(STOP_GRACE_SECONDS))
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, still remove what is left
        return bool(io.abandon_writes(0))


def _exit_now(code: int) -> None:
    """Exit without joining the I/O thread that is stuck in a write (its temporary file is gone)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# ----------------------------------------------------------------------------- reporting
class Reporter:
    """Shows progress for a batch and tallies per-file results.

    Use as a context manager; call :meth:`add` with each result dict
    (``input``, ``output``, ``status`` in ok/skipped/error, ``seconds``, ``error``...).
    A progress bar (:class:`~mattecli.cli.progress.Bar`: done/total, images per second, elapsed,
    ETA) is drawn on stderr only when stderr is a terminal, not ``quiet`` and ``total > 1``;
    ``json_lines`` prints each result as one JSON object on stdout.
    """

    def __init__(self, total: int, *, title: str, quiet: bool = False, json_lines: bool = False):
        self.total = total
        self.title = title
        self.quiet = quiet
        self.json_lines = json_lines
        self.results: list[dict] = []
        self._bar: Bar | None = None

    def __enter__(self) -> Reporter:
        if self.total > 1:
            self._bar = Bar(self.title, self.total, note=True, elapsed=True, eta=True, show=not self.quiet)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def add(self, result: dict) -> None:
        self.results.append(result)
        if result["status"] == "error":
            print_error(result["error"] or "failed", result.get("hint"))
        if self.json_lines:
            print_json({k: v for k, v in result.items() if k != "hint"})
        if self._bar is not None and self._bar.shown:
            done = [r for r in self.results if r["status"] == "ok"]
            busy = sum(r.get("seconds") or 0.0 for r in done)
            self._bar.advance(1)
            self._bar.set(note=f"{len(done) / busy:.2f} img/s" if busy > 0 else "")

    @property
    def failed(self) -> int:
        return sum(r["status"] == "error" for r in self.results)

    def summary(self) -> None:
        """Print a summary table on stderr (unless quiet, or a single file: its error line says it all)."""
        if self.quiet or self.total <= 1:
            return
        counts = {s: sum(r["status"] == s for r in self.results) for s in ("ok", "skipped", "error")}
        seconds = sum(r.get("seconds") or 0.0 for r in self.results if r["status"] == "ok")
        table = Table(title=self.title, title_justify="left", show_edge=False)
        for col in ("done", "skipped", "failed", "seconds", "s/image"):
            table.add_column(col, justify="right")
        per = f"{seconds / counts['ok']:.3f}" if counts["ok"] else "-"
        table.add_row(
            str(counts["ok"]),
            str(counts["skipped"]),
            f"[red]{counts['error']}[/]" if counts["error"] else "0",
            f"{seconds:.2f}",
            per,
        )
        stderr.print(table)
        if counts["skipped"] and not counts["ok"] and not counts["error"]:
            stderr.print("[dim]all outputs already exist; use --overwrite to redo them[/]")

    def exit_code(self) -> int:
        return EXIT_FAILED if self.failed else EXIT_OK


def exit_with(code: int) -> None:
    if code:
        raise typer.Exit(code)


def in_stdin(inputs: list[str]) -> Any:
    """stdin to read ``-`` from (kept a function so tests can monkeypatch ``sys.stdin``)."""
    return sys.stdin if "-" in inputs else None


def report(jobs: list | int, results: Any, *, title: str, quiet: bool, json_lines: bool) -> None:
    """Consume a batch's result iterator with a :class:`Reporter`; exit 1 if any file failed.

    ``jobs`` is the planned job list (or just how many there are).
    """
    total = jobs if isinstance(jobs, int) else len(jobs)
    with Reporter(total, title=title, quiet=quiet, json_lines=json_lines) as reporter:
        for result in results:
            reporter.add(result)
    reporter.summary()
    exit_with(reporter.exit_code())


# ----------------------------------------------------------------------------- weights on first use
def download_progress(quiet: bool = False) -> type | None:
    """The download bar class for first-use weight downloads (stderr only; none with ``--quiet``)."""
    if quiet:
        return None
    from mattecli.cli.progress import RichDownloadBar

    return RichDownloadBar
