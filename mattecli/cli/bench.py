"""``mattecli bench``: quality, speed and memory of a method on a matting benchmark.

``bench`` is a command group whose callback is the benchmark itself, so ``mattecli bench
--dataset D --method M`` runs exactly as a plain command would, and two subcommands manage the
datasets: ``mattecli bench datasets`` (every dataset, its licence, folder, completeness and how to
get it) and ``mattecli bench download NAME`` (fetch a public test set from the Hugging Face Hub).
Without ``--method`` (and without ``--predictions``) the default method runs, said in one note.
Without ``--root`` a dataset is read from its default folder (``$MATTECLI_DATASETS/<name>``) and a
missing public one is fetched first (``--no-download`` or ``MATTECLI_OFFLINE``/``HF_HUB_OFFLINE``
turn that off). ``--merge REPORT`` (repeated) combines partial reports instead of running.
Tables, notes and progress go to stderr; stdout carries only ``--json`` output.

The flags become one :class:`~mattecli.benchmark.settings.BenchSettings`, which checks them; the
run, the reports and their wording are :mod:`mattecli.benchmark`'s.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mattecli.cli import common, options
from mattecli.cli.options import JsonOpt, QuietOpt

__all__ = ["app", "bench", "datasets_command", "download_command", "render_report"]

_DATASETS = ("comp1k", "dist646", "aim500", "am2k", "simd", "folder")

app = typer.Typer(
    name="bench",
    help="Benchmark a matting method on a dataset; `bench datasets` and `bench download` manage the datasets.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DatasetOpt = Annotated[
    str | None, typer.Option("--dataset", "-d", help=f"Benchmark: {', '.join(_DATASETS)}.", show_default=False)
]
RootOpt = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="The dataset folder (default: $MATTECLI_DATASETS/<dataset>, see `mattecli bench datasets`; "
        "a missing public test set is downloaded there first).",
        show_default=False,
    ),
]
NoDownloadOpt = Annotated[
    bool,
    typer.Option(
        "--no-download",
        help="Never download a missing dataset or missing weights (also MATTECLI_OFFLINE=1 or HF_HUB_OFFLINE=1).",
    ),
]
AllowIncompleteOpt = Annotated[
    bool,
    typer.Option(
        "--allow-incomplete",
        help="Score a default-folder dataset that has fewer images than the published test set (refused otherwise).",
    ),
]
MergeOpt = Annotated[
    list[Path] | None,
    typer.Option("--merge", help="Combine partial reports (e.g. of --shard runs) into one; repeat per file."),
]
MethodOpt = Annotated[
    str | None,
    typer.Option(
        "--method",
        "-m",
        help="Method to run (default: the default method, with a note; with --predictions, the label of the mattes).",
        show_default=False,
    ),
]
LimitOpt = Annotated[int | None, typer.Option(help="Only the first N images (in name order).")]
SavePredictionsOpt = Annotated[
    Path | None, typer.Option("--save-predictions", help="Write every scored matte to DIR/<name>.png.")
]
PredictionsOpt = Annotated[
    Path | None,
    typer.Option(
        "--predictions",
        help="Score the mattes in DIR (any tool's output, matched by file name/stem) instead of running a method.",
    ),
]
ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        help="Write the JSON report here; per-image rows are cached next to it (<stem>.rows.jsonl) "
        "so a killed run resumes.",
    ),
]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Reuse the cached rows next to --report.")]
HtmlOpt = Annotated[
    Path | None,
    typer.Option(
        "--html",
        help="Also write a self-contained HTML report here: the metrics beside the paper's, speed and "
        "memory, one row per image with thumbnails (image, GT, prediction, error map), sortable columns "
        "(REPORT.html#sort=sad, #sort=-sad). The thumbnails also go into --report, so --merge can write one.",
        show_default=False,
    ),
]
GradNormOpt = Annotated[
    str,
    typer.Option(
        "--grad-norm",
        help="Grad normalisation: minmax (MATLAB mat2gray, official) or 255 (the Python ports). "
        "Unknown-region datasets only; whole-image datasets use the AIM definition.",
    ),
]
QuantizeOpt = Annotated[
    str, typer.Option(help="Score predictions rounded to 8 or 16 bits (as saved PNGs), or 'float' (unrounded).")
]
LayoutOpt = Annotated[str | None, typer.Option(help="comp1k: force 'merged' (prebuilt) or 'compose' (official lists).")]
BgDirOpt = Annotated[Path | None, typer.Option("--bg-dir", help="comp1k compose layout: the background images folder.")]
ImageDirOpt = Annotated[Path | None, typer.Option("--image-dir", help="folder dataset: image folder.")]
AlphaDirOpt = Annotated[Path | None, typer.Option("--alpha-dir", help="folder dataset: GT alpha folder.")]
TrimapDirOpt = Annotated[Path | None, typer.Option("--trimap-dir", help="folder dataset: trimap folder.")]

_QUANTIZE = {"8": 8, "16": 16, "float": None, "none": None}


# ----------------------------------------------------------------------------- rendering
def _tables(report: dict) -> list:
    """The summary table (ours beside the published numbers) and one table per group key."""
    from rich.table import Table

    from mattecli.benchmark.report_text import COLUMNS, columns, fmt, label, region

    ds, summary, cols = report["dataset"], report["summary"], columns(report)
    published = report.get("published", [])
    title = f"{label(report)} on {ds['title']}: {summary['count']} images, metrics over the {region(report)}"
    table = Table(title=title, title_justify="left", show_edge=False)
    for name in ["", *(COLUMNS[c][0] for c in cols)]:
        table.add_column(name, justify="right" if name else "left")
    table.add_row("[bold]ours[/]", *[fmt(c, summary["metrics"].get(c)) for c in cols])
    for pub in published:
        table.add_row(f"[dim]{pub['label']}[/]", *[fmt(c, pub["metrics"].get(c)) for c in cols])
    tables = [table]
    for key, values in report.get("groups", {}).items():
        if not values:
            continue
        pubs = [p for p in published if key in p.get("groups", {})]
        group = Table(title=f"per {key}", title_justify="left", show_edge=False)
        group.add_column(key)
        for name in ["n", *(COLUMNS[c][0] for c in cols), *(f"SAD {p['label']}" for p in pubs)]:
            group.add_column(name, justify="right")
        for value, stats in values.items():
            row = [value, str(stats["count"])] + [fmt(c, stats["metrics"].get(c)) for c in cols]
            group.add_row(*row, *[fmt("sad", p["groups"][key].get(value)) for p in pubs])
        tables.append(group)
    return tables


_NOTE_STYLE = {"plan": "{}", "source": "[dim]{}[/]", "note": "[yellow]note:[/] {}", "cache": "[dim]{}[/]"}


def render_report(report: dict) -> None:
    """Print the summary, per-group and published-number tables, then the speed, memory and note lines,
    on stderr (the wording: :mod:`mattecli.benchmark.report_text`)."""
    from mattecli.benchmark.report_text import notes, speed_lines

    for table in _tables(report):
        common.stderr.print(table)
    for line in speed_lines(report):
        common.stderr.print(escape(line))
    for note in notes(report):
        common.stderr.print(_NOTE_STYLE[note.kind].format(escape(note.text)))
    if report.get("failures"):
        common.stderr.print(f"[red]{len(report['failures'])} image(s) failed[/] (listed in the report)")


class _LazyBar:
    """A progress bar on stderr (:class:`~mattecli.cli.progress.Bar`: only on a terminal and unless
    quiet) started at its first update, when the total is known; a context manager."""

    def __init__(self, description: str, quiet: bool, **options):
        self.description, self.quiet, self.options, self.bar = description, quiet, options, None

    def set(self, done: int, total: int, note: str | None = None) -> None:
        from mattecli.cli.progress import Bar

        if self.bar is None:
            self.bar = Bar(self.description, total, show=not self.quiet, **self.options)
        self.bar.set(completed=done, note=note)

    def __enter__(self) -> _LazyBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _image_progress(bar: _LazyBar):
    """The per-image callback of a run: each failed image's error line, then the bar (with the SAD)."""

    def callback(row: dict, done: int, total: int) -> None:
        if row.get("status") == "error":
            common.print_error(row["error"], row.get("hint"))
        sad = row.get("metrics", {}).get("sad")
        bar.set(done, total, note="" if sad is None else f"SAD {sad:.2f}")

    return callback


def _emit(result: dict, *, report: Path | None, html: Path | None, json_out: bool, quiet: bool) -> None:
    """Write the report files, print ``--json`` on stdout and the tables on stderr."""
    from mattecli.benchmark.html_report import write_html
    from mattecli.benchmark.reports import write_report

    if report is not None:
        write_report(result, report)
    if html is not None:
        write_html(result, html)
    if json_out:
        common.stdout.print(json.dumps(result, ensure_ascii=False, allow_nan=False), markup=False, highlight=False)
    if not quiet:
        render_report(result)


# ----------------------------------------------------------------------------- settings
def _quantize(text: str) -> int | None:
    try:
        return _QUANTIZE[text.lower()]
    except KeyError:
        raise common.UsageError(f"--quantize must be 8, 16 or float, not {text!r}") from None


def _default_method(predictions: Path | None) -> str | None:
    """Without ``--method``: the default method, unless ``--predictions`` are scored."""
    from mattecli import methods

    return None if predictions is not None else methods.DEFAULT_METHOD


def _in_default_folder(settings, quiet: bool):
    """``settings`` with the dataset's default folder (fetched first when missing and public)."""
    from mattecli.benchmark.run import default_folder

    with _LazyBar("unpacking", quiet) as bar:
        settings, st = default_folder(settings, progress=common.download_progress(quiet), unpack_progress=bar.set)
    if not st.complete and not quiet:
        common.stderr.print(
            f"[yellow]note:[/] {escape(st.title)} in {escape(str(st.path))} is {st.state} ({st.counts()} images); "
            "scoring what is there (--allow-incomplete)"
        )
    return settings


def _run(settings, *, report: Path | None, resume: bool, html: Path | None, json_out: bool, quiet: bool) -> None:
    """Run the benchmark with a progress bar, write and print its report; exit 1 if an image failed."""
    from mattecli.benchmark.row_cache import cache_path_for
    from mattecli.benchmark.run import run_bench

    cache = cache_path_for(report) if (report is not None and resume) else None
    description = f"bench {settings.method or 'predictions'} on {settings.dataset}"
    with _LazyBar(description, quiet, note=True, elapsed=True) as bar:
        result = run_bench(
            settings, cache=cache, progress=_image_progress(bar), download_progress=common.download_progress(quiet)
        )
    _emit(result, report=report, html=html, json_out=json_out, quiet=quiet)
    if not quiet:
        if report is not None:
            common.stderr.print(f"[dim]report: {escape(str(report))}[/]")
        if html is not None:
            common.stderr.print(f"[dim]html report: {escape(str(html))}[/]")
    common.exit_with(common.EXIT_FAILED if result["failures"] else common.EXIT_OK)


def _merge(paths: list[Path], *, report: Path | None, html: Path | None, json_out: bool, quiet: bool) -> None:
    """``bench --merge``: combine partial reports into one, write and print it; exit 1 if an image failed."""
    from mattecli.benchmark.reports import load_report, merge_reports

    result = merge_reports([load_report(path) for path in paths])
    _emit(result, report=report, html=html, json_out=json_out, quiet=quiet)
    common.exit_with(common.EXIT_FAILED if result["failures"] else common.EXIT_OK)


@app.callback(invoke_without_command=True)
@common.handles_errors
def bench(
    ctx: typer.Context,
    dataset: DatasetOpt = None,
    root: RootOpt = None,
    no_download: NoDownloadOpt = False,
    allow_incomplete: AllowIncompleteOpt = False,
    shard: options.ShardOpt = None,
    merge: MergeOpt = None,
    method: MethodOpt = None,
    limit: LimitOpt = None,
    device: options.DeviceOpt = "auto",
    precision: options.PrecisionOpt = "fp32",
    weights: options.WeightsOpt = None,
    strategy: options.StrategyOpt = None,
    variant: options.VariantOpt = None,
    tile_size: options.TileSizeOpt = None,
    tile_overlap: options.TileOverlapOpt = None,
    batch_size: options.BatchSizeOpt = None,
    max_memory: options.MaxMemoryOpt = None,
    scales: options.ScalesOpt = None,
    compile_model: options.CompileOpt = False,
    save_predictions: SavePredictionsOpt = None,
    predictions: PredictionsOpt = None,
    report: ReportOpt = None,
    resume: ResumeOpt = True,
    html: HtmlOpt = None,
    grad_norm: GradNormOpt = "minmax",
    quantize: QuantizeOpt = "8",
    layout: LayoutOpt = None,
    bg_dir: BgDirOpt = None,
    image_dir: ImageDirOpt = None,
    alpha_dir: AlphaDirOpt = None,
    trimap_dir: TrimapDirOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Benchmark a matting method on a dataset: SAD / MSE / Grad / Conn (+ MAD), speed and memory.

    Prints a table beside the published numbers where the method and dataset match;
    --json prints the full report on stdout. Exit code 1 if some images failed.
    Without --method the default method runs. Without --root the dataset's default folder is used
    (public test sets are fetched on first use); `mattecli bench datasets` lists them,
    `mattecli bench download NAME` fetches one.
    """
    from mattecli.benchmark.settings import BenchSettings
    from mattecli.benchmark.thumbnails import THUMB_SIDE

    if ctx.invoked_subcommand is not None:
        return
    if merge:
        return _merge(merge, report=report, html=html, json_out=json_out, quiet=quiet)
    if dataset is None:
        raise common.UsageError("give --dataset (or --merge REPORT ...)", hint="`mattecli bench datasets` lists them")
    folders = {"layout": layout, "bg_dir": bg_dir, "image_dir": image_dir, "alpha_dir": alpha_dir,
               "trimap_dir": trimap_dir}  # fmt: skip
    method_opts = options.method_options(
        device=device, precision=precision, weights=weights, variant=variant, no_download=no_download,
        strategy=strategy, tile_size=tile_size, tile_overlap=tile_overlap, batch_size=batch_size,
        max_memory=max_memory, scales=scales, compile_model=compile_model,
    )  # fmt: skip
    settings = BenchSettings(
        dataset=dataset,
        root=None if root is None else str(root),
        method=method or _default_method(predictions),
        predictions=None if predictions is None else str(predictions),
        options=replace(method_opts, device=device),  # one process: a device list is refused, not spread
        shard=options.shard_of(shard),
        limit=limit,
        grad_norm=grad_norm,
        quantize=_quantize(quantize),
        save_predictions=None if save_predictions is None else str(save_predictions),
        dataset_options={k: str(v) for k, v in folders.items() if v is not None},
        allow_incomplete=allow_incomplete,
        thumbnails=None if html is None else THUMB_SIDE,
    )
    settings.validate()
    if method is None and predictions is None and not quiet:  # before a dataset download, not after
        common.stderr.print(
            f"[yellow]note:[/] no --method given: benchmarking {settings.method}, the default method "
            "(--method NAME runs another; --predictions DIR scores existing mattes)"
        )
    if settings.root is None:
        settings = _in_default_folder(settings, quiet)
    _run(settings, report=report, resume=resume, html=html, json_out=json_out, quiet=quiet)


# ----------------------------------------------------------------------------- datasets / download
_STATE_STYLE = {"complete": "green", "incomplete": "yellow", "mismatch": "yellow", "missing": "dim"}


@app.command("datasets")
@common.handles_errors
def datasets_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object per dataset on stdout.")] = False,
) -> None:
    """List the benchmark datasets: licence, folder, completeness (found/expected images), how to get them.

    A dataset is looked up in $MATTECLI_DATASETS/<name> (default: the datasets folder of the
    mattecli cache) in either layout its loader reads.
    """
    from rich.table import Table

    from mattecli.benchmark import store

    rows = store.status()
    if json_out:
        for row in rows:
            common.stdout.print(json.dumps(row.to_json(), ensure_ascii=False), markup=False, highlight=False)
        return
    table = Table(
        title=f"benchmark datasets in {escape(str(store.datasets_root()))}",
        title_justify="left",
        show_edge=False,
    )
    for col in ("dataset", "licence", "status", "images", "how to get it"):
        table.add_column(col, overflow="fold", justify="right" if col == "images" else "left")
    for row in rows:
        table.add_row(
            f"{row.name}\n[dim]{escape(row.title)}[/]",
            escape(row.entry.license),
            f"[{_STATE_STYLE[row.state]}]{row.state}[/]",
            row.counts(),
            escape(row.how_to_get()),
        )
    common.stderr.print(table)
    for row in rows:
        where = escape(str(row.path))
        if row.problem:
            common.stderr.print(f"[dim]{row.name} ({where}): {escape(row.problem)}[/]")
        elif row.state == "missing":
            common.stderr.print(f"[dim]{row.name}: put {escape(row.entry.layout)} in {where}[/]")


@app.command("download")
@common.handles_errors
def download_command(
    name: Annotated[
        str, typer.Argument(help="Dataset name (`mattecli bench datasets` lists them).", show_default=False)
    ],
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision",
            help="Hub commit to fetch instead of the manifest's pinned one (a branch or tag is resolved to its "
            "commit, which is recorded).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download and unpack again over a complete copy.")] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fetch a public test set from the Hugging Face Hub into its default folder (pinned revision).

    The parquet files are downloaded into the Hugging Face cache (HF_HOME, HF_ENDPOINT and
    HF_HUB_OFFLINE honoured) and unpacked into the layout the loader reads. Sets whose licence
    forbids redistribution are explained instead: where to request them and where to put them.
    """
    from mattecli.benchmark.download import fetch

    with _LazyBar("unpacking", quiet) as bar:
        st, fetched = fetch(
            name, revision=revision, force=force, progress=common.download_progress(quiet), unpack_progress=bar.set
        )
    if json_out:
        common.stdout.print(json.dumps(st.to_json(), ensure_ascii=False), markup=False, highlight=False)
    if not quiet:
        origin = ""
        if st.source:
            origin = (
                f" from {st.source.get('repo_id')}@{str(st.source.get('revision'))[:12]} ({st.source.get('license')})"
            )
        verb = "downloaded" if fetched else "already complete:"
        common.stderr.print(
            f"[green]{verb}[/] {st.name}: {st.counts()} images in {escape(str(st.path))}{escape(origin)}"
        )
