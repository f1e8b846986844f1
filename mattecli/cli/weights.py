"""``mattecli weights``: list, pull, import, verify, path and export pretrained weights.

Mounted by the root app with ``app.add_typer(weights.app, name="weights")``. Commands are thin:
they call :mod:`mattecli.weights` and render. Tables, progress and notes go to stderr; stdout
carries only results (``--json`` lines, the path printed by ``path``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

import mattecli.methods  # noqa: F401  (gives mattecli.weights every variant's network)
from mattecli.cli import common
from mattecli.cli.progress import RichDownloadBar
from mattecli.errors import ChecksumMismatchError, UsageError, WeightsError
from mattecli.units import format_bytes

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
AllOpt = Annotated[bool, typer.Option("--all", help="Download every variant that can be downloaded.")]
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


def _echo_json(obj: dict) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False))


@app.command("list")
@common.handles_errors
def list_(
    json_out: JsonOpt = False,
    check: CheckOpt = False,
) -> None:
    """List the weights variants: where each comes from, its size and its local status.

    Status is one of missing (downloadable: `weights pull` or first use fetches it), cached /
    imported (local), checksum ok / mismatch (with --check), unpublished (no weights are published
    anywhere: import a file of mattecli's layout). For the authors' own files on the Hugging Face
    Hub the source says whether the commit and sha256 are pinned in the manifest or recorded on
    first use (with the recorded commit once there is one).
    """
    from mattecli import weights
    from mattecli.weights.local import size_of

    rows = weights.status(check=check)
    if json_out:
        for row in rows:
            _echo_json(row.to_json())
        return
    table = Table(title="weights", title_justify="left", show_edge=False)
    unimplemented = any(not row.implemented for row in rows)
    columns = ("variant", "method", "status", "source", "size", "licence")
    for col in columns + (("model code",) if unimplemented else ()):
        table.add_column(col, no_wrap=col in ("variant", "method", "status", "size"), overflow="fold")
    for row in rows:
        state = row.state
        entry = row.entry
        origin = entry.origin()
        if entry.official_hub is not None:
            source = _authors_hub_source(row)
        elif row.active is not None:
            source = row.active.kind  # hub / imported
        else:
            source = "[dim]none[/]" if origin == "none" else escape(origin)
        size = size_of(entry)
        table.add_row(
            entry.variant,
            entry.method,
            f"[{_STATE_STYLE[state]}]{state}[/]",
            source,
            format_bytes(size) if size else "[dim]?[/]",
            escape(entry.license),
            *((("yes" if row.implemented else "[dim]not yet[/]"),) if unimplemented else ()),
        )
    common.stderr.print(table)
    if any(row.state == "missing" for row in rows):
        common.stderr.print(
            "[dim]missing: `mattecli weights pull VARIANT` downloads it (first use of a method does too); "
            "offline, download the authors' file by hand and `mattecli weights import VARIANT FILE`[/]"
        )
    if any(row.entry.official_hub is not None for row in rows):
        common.stderr.print(
            "[dim]authors' files on the Hugging Face Hub: pinned = the manifest gives their commit and sha256; "
            "recorded on first use = the first fetch records the commit and sha256, later uses are checked "
            "against them[/]"
        )
    unpublished = [row.entry.variant for row in rows if row.state == "unpublished"]
    if unpublished:
        common.stderr.print(
            f"[dim]unpublished ({', '.join(unpublished)}): no weights are published anywhere; import a "
            "`.safetensors` file of mattecli's layout (e.g. one you trained) with "
            "`mattecli weights import VARIANT FILE`[/]"
        )


def _authors_hub_source(row) -> str:
    """The source cell of a variant whose weights are the authors' file on the Hub: the repository,
    then pinned / recorded on first use (and the recorded commit once there is one)."""
    from mattecli.weights.trust import hub_revision

    info = hub_revision(row.entry)
    if info["pinned"]:
        how = f"pinned {info['commit'][:12]}"
    elif info["commit"]:
        how = f"recorded on first use: {info['commit'][:12]}"
    elif info["recorded"]:
        how = "recorded on first use: the sha256 of an imported file"
    else:
        how = f"recorded on first use (not yet; {info['requested']})"
    lead = "imported, " if row.active is not None and row.active.kind == "imported" else ""
    return f"{lead}{escape(info['repo_id'])}\n[dim]{escape(how)}[/]"


def _report_pull(result) -> None:
    where = escape(str(result.path))
    if result.source == "cache":
        common.stderr.print(f"[green]ok[/] {result.variant} is already here: {where} (--force downloads it again)")
        return
    if result.repo_id is not None:  # the authors' file on the Hugging Face Hub
        at = f"{result.repo_id}@{result.revision[:12]}" if result.revision else result.repo_id
        common.stderr.print(f"[green]pulled[/] {result.variant} from the Hugging Face Hub ({escape(at)}): {where}")
        if result.pinned:
            common.stderr.print(f"[dim]pinned commit {result.revision} and sha256 {result.official_sha256} checked[/]")
        elif result.first_download:
            common.stderr.print(
                f"[dim]first use: commit {result.revision} and sha256 {result.official_sha256} recorded (the "
                "manifest pins none); later uses and `mattecli weights verify` are checked against them[/]"
            )
        else:
            common.stderr.print(f"[dim]sha256 recorded on first use checked: {result.official_sha256}[/]")
        return
    common.stderr.print(f"[green]pulled[/] {result.variant} from {escape(result.source)}: {where}")
    if result.first_download:
        common.stderr.print(
            f"[dim]sha256 of the downloaded official file: {result.official_sha256} (the authors publish none; "
            "recorded now, later downloads and `mattecli weights verify` are checked against it)[/]"
        )
    elif result.official_sha256:
        common.stderr.print(f"[dim]sha256 of the official file checked: {result.official_sha256}[/]")


def _pull_targets(names: list[str]) -> list[str]:
    """Variants named on the command line; a method name (``sim``) stands for the variants its
    default run loads (``sim-comp1k`` and ``sim-classifier``)."""
    from mattecli import methods, weights
    from mattecli.errors import UnknownMethodError

    manifest = weights.load_manifest()
    out: list[str] = []
    for name in names:
        if name in manifest.entries:
            out.append(name)
            continue
        try:
            spec = methods.get(name)
        except UnknownMethodError:
            manifest.get(name)  # raises: unknown variant, with the known ones listed
            raise
        needed = spec.resolve(methods.MethodOptions(download=False)).weights_to_fetch()
        if not needed:
            raise UsageError(f"method {name} uses no weights")
        out.extend(needed)
    return list(dict.fromkeys(out))


@app.command("pull")
@common.handles_errors
def pull(
    variants: Annotated[
        list[str] | None,
        typer.Argument(
            help="Weights variants (or a method name for all it loads, e.g. sim); see `mattecli weights list`.",
            show_default=False,
        ),
    ] = None,
    all_: AllOpt = False,
    force: ForceOpt = False,
) -> None:
    """Download weights: our converted copy on the Hugging Face Hub where one is published, the
    authors' own safetensors file on the Hub (ViTMatte), else the authors' own links (Google Drive,
    MindSpore), checked (and converted) into the HF cache.

    Behind a firewall: download the authors' file by hand and run `mattecli weights import VARIANT FILE`.
    """
    from mattecli import weights

    if (not variants) == (not all_):
        raise UsageError("give a VARIANT or --all" + ("" if not variants else ", not both"))
    if variants:
        targets = _pull_targets(variants)
        if len(targets) == 1:
            _report_pull(weights.pull(targets[0], force=force, progress=RichDownloadBar))
            return
        entries = [weights.get_entry(v) for v in targets]
    else:
        entries = list(weights.load_manifest().entries.values())
    failed = 0
    for entry in entries:
        if not entry.downloadable:
            if variants:  # asked for by name: that is an error, not a note
                failed += 1
                err = weights.local.not_available(entry)
                common.print_error(err.message, err.hint)
            else:
                common.stderr.print(f"[dim]skipped {entry.variant}: {escape(entry.manual_route())}[/]")
            continue
        try:
            _report_pull(weights.pull(entry.variant, force=force, progress=RichDownloadBar))
        except WeightsError as err:
            failed += 1
            common.print_error(err.message, err.hint)
            continue
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
    if result.recorded:
        common.stderr.print(
            f"[dim]sha256 of {escape(result.source.name)}: {result.source_sha256} (the manifest pins none; "
            "recorded now, later downloads and `mattecli weights verify` are checked against it)[/]"
        )
    elif result.official_match is True:
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
        for copy in results:
            if copy.problem:
                common.stderr.print(f"[red]{copy.variant}[/]: {escape(copy.problem)}")
    else:
        common.stderr.print("[dim]no weights are cached or imported yet[/]")
    bad = [copy for copy in results if not copy.ok]
    if bad:
        names = ", ".join(f"{c.variant} ({c.kind}{': ' + c.problem if c.problem else ''})" for c in bad)
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
