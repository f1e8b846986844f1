"""``mattecli matte``: alpha mattes with any registered method."""

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
    from mattecli.models import list_methods

    return list_methods()


@common.handles_errors
def matte(
    inputs: InputsArg,
    out: OutArg,
    method: Annotated[str, typer.Option("--method", "-m", help=f"Matting method: {', '.join(_methods())}.")] = "aim",
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
    device: Annotated[
        str,
        typer.Option(
            help="auto, cpu, cuda or cuda:N; a list (cuda:0,cuda:1) or 'all' runs one worker process per device."
        ),
    ] = "auto",
    precision: Annotated[
        str, typer.Option(help="fp32, fp16 or bf16 (deep methods; autocast on CUDA, bf16 also on CPU).")
    ] = "fp32",
    weights: Annotated[Path | None, typer.Option(help="Weights file overriding the manifest (deep methods).")] = None,
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
    from mattecli import models
    from mattecli.matting import MatteSettings, matte_files

    common.check_bit_depth(bit_depth)
    if jobs < 1:
        raise common.UsageError("--jobs must be >= 1")
    options = common.engine_options(
        strategy=strategy,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_size=batch_size,
        max_memory=max_memory,
        scales=scales,
        compile_model=compile_model,
    )
    settings = MatteSettings(
        cutout=cutout,
        foreground=foreground,
        save_trimap=save_trimap,
        bit_depth=bit_depth,
        max_pixels=max_pixels,
        io_workers=jobs,
        config=models.MethodConfig(
            device=device,
            precision=precision,
            weights=weights,
            variant=variant,
            options=options,
            download=not no_download,
        ),
    )
    progress = common.download_progress(quiet)
    from mattecli.distributed import matte_on_devices, parse_devices

    if ray:
        from mattecli.distributed import matte_with_ray

        total, results = matte_with_ray(
            inputs,
            out,
            method=method,
            trimap=trimap,
            settings=settings,
            address=ray_address,
            recursive=recursive,
            overwrite=overwrite,
            stdin=common.in_stdin(inputs),
            progress=progress,
        )
        common.report(total, results, title=f"matte ({method}) on Ray", quiet=quiet, json_lines=json_lines)
        return
    devices = parse_devices(device)
    if devices is not None:
        if shard is not None:
            raise common.UsageError("--shard and several --device values do not combine; use one of them")
        total, results = matte_on_devices(
            inputs,
            out,
            devices,
            method=method,
            trimap=trimap,
            settings=settings,
            recursive=recursive,
            overwrite=overwrite,
            stdin=common.in_stdin(inputs),
            progress=progress,
        )
        common.report(
            total, results, title=f"matte ({method}) on {len(devices)} devices", quiet=quiet, json_lines=json_lines
        )
        return
    jobs, results = matte_files(
        inputs,
        out,
        method=method,
        trimap=trimap,
        settings=settings,
        recursive=recursive,
        shard=common.shard_of(shard),
        overwrite=overwrite,
        stdin=common.in_stdin(inputs),
        progress=progress,
    )
    common.report(jobs, results, title=f"matte ({method})", quiet=quiet, json_lines=json_lines)
