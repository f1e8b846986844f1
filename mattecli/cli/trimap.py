"""``mattecli trimap``: trimaps from alpha mattes or masks, or (``--from-image``) predicted from photos."""

from __future__ import annotations

from typing import Annotated

import typer

from mattecli.cli import common, options
from mattecli.cli.options import InputsArg, JsonOpt, MaxPixelsOpt, OutArg, OverwriteOpt, QuietOpt, RecursiveOpt
from mattecli.pipelines.trimap import predictors


@common.handles_errors
def trimap(
    inputs: InputsArg,
    out: OutArg,
    erode: Annotated[int, typer.Option(help="Shrink the certain foreground by this radius (px).")] = 10,
    dilate: Annotated[int, typer.Option(help="Grow the possible foreground by this radius (px).")] = 10,
    iterations: Annotated[int, typer.Option(help="Repeat erosion and dilation this many times.")] = 1,
    width: Annotated[
        int | None,
        typer.Option(help="Unknown band width (px) centred on the edge; overrides --erode/--dilate."),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Binarise soft masks at this value in (0,1] first (default: alpha==1 is sure fg, alpha>0 possible fg)."
        ),
    ] = None,
    shape: Annotated[str, typer.Option(help="Structuring element: ellipse, square or cross.")] = "ellipse",
    from_image: Annotated[
        bool,
        typer.Option(help="Inputs are photos: predict their trimaps with a trimap-free method (see --method)."),
    ] = False,
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"Method for --from-image: {', '.join(predictors())}.")
    ] = predictors()[0],
    device: options.DeviceOpt = "auto",
    precision: options.PrecisionOpt = "fp32",
    weights: options.WeightsOpt = None,
    no_download: options.NoDownloadOpt = False,
    recursive: RecursiveOpt = False,
    shard: options.ShardOpt = None,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    json_lines: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Make trimaps (0 / 128 / 255) from alpha mattes or masks, or (--from-image) predict them from photos."""
    from mattecli.pipelines.trimap import predicted_trimap_files, trimap_files
    from mattecli.trimap import TrimapSettings

    options.check_max_pixels(max_pixels)
    if from_image:
        jobs, results = predicted_trimap_files(
            inputs,
            out,
            method=method,
            options=options.method_options(
                device=device, precision=precision, weights=weights, no_download=no_download
            ),
            recursive=recursive,
            shard=options.shard_of(shard),
            overwrite=overwrite,
            stdin=common.in_stdin(inputs),
            max_pixels=max_pixels,
            progress=common.download_progress(quiet),
        )
        common.report(jobs, results, title=f"trimap ({method})", quiet=quiet, json_lines=json_lines)
        return

    if width is not None:
        if width < 1:
            raise common.UsageError("--width must be >= 1")
        settings = TrimapSettings.from_width(width, iterations=iterations, threshold=threshold, shape=shape)
    else:
        settings = TrimapSettings(erode, dilate, iterations, threshold, shape)
    jobs, results = trimap_files(
        inputs,
        out,
        settings,
        recursive=recursive,
        shard=options.shard_of(shard),
        overwrite=overwrite,
        stdin=common.in_stdin(inputs),
        max_pixels=max_pixels,
    )
    common.report(jobs, results, title="trimap", quiet=quiet, json_lines=json_lines)
