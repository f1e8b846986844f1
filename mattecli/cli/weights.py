"""``mattecli weights``: list, pull, import, verify, path and export pretrained weights.

Mounted by the root app with ``app.add_typer(weights.app, name="weights")``. Commands are thin:
they call :mod:`mattecli.weights` and render. Tables, progress and notes go to stderr; stdout
carries only results (``--json`` lines, the path printed by ``path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from mattecli.cli import common
from mattecli.errors import ChecksumMismatchError, UsageError, WeightsError

__all__ = ["app", "RichDownloadBar"]

app = typer.Typer(
    name="weights",
    help="Download, import, check and export the pretrained weights of the deep methods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

VariantArg = Annotated[
    str,
    typer.Argument(help="Weights variant, e.g. sim-comp1k (`mattecli weights list` shows all).", show_default=False),
]
OptionalVariantArg = Annotated[str | None, typer.Argument(help="Weights variant (default: all).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per variant/file on stdout.")]
CheckOpt = Annotated[bool, typer.Option("--check", help="Hash the local files to show checksum ok/mismatch.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Download every published variant.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Download again even if cached.")]
FileArg = Annotated[
    Path,
    typer.Argument(help="The authors' checkpoint file, or a converted .safetensors.", show_default=False),
]
OutDirArg = Annotated[Path, typer.Argument(help="Folder to write (must be empty or absent).", show_default=False)]
RepoIdOpt = Annotated[str | None, typer.Option("--repo-id", help="Hub repository the files are meant for.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Write into a folder that has files.")]

_STATE_STYLE = {
    "checksum ok": "green",
    "checksum mismatch": "bold red",
    "cached": "cyan",
    "imported": "cyan",
    "missing": "yellow",
    "unpublished": "dim",
}


class RichDownloadBar:
    """A tqdm-compatible download bar drawn with Rich on stderr.

    ``hf_hub_download(tqdm_class=RichDownloadBar)`` creates it with ``total``/``initial``/``desc``
    and calls ``update(n)`` per chunk (negative after a server ignored a resume request). It draws
    nothing when stderr is not a terminal.
    """

    def __init__(self, *, total: int | None = None, initial: int = 0, desc: str | None = None, **_: Any):
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=common.stderr,
            transient=True,
            disable=not common.stderr.is_terminal,
        )
        self._progress.start()
        self._task = self._progress.add_task(escape(desc or "download"), total=total, completed=initial)

    def update(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def close(self) -> None:
        self._progress.stop()

    def __enter__(self) -> RichDownloadBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _echo_json(obj: dict) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


@app.command("list")
@common.handles_errors
def list_(
    json_out: JsonOpt = False,
    check: CheckOpt = False,
) -> None:
    """List the weights variants and their local status.

    Status is one of missing, cached, imported, checksum ok/mismatch (with --check), unpublished.
    """
    from mattecli import weights

    rows = weights.status(check=check)
    if json_out:
        for row in rows:
            _echo_json(row.to_json())
        return
    table = Table(title="weights", title_justify="left", show_edge=False)
    for col in ("variant", "method", "status", "source", "licence", "model code"):
        table.add_column(col, overflow="fold")
    for row in rows:
        state = row.state
        table.add_row(
            row.entry.variant,
            row.entry.method,
            f"[{_STATE_STYLE[state]}]{state}[/]",
            row.active.kind if row.active else "-",
            escape(row.entry.license),
            "yes" if row.implemented else "[dim]not yet[/]",
        )
    common.stderr.print(table)
    if any(row.state == "unpublished" for row in rows):
        common.stderr.print(
            "[dim]unpublished: download the authors' file and run `mattecli weights import VARIANT FILE`[/]"
        )


@app.command("pull")
@common.handles_errors
def pull(
    variant: OptionalVariantArg = None,
    all_: AllOpt = False,
    force: ForceOpt = False,
) -> None:
    """Download converted weights from the Hugging Face Hub (pinned revision, sha256 checked)."""
    from mattecli import weights

    if (variant is None) == (not all_):
        raise UsageError("give a VARIANT or --all" + ("" if variant is None else ", not both"))
    if variant is not None:
        path = weights.pull(variant, force=force, progress=RichDownloadBar)
        common.stderr.print(f"[green]pulled[/] {variant}: {escape(str(path))} (sha256 ok)")
        return
    failed = 0
    for entry in weights.load_manifest().entries.values():
        if not entry.published:
            common.stderr.print(
                f"[dim]skipped {entry.variant}: not published; `{escape(entry.import_command())}` instead[/]"
            )
            continue
        try:
            path = weights.pull(entry.variant, force=force, progress=RichDownloadBar)
        except WeightsError as err:
            failed += 1
            common.print_error(err.message, err.hint)
            continue
        common.stderr.print(f"[green]pulled[/] {entry.variant}: {escape(str(path))} (sha256 ok)")
    common.exit_with(common.EXIT_FAILED if failed else common.EXIT_OK)


@app.command("import")
@common.handles_errors
def import_(
    variant: VariantArg,
    file: FileArg,
) -> None:
    """Convert an official checkpoint downloaded by hand and store it where mattecli loads weights."""
    from mattecli import weights

    result = weights.import_checkpoint(variant, file)
    common.stderr.print(
        f"[green]imported[/] {variant} from {escape(result.source.name)} "
        f"({result.source_format}, {result.tensors} tensors): {escape(str(result.path))}"
    )
    if result.official_match is True:
        common.stderr.print("[dim]the source file's sha256 matches the official checkpoint[/]")
    elif result.official_match is False:
        common.stderr.print(
            f"[yellow]warning:[/] {escape(result.source.name)} "
            f"(sha256 {result.source_sha256}) is not the official file the manifest "
            f"records; imported because its keys and shapes match"
        )


@app.command("verify")
@common.handles_errors
def verify(
    variant: OptionalVariantArg = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-hash the local weights files and compare them with their expected sha256."""
    from mattecli import weights

    results = weights.verify(variant)
    if json_out:
        for copy in results:
            _echo_json({"variant": copy.variant, **copy.to_json()})
    elif results:
        table = Table(title="verify", title_justify="left", show_edge=False)
        for col in ("variant", "source", "result", "sha256", "path"):
            table.add_column(col, overflow="fold")
        for copy in results:
            result = "[green]ok[/]" if copy.ok else "[bold red]mismatch[/]"
            table.add_row(copy.variant, copy.kind, result, copy.expected_sha256[:16], escape(str(copy.path)))
        common.stderr.print(table)
    else:
        common.stderr.print("[dim]no weights are cached or imported yet[/]")
    bad = [copy for copy in results if not copy.ok]
    if bad:
        names = ", ".join(f"{c.variant} ({c.kind})" for c in bad)
        raise ChecksumMismatchError(
            f"{len(bad)} of {len(results)} weights files failed verification: {names}",
            hint="download again with `mattecli weights pull VARIANT --force`, or import the official file again",
        )


@app.command("path")
@common.handles_errors
def path(variant: VariantArg) -> None:
    """Print the path of the weights file mattecli would load (stdout, nothing else)."""
    from mattecli import weights

    typer.echo(str(weights.local_path(variant)))


@app.command("export")
@common.handles_errors
def export(
    variant: VariantArg,
    out_dir: OutDirArg,
    repo_id: RepoIdOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write a hub-ready folder: the safetensors file, a model card and a manifest snippet."""
    from mattecli import weights

    result = weights.export(variant, out_dir, repo_id=repo_id, overwrite=overwrite)
    common.stderr.print(
        f"[green]exported[/] {variant} to {escape(str(result.folder))}: "
        f"{escape(result.weights.name)} ({result.size} bytes, sha256 {result.sha256}), "
        f"{result.readme.name}, {result.snippet.name}"
    )
    if result.license_warning:
        common.stderr.print(f"[yellow]warning:[/] {escape(result.license_warning)}")
    common.stderr.print(
        "[dim]next: upload the folder, put the upload's commit sha in hub.revision of "
        f"{result.snippet.name}, and paste the entry into weights_manifest.json[/]"
    )
