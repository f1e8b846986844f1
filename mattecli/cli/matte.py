"""``mattecli matte``: alpha mattes with any registered method (parse options, call one backend, render)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mattecli.cli import common
from mattecli.cli.common import (
    BitDepthOpt,
    InputsArg,
    JsonOpt,
    MaxPixelsOpt,
    OutArg,
    OverwriteOpt,
    QuietOpt,
    RecursiveOpt,
)


def _methods() -> list[str]:
    from mattecli.methods import list_methods

    return list_methods()


@common.handles_errors
def matte(
    inputs: InputsArg,
    out: OutArg,
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"Matting method: {', '.join(_methods())}.")
    ] = _methods()[0],
    trimap: Annotated[
        Path | None,
        typer.Option("--trimap", "-t", help="Trimap file (one input) or folder of trimaps matched by file stem."),
    ] = None,
    cutout: Annotated[
        bool, typer.Option(help="Also write <stem>_cutout.png: RGBA with estimated foreground colours.")
    ] = False,
    foreground: Annotated[bool, typer.Option(help="Also write <stem>_fg.png: the estimated foreground.")] = False,
    save_trimap: Annotated[
        bool, typer.Option(help="Also write <stem>_trimap.png: the trimap a trimap-free method predicted.")
    ] = False,
    strategy: common.StrategyOpt = None,
    variant: common.VariantOpt = None,
    tile_size: common.TileSizeOpt = None,
    tile_overlap: common.TileOverlapOpt = None,
    batch_size: common.BatchSizeOpt = None,
    max_memory: common.MaxMemoryOpt = None,
    scales: common.ScalesOpt = None,
    compile_model: common.CompileOpt = False,
    device: common.DeviceOpt = "auto",
    precision: common.PrecisionOpt = "fp32",
    weights: common.WeightsOpt = None,
    no_download: common.NoDownloadOpt = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray", help="Run on a Ray cluster (Ray Data, one model per actor); pip install 'mattecli[ray]'."
        ),
    ] = False,
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray instance).")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="I/O threads decoding and writing beside the model.")] = 2,
    bit_depth: BitDepthOpt = 8,
    recursive: RecursiveOpt = False,
    shard: common.ShardOpt = None,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    json_lines: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compute alpha mattes for images, files or whole folders.

    Outputs are <OUT>/<stem>.png (folder structure mirrored); existing outputs are
    skipped unless --overwrite, so an interrupted run resumes.
    """
    from mattecli import backends
    from mattecli.pipelines.matte import MatteSettings

    common.check_bit_depth(bit_depth)
    if jobs < 1:
        raise common.UsageError("--jobs must be >= 1")
    settings = MatteSettings(
        cutout=cutout,
        foreground=foreground,
        save_trimap=save_trimap,
        bit_depth=bit_depth,
        max_pixels=max_pixels,
        io_workers=jobs,
        options=common.method_options(
            device=device,
            precision=precision,
            weights=weights,
            variant=variant,
            no_download=no_download,
            strategy=strategy,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
            max_memory=max_memory,
            scales=scales,
            compile_model=compile_model,
        ),
    )
    backend = backends.backend_for(device, ray=ray, ray_address=ray_address)
    total, results = backends.matte(
        inputs,
        out,
        method=method,
        trimap=trimap,
        settings=settings,
        backend=backend,
        recursive=recursive,
        overwrite=overwrite,
        shard=common.shard_of(shard),
        stdin=common.in_stdin(inputs),
        progress=common.download_progress(quiet),
    )
    where = "" if backend.name == "local" else f" on {backend.name}"
    common.report(total, results, title=f"matte ({method}){where}", quiet=quiet, json_lines=json_lines)
