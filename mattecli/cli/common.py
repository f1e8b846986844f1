"""What every command shares: error mapping, consoles, per-file reporting, common options.

Rules kept here so commands stay thin:

* stdout carries only results (``--json`` lines, ``weights path``); everything
  else (progress, tables, errors) goes to stderr;
* a typed :class:`~mattecli.errors.MatteCliError` becomes one red line plus an
  optional hint and an exit code (see ``EXIT_CODES``); ``MATTECLI_DEBUG=1``
  re-raises so the traceback shows;
* exit codes: 0 all done, 1 some inputs failed, 2 usage error (nothing done).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mattecli import constants
from mattecli.cli.console import stderr, stdout  # one pair of consoles for every command
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
    "Reporter",
    "JsonOpt",
    "QuietOpt",
    "OverwriteOpt",
    "RecursiveOpt",
    "BitDepthOpt",
    "MaxPixelsOpt",
    "ShardOpt",
    "StrategyOpt",
    "VariantOpt",
    "DeviceOpt",
    "PrecisionOpt",
    "WeightsOpt",
    "method_options",
    "shard_of",
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


def print_error(message: str, hint: str | None = None) -> None:
    """One red ``error:`` line on stderr, plus an optional dim hint line."""
    stderr.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        stderr.print(f"[dim]hint: {escape(hint)}[/]")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings (a fallback taken, e.g. tiles after out-of-memory) as one yellow line."""
    stderr.print(f"[yellow]warning:[/] {escape(str(message))}")


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


def handles_errors(func: Callable) -> Callable:
    """Decorate a command: typed errors -> one-line message + exit code, Ctrl-C -> 130.

    Library warnings are kept off stderr meanwhile (see ``_library_warnings_quiet``).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _library_warnings_quiet():
                return func(*args, **kwargs)
        except MatteCliError as err:
            if constants.MATTECLI_DEBUG:
                raise
            print_error(err.message, err.hint)
            raise typer.Exit(exit_code_for(err)) from None
        except KeyboardInterrupt:
            stderr.print("[yellow]interrupted[/]: finished outputs are kept; run again to resume")
            raise typer.Exit(130) from None

    return wrapper


# ----------------------------------------------------------------------------- reporting
class Reporter:
    """Shows progress for a batch and tallies per-file results.

    Use as a context manager; call :meth:`add` with each result dict
    (``input``, ``output``, ``status`` in ok/skipped/error, ``seconds``, ``error``...).
    A progress bar is drawn on stderr only when stderr is a terminal and not ``quiet``;
    ``json_lines`` prints each result as one JSON object on stdout.
    """

    def __init__(self, total: int, *, title: str, quiet: bool = False, json_lines: bool = False):
        self.total = total
        self.title = title
        self.quiet = quiet
        self.json_lines = json_lines
        self.results: list[dict] = []
        self._progress: Progress | None = None
        self._task = None

    def __enter__(self) -> Reporter:
        if not self.quiet and stderr.is_terminal and self.total > 1:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=stderr,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=self.total, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def add(self, result: dict) -> None:
        self.results.append(result)
        if result["status"] == "error":
            print_error(result["error"] or "failed", result.get("hint"))
        if self.json_lines:
            row = {k: v for k, v in result.items() if k != "hint"}
            stdout.print(json.dumps(row, ensure_ascii=False), markup=False, highlight=False)
        if self._progress is not None:
            done = [r for r in self.results if r["status"] == "ok"]
            busy = sum(r.get("seconds") or 0.0 for r in done)
            rate = f"{len(done) / busy:.2f} img/s" if busy > 0 else ""
            self._progress.update(self._task, advance=1, rate=rate)

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


# ----------------------------------------------------------------------------- options
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per processed file on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary (errors still show).")]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Redo outputs that already exist (default: skip them, so runs resume)."),
]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders of input folders.")]
BitDepthOpt = Annotated[int, typer.Option("--bit-depth", help="Bits per channel of PNG outputs: 8 or 16.")]
MaxPixelsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        help="Refuse images with more pixels than this (decompression-bomb guard; "
        "default MATTECLI_MAX_PIXELS or 200 MP).",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="K/N: process only shard K of N (by a hash of each input's relative path), so N processes or "
        "cluster array jobs split a folder with no coordination.",
    ),
]


def _strategies_help() -> str:
    from mattecli import methods

    groups: dict[tuple[str, ...], list[str]] = {}
    for spec in methods.specs():
        groups.setdefault(spec.strategies, []).append(spec.name)
    listed = "; ".join(f"{', '.join(names)}: {', '.join(strats)}" for strats, names in groups.items())
    return (
        f"Test strategy. {listed}. 'tiled' runs global stages at reduced scale and details on "
        "full-resolution tiles; 'auto' tiles only what does not fit --max-memory."
    )


def _variants_help() -> str:
    from mattecli import methods

    several = [f"{s.name}: {', '.join(v.name for v in s.variants)}" for s in methods.specs() if len(s.variants) > 1]
    return f"Weights variant of methods that have several ({'; '.join(several)})."


StrategyOpt = Annotated[str | None, typer.Option(help=_strategies_help())]


def trimap_predictors() -> list[str]:
    """Methods that predict trimaps (``--trimap auto``, ``trimap --from-image``), the default first."""
    from mattecli import methods

    return [s.name for s in methods.specs() if s.capabilities.predicts_trimap]


TrimapMethodOpt = Annotated[
    str | None,
    typer.Option(
        help=f"With --trimap auto: the method that predicts the trimaps ({', '.join(trimap_predictors())}; "
        f"default {trimap_predictors()[0]}).",
        show_default=False,
    ),
]
TrimapVariantOpt = Annotated[
    str | None,
    typer.Option(help="With --trimap auto: the trimap method's weights variant.", show_default=False),
]
TileSizeOpt = Annotated[
    int | None, typer.Option(help="Tile side in pixels for tiled inference (default: from --max-memory).")
]
TileOverlapOpt = Annotated[
    int | None,
    typer.Option(help="Tile halo in pixels: context seen on each side and discarded (default: the method's margin)."),
]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Tiles or patches per forward pass.")]
MaxMemoryOpt = Annotated[
    str | None,
    typer.Option(
        help="Peak memory of the run (process RAM on CPU, allocated GPU memory on CUDA), e.g. 6G; tiles and "
        "batches are sized to stay under it (default: what is in use plus 80% of free GPU memory / half the RAM, 90% with --strategy whole)."
    ),
]
ScalesOpt = Annotated[
    str | None,
    typer.Option(
        help="Multi-scale inference as the method defines it. aim: GLANCE,FOCUS ratios (official 0.25,0.5); "
        "sim: patch-analysis scales x 320 px (official 1,2.5)."
    ),
]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the network (pays off on long runs).")]
VariantOpt = Annotated[str | None, typer.Option(help=_variants_help())]
DeviceOpt = Annotated[
    str,
    typer.Option(help="auto, cpu, cuda or cuda:N; a list (cuda:0,cuda:1) or 'all' runs one worker process per device."),
]
PrecisionOpt = Annotated[
    str, typer.Option(help="fp32, fp16 or bf16 (deep methods; autocast on CUDA, bf16 also on CPU).")
]
WeightsOpt = Annotated[Path | None, typer.Option(help="Weights file overriding the manifest (deep methods).")]


def method_options(
    *,
    device: str = "auto",
    precision: str = "fp32",
    weights: Path | None = None,
    variant: str | None = None,
    no_download: bool = False,
    strategy: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    batch_size: int | None = None,
    max_memory: str | None = None,
    scales: str | None = None,
    compile_model: bool = False,
):
    """:class:`~mattecli.methods.base.MethodOptions` from the shared flags (a bad --max-memory is a usage
    error here; everything else is checked against the method's spec by the pipeline, before any work).

    A device list (``cuda:0,cuda:1``, ``all``) is the backend's business: the options then name the
    first device, and each worker its own.
    """
    from mattecli.methods.base import EngineOptions, MethodOptions
    from mattecli.runtime.memory import parse_memory

    single = device if "," not in device and device.strip().lower() != "all" else "auto"
    return MethodOptions(
        variant=variant,
        weights=weights,
        device=single,
        precision=precision,
        download=not no_download,
        engine=EngineOptions(
            strategy=strategy,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
            max_memory=None if max_memory is None else parse_memory(max_memory),
            scales=scales,
            compile=compile_model,
        ),
    )


def engine_fields(options) -> dict:
    """The engine options that are set, as a plain dict (what bench records in its settings)."""
    from dataclasses import asdict

    return {k: v for k, v in asdict(options.engine).items() if v}


InputsArg = Annotated[
    list[str],
    typer.Argument(help="Image files, folders, glob patterns, or - to read paths from stdin.", show_default=False),
]
OutArg = Annotated[
    Path,
    typer.Argument(help="Output folder (or output file when there is exactly one input).", show_default=False),
]


def shard_of(text: str | None) -> tuple[int, int] | None:
    """Parse ``--shard`` (None when not given)."""
    from mattecli.io import parse_shard

    return None if text is None else parse_shard(text)


def check_max_pixels(max_pixels: int | None) -> int:
    """The pixel limit of a run (``--max-pixels``, else ``MATTECLI_MAX_PIXELS``); a bad one is a usage error."""
    from mattecli.io import pixel_limit

    return pixel_limit(max_pixels)


def check_bit_depth(bit_depth: int) -> int:
    if bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    return bit_depth


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
NoDownloadOpt = Annotated[
    bool,
    typer.Option(
        "--no-download",
        help="Never download missing weights (also MATTECLI_OFFLINE=1 or HF_HUB_OFFLINE=1); "
        "without it, a method's missing weights are fetched before the first image.",
    ),
]


def download_progress(quiet: bool = False) -> type | None:
    """The download bar class for first-use weight downloads (stderr only; none with ``--quiet``)."""
    if quiet:
        return None
    from mattecli.cli.progress import RichDownloadBar

    return RichDownloadBar
