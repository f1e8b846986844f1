"""The ``mattecli`` Typer app. Commands live one per module; heavy imports happen inside them."""

from __future__ import annotations

from typing import Annotated

import typer

from mattecli import __version__
from mattecli.cli import bench as _bench
from mattecli.cli import composite as _composite
from mattecli.cli import matte as _matte
from mattecli.cli import semantic_trimap as _semantic_trimap
from mattecli.cli import trimap as _trimap
from mattecli.cli import weights as _weights

__all__ = ["app", "main"]

app = typer.Typer(
    name="mattecli",
    help="Alpha matting from the command line: cut soft foregrounds (hair, glass) out of photos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mattecli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Alpha matting from the command line."""


app.command("trimap")(_trimap.trimap)
app.command("semantic-trimap")(_semantic_trimap.semantic_trimap)
app.command("matte")(_matte.matte)
app.command("composite")(_composite.composite)
app.add_typer(_bench.app, name="bench")
app.add_typer(_weights.app, name="weights")


def main() -> None:
    """Console-script entry point."""
    app()
