"""``mattecli bench``: quality, speed and memory of a method on a matting benchmark.

``bench`` is a command group whose callback is the benchmark itself, so ``mattecli bench
--dataset D --method M`` runs exactly as a plain command would, and two subcommands manage the
datasets: ``mattecli bench datasets`` (every dataset, its licence, folder, completeness and how to
get it) and ``mattecli bench download NAME`` (fetch a public test set from the Hugging Face Hub).
Without ``--root`` a dataset is read from its default folder (``$MATTECLI_DATASETS/<name>``) and a
missing public one is fetched first (``--no-download`` or ``MATTECLI_OFFLINE``/``HF_HUB_OFFLINE``
turn that off). Tables, notes and progress go to stderr; stdout carries only ``--json`` output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mattecli.cli import common
from mattecli.cli.common import JsonOpt, QuietOpt
from mattecli.pipelines.report_html import COLUMNS as _COLUMNS  # one table: CLI and HTML report
from mattecli.pipelines.report_html import fmt as _fmt
from mattecli.pipelines.report_html import format_bytes as _bytes

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

def _columns(mode: str) -> list[str]:
    if mode == "whole":
        return ["sad", "mse", "mad", "grad", "conn", "sad_trans", "sad_fg", "sad_bg"]
    return ["sad", "mse", "grad", "conn"]  # MAD is in the JSON report; DIM-style tables omit it


def render_report(report: dict) -> None:
    """Print the summary, per-group and published-number tables plus speed/memory lines on stderr."""
    from rich.table import Table

    ds = report["dataset"]
    mode = ds["metric_mode"]
    summary = report["summary"]
    cols = [c for c in _columns(mode) if c in summary["metrics"] or c in ("sad", "mse", "grad", "conn")]
    label = report.get("method") or "predictions"
    region = "unknown region (trimap == 128)" if mode == "unknown" else "whole image"
    table = Table(
        title=f"{label} on {ds['title']}: {summary['count']} images, metrics over the {region}",
        title_justify="left",
        show_edge=False,
    )
    table.add_column("")
    for c in cols:
        table.add_column(_COLUMNS[c][0], justify="right")
    table.add_row("[bold]ours[/]", *[_fmt(c, summary["metrics"].get(c)) for c in cols])
    for pub in report.get("published", []):
        table.add_row(f"[dim]{pub['label']}[/]", *[_fmt(c, pub["metrics"].get(c)) for c in cols])
    common.stderr.print(table)

    published = report.get("published", [])
    for key, values in report.get("groups", {}).items():
        if not values:
            continue
        gt = Table(title=f"per {key}", title_justify="left", show_edge=False)
        gt.add_column(key)
        gt.add_column("n", justify="right")
        for c in cols:
            gt.add_column(_COLUMNS[c][0], justify="right")
        pubs = [p for p in published if key in p.get("groups", {})]
        for p in pubs:
            gt.add_column(f"SAD {p['label']}", justify="right")
        for value, stats in values.items():
            row = [value, str(stats["count"])] + [_fmt(c, stats["metrics"].get(c)) for c in cols]
            row += [_fmt("sad", p["groups"][key].get(value)) for p in pubs]
            gt.add_row(*row)
        common.stderr.print(gt)

    speed = report["speed"]
    if speed["images"]:
        parts = []
        if speed["images_per_second"]:
            parts.append(f"{speed['images_per_second']:.2f} images/s ({speed['seconds_per_image']:.3f} s/image)")
        if speed["seconds_per_megapixel"]:
            parts.append(f"model {speed['seconds_per_megapixel']:.3f} s/MP")
        parts.append(
            f"model {speed['model_seconds']:.2f} s, I/O {speed['io_seconds']:.2f} s, "
            f"metrics {speed['metric_seconds']:.2f} s over {speed['megapixels']:.3g} MP"
        )
        common.stderr.print("speed: " + "; ".join(parts))
    mem = report["memory"]
    device = report.get("device") or "-"
    common.stderr.print(
        f"peak memory: CPU RSS {_bytes(mem.get('peak_rss_bytes'))}"
        + (f", CUDA {_bytes(mem['cuda_peak_bytes'])}" if mem.get("cuda_peak_bytes") else "")
        + f"  (device {device})"
    )
    from mattecli.pipelines.report_html import plan_line

    if plan_line(report):
        common.stderr.print(escape(plan_line(report)))
    source = ds.get("source") or {}
    if source.get("repo_id"):
        common.stderr.print(
            f"[dim]dataset: {escape(str(source['repo_id']))}@{escape(str(source.get('revision'))[:12])} "
            f"({escape(str(source.get('hub_license')))}) in {escape(str(ds.get('root')))}[/]"
        )
    if ds.get("complete") is False:
        common.stderr.print(
            f"[yellow]note:[/] {ds.get('found')} of the {ds.get('expected')} {escape(ds['title'])} test images "
            f"were found under {escape(str(ds.get('root')))}: not the full test set, so the numbers are not "
            "comparable with published ones"
        )
    if report.get("cached_rows"):
        common.stderr.print(f"[dim]{report['cached_rows']} image(s) taken from the resume cache[/]")
    if report.get("failures"):
        common.stderr.print(f"[red]{len(report['failures'])} image(s) failed[/] (listed in the report)")


def _thumb_side() -> int:
    from mattecli.thumbnails import THUMB_SIDE

    return THUMB_SIDE


def _progress(quiet: bool, total_hint: str):
    """A progress bar on stderr (:class:`~mattecli.cli.progress.Bar`: only on a terminal and unless
    quiet, started at the first image) and its per-image callback, as ``(callback, stop)``; the
    callback also prints each failed image's error line."""
    from mattecli.cli.progress import Bar

    bars: list[Bar] = []

    def callback(row: dict, done: int, total: int) -> None:
        if row.get("status") == "error":
            common.print_error(row["error"], row.get("hint"))
        if not bars:
            bars.append(Bar(total_hint, total, note=True, elapsed=True, show=not quiet))
        sad = row.get("metrics", {}).get("sad")
        bars[0].set(completed=done, note="" if sad is None else f"SAD {sad:.2f}")

    def stop() -> None:
        for bar in bars:
            bar.close()

    return callback, stop


def _unpack_progress(quiet: bool):
    """A bar on stderr for unpacking parquet rows (:class:`~mattecli.cli.progress.Bar`, terminal only,
    started at the first row), as ``(callback, stop)``."""
    from mattecli.cli.progress import Bar

    bars: list[Bar] = []

    def callback(done: int, total: int) -> None:
        if not bars:
            bars.append(Bar("unpacking", total, show=not quiet))
        bars[0].set(completed=done)

    def stop() -> None:
        for bar in bars:
            bar.close()

    return callback, stop


def _download_bar(quiet: bool) -> type | None:
    if quiet:
        return None
    from mattecli.cli.weights import RichDownloadBar

    return RichDownloadBar


def _default_root(dataset: str, *, no_download: bool, allow_incomplete: bool, quiet: bool, options: dict):
    """The dataset's default folder, fetched first when missing and public; returns its status."""
    from mattecli import dataset_store

    callback, stop = _unpack_progress(quiet)
    try:
        st = dataset_store.resolve(
            dataset,
            download=not no_download,
            allow_incomplete=allow_incomplete,
            progress=_download_bar(quiet),
            unpack_progress=callback,
            options=options,
        )
    finally:
        stop()
    if not st.complete and not quiet:
        common.stderr.print(
            f"[yellow]note:[/] {escape(st.title)} in {escape(str(st.path))} is {st.state} ({st.counts()} images); "
            "scoring what is there (--allow-incomplete)"
        )
    return st


@app.callback(invoke_without_command=True)
@common.handles_errors
def bench(
    ctx: typer.Context,
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help=f"Benchmark: {', '.join(_DATASETS)}.", show_default=False)
    ] = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="The dataset folder (default: $MATTECLI_DATASETS/<dataset>, see `mattecli bench datasets`; "
            "a missing public test set is downloaded there first).",
            show_default=False,
        ),
    ] = None,
    no_download: Annotated[
        bool,
        typer.Option(
            "--no-download",
            help="Never download a missing dataset or missing weights (also MATTECLI_OFFLINE=1 or HF_HUB_OFFLINE=1).",
        ),
    ] = False,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Score a default-folder dataset that has fewer images than the published test set "
            "(refused otherwise).",
        ),
    ] = False,
    shard: common.ShardOpt = None,
    merge: Annotated[
        list[Path] | None,
        typer.Option("--merge", help="Combine partial reports (e.g. of --shard runs) into one; repeat per file."),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option("--method", "-m", help="Method to run (or, with --predictions, the label of the mattes)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N images (in name order).")] = None,
    device: common.DeviceOpt = "auto",
    precision: common.PrecisionOpt = "fp32",
    weights: common.WeightsOpt = None,
    strategy: common.StrategyOpt = None,
    variant: common.VariantOpt = None,
    tile_size: common.TileSizeOpt = None,
    tile_overlap: common.TileOverlapOpt = None,
    batch_size: common.BatchSizeOpt = None,
    max_memory: common.MaxMemoryOpt = None,
    scales: common.ScalesOpt = None,
    compile_model: common.CompileOpt = False,
    save_predictions: Annotated[
        Path | None, typer.Option("--save-predictions", help="Write every scored matte to DIR/<name>.png.")
    ] = None,
    predictions: Annotated[
        Path | None,
        typer.Option(
            "--predictions",
            help="Score the mattes in DIR (any tool's output, matched by file name/stem) instead of running a method.",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write the JSON report here; per-image rows are cached next to it (<stem>.rows.jsonl) "
            "so a killed run resumes.",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--no-resume", help="Reuse the cached rows next to --report.")
    ] = True,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Also write a self-contained HTML report here: the metrics beside the paper's, speed and "
            "memory, one row per image with thumbnails (image, GT, prediction, error map), sortable columns "
            "(REPORT.html#sort=sad, #sort=-sad). The thumbnails also go into --report, so --merge can write one.",
            show_default=False,
        ),
    ] = None,
    grad_norm: Annotated[
        str,
        typer.Option(
            "--grad-norm",
            help="Grad normalisation: minmax (MATLAB mat2gray, official) or 255 (the Python ports). "
            "Unknown-region datasets only; whole-image datasets use the AIM definition.",
        ),
    ] = "minmax",
    quantize: Annotated[
        str,
        typer.Option(help="Score predictions rounded to 8 or 16 bits (as saved PNGs), or 'float' (unrounded)."),
    ] = "8",
    layout: Annotated[
        str | None, typer.Option(help="comp1k: force 'merged' (prebuilt) or 'compose' (official lists).")
    ] = None,
    bg_dir: Annotated[
        Path | None, typer.Option("--bg-dir", help="comp1k compose layout: the background images folder.")
    ] = None,
    image_dir: Annotated[Path | None, typer.Option("--image-dir", help="folder dataset: image folder.")] = None,
    alpha_dir: Annotated[Path | None, typer.Option("--alpha-dir", help="folder dataset: GT alpha folder.")] = None,
    trimap_dir: Annotated[Path | None, typer.Option("--trimap-dir", help="folder dataset: trimap folder.")] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Benchmark a matting method on a dataset: SAD / MSE / Grad / Conn (+ MAD), speed and memory.

    Prints a table beside the published numbers where the method and dataset match;
    --json prints the full report on stdout. Exit code 1 if some images failed.
    Without --root the dataset's default folder is used (public test sets are fetched on first
    use); `mattecli bench datasets` lists them, `mattecli bench download NAME` fetches one.
    """
    import json

    from mattecli.datasets import DATASETS
    from mattecli.pipelines import bench as lib

    if ctx.invoked_subcommand is not None:
        return

    if merge:
        result = lib.merge_reports([lib.load_report(path) for path in merge])
        if report is not None:
            lib.write_report(result, report)
        if html is not None:
            from mattecli.pipelines.report_html import write_html

            write_html(result, html)
        if json_out:
            common.stdout.print(json.dumps(result, ensure_ascii=False, allow_nan=False), markup=False, highlight=False)
        if not quiet:
            render_report(result)
        common.exit_with(common.EXIT_FAILED if result["failures"] else common.EXIT_OK)
        return
    if dataset is None:
        raise common.UsageError("give --dataset (or --merge REPORT ...)", hint="`mattecli bench datasets` lists them")
    if dataset not in DATASETS:
        raise common.UsageError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if root is None and dataset == "folder":
        raise common.UsageError("--dataset folder needs --root DIR (a folder of images and alphas)")
    if method is None and predictions is None:
        raise common.UsageError("give --method to run, or --predictions DIR to score existing mattes")
    if grad_norm not in ("minmax", "255"):
        raise common.UsageError(f"--grad-norm must be minmax or 255, not {grad_norm!r}")
    quant_map = {"8": 8, "16": 16, "float": None, "none": None}
    if quantize.lower() not in quant_map:
        raise common.UsageError(f"--quantize must be 8, 16 or float, not {quantize!r}")
    options = {
        k: str(v)
        for k, v in (
            ("layout", layout),
            ("bg_dir", bg_dir),
            ("image_dir", image_dir),
            ("alpha_dir", alpha_dir),
            ("trimap_dir", trimap_dir),
        )
        if v is not None
    }
    source = None
    if root is None:
        if predictions is None:
            from mattecli import methods

            methods.get(method)  # an unknown method fails before any download
        st = _default_root(
            dataset, no_download=no_download, allow_incomplete=allow_incomplete, quiet=quiet, options=options
        )
        root, source = st.path, st.source_json()
    settings = lib.BenchSettings(
        dataset=dataset,
        root=str(root),
        method=method,
        predictions=None if predictions is None else str(predictions),
        device=device,
        precision=precision,
        weights=None if weights is None else str(weights),
        variant=variant,
        shard=common.shard_of(shard),
        limit=limit,
        grad_norm=grad_norm,
        quantize=quant_map[quantize.lower()],
        save_predictions=None if save_predictions is None else str(save_predictions),
        dataset_options=options,
        dataset_source=source,
        thumbnails=None if html is None else _thumb_side(),
        method_options=common.engine_fields(
            common.method_options(
                strategy=strategy,
                tile_size=tile_size,
                tile_overlap=tile_overlap,
                batch_size=batch_size,
                max_memory=max_memory,
                scales=scales,
                compile_model=compile_model,
            )
        ),
    )
    cache = lib.cache_path_for(report) if (report is not None and resume) else None
    callback, stop = _progress(quiet, f"bench {method or 'predictions'} on {dataset}")
    try:
        result = lib.run_bench(
            settings, cache=cache, progress=callback, download=not no_download, download_progress=_download_bar(quiet)
        )
    finally:
        stop()
    if report is not None:
        lib.write_report(result, report)
    if html is not None:
        from mattecli.pipelines.report_html import write_html

        write_html(result, html)
    if json_out:
        common.stdout.print(json.dumps(result, ensure_ascii=False, allow_nan=False), markup=False, highlight=False)
    if not quiet:
        render_report(result)
        if report is not None:
            common.stderr.print(f"[dim]report: {report}[/]")
        if html is not None:
            common.stderr.print(f"[dim]html report: {escape(str(html))}[/]")
    common.exit_with(common.EXIT_FAILED if result["failures"] else common.EXIT_OK)


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
    import json

    from rich.table import Table

    from mattecli import dataset_store

    rows = dataset_store.status()
    if json_out:
        for row in rows:
            common.stdout.print(json.dumps(row.to_json(), ensure_ascii=False), markup=False, highlight=False)
        return
    table = Table(
        title=f"benchmark datasets in {escape(str(dataset_store.datasets_root()))}",
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
    import json

    from mattecli import dataset_store

    callback, stop = _unpack_progress(quiet)
    try:
        st, fetched = dataset_store.fetch(
            name, revision=revision, force=force, progress=_download_bar(quiet), unpack_progress=callback
        )
    finally:
        stop()
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
