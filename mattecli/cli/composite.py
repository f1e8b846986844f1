"""``mattecli composite``: put a matted foreground on a new background."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mattecli.cli import common, options
from mattecli.cli.options import BitDepthOpt, JsonOpt, MaxPixelsOpt, OverwriteOpt, QuietOpt, RecursiveOpt


@common.handles_errors
def composite(
    image: Annotated[str, typer.Argument(help="Image file or folder (or - for paths on stdin).", show_default=False)],
    alpha: Annotated[Path, typer.Argument(help="Alpha matte file, or folder matched by stem.", show_default=False)],
    out: options.OutArg,
    background: Annotated[
        str,
        typer.Option(
            "--background",
            "-b",
            help="A colour (#RRGGBB, a CSS name, r,g,b), an image file (resized to cover), or blur[:SIGMA].",
        ),
    ] = "white",
    estimate_foreground: Annotated[
        bool,
        typer.Option(help="Estimate foreground colours first so soft edges carry no old background colour."),
    ] = True,
    bit_depth: BitDepthOpt = 8,
    recursive: RecursiveOpt = False,
    shard: options.ShardOpt = None,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    json_lines: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Composite IMAGE over a new background using its ALPHA matte."""
    from mattecli.pipelines.composite import composite_files

    options.check_bit_depth(bit_depth)
    options.check_max_pixels(max_pixels)
    if not alpha.exists():
        raise common.UsageError(f"alpha not found: {alpha}")
    jobs, results = composite_files(
        [image],
        alpha,
        out,
        background=background,
        estimate_fg=estimate_foreground,
        bit_depth=bit_depth,
        recursive=recursive,
        shard=options.shard_of(shard),
        overwrite=overwrite,
        stdin=common.in_stdin([image]),
        max_pixels=max_pixels,
    )
    common.report(jobs, results, title="composite", quiet=quiet, json_lines=json_lines)
