"""``mattecli matte``: alpha mattes with any registered method (parse options, call one backend, render)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mattecli.cli import common, options
from mattecli.cli.options import (
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


def _default_method() -> str:
    from mattecli.methods import DEFAULT_METHOD

    return DEFAULT_METHOD


def split_trimap(
    trimap: str | None,
    trimap_method: str | None,
    trimap_variant: str | None,
    *,
    needs_trimap: str | None = None,
    quiet: bool = False,
):
    """``--trimap`` as given -> ``(path or None, trimap method or None)``: ``auto`` predicts the trimaps
    (``--trimap-method``, default :data:`mattecli.methods.DEFAULT_TRIMAP_METHOD`); ``./auto`` is a folder
    named auto. Without ``--trimap``, ``needs_trimap`` (the name of a method or command that cannot run
    without one) makes it ``auto``, said in one note on stderr (unless ``quiet``).

    Raises:
        UsageError: ``--trimap-method`` / ``--trimap-variant`` without ``--trimap auto``.
    """
    from mattecli.methods import DEFAULT_TRIMAP_METHOD

    if trimap is None and needs_trimap is not None:
        method = trimap_method or DEFAULT_TRIMAP_METHOD
        if not quiet:
            print(
                f"note: {needs_trimap} needs a trimap and none was given: predicting each image's trimap with "
                f"{method} (--trimap auto); pass --trimap FILE_OR_FOLDER to use your own",
                file=sys.stderr,
            )
        return None, method
    if trimap is not None and trimap.strip().lower() == "auto":
        return None, trimap_method or DEFAULT_TRIMAP_METHOD
    for flag, value in (("--trimap-method", trimap_method), ("--trimap-variant", trimap_variant)):
        if value is not None:
            raise common.UsageError(f"{flag} applies only with --trimap auto")
    return (None if trimap is None else Path(trimap)), None


def _needs_trimap(method: str) -> str | None:
    """``method`` when it is a registered method that cannot run without a trimap (else None: unknown
    methods are refused by the pipeline, with the list of known ones)."""
    from mattecli import methods

    try:
        return method if methods.get(method).needs_trimap else None
    except methods.UnknownMethodError:
        return None


@common.handles_errors
def matte(
    inputs: InputsArg,
    out: OutArg,
    method: Annotated[
        str, typer.Option("--method", "-m", help=f"Matting method: {', '.join(_methods())}.")
    ] = _default_method(),
    trimap: Annotated[
        str | None,
        typer.Option(
            "--trimap",
            "-t",
            help="Trimap file (one input) or folder of trimaps matched by file stem; 'auto' predicts each "
            "image's trimap (see --trimap-method) and mattes it in the same run (a folder named auto: ./auto). "
            "Methods that need a trimap use 'auto' when none is given, with a note.",
        ),
    ] = None,
    trimap_method: options.TrimapMethodOpt = None,
    trimap_variant: options.TrimapVariantOpt = None,
    cutout: Annotated[
        bool, typer.Option(help="Also write <stem>_cutout.png: RGBA with estimated foreground colours.")
    ] = False,
    foreground: Annotated[bool, typer.Option(help="Also write <stem>_fg.png: the estimated foreground.")] = False,
    save_trimap: Annotated[
        bool,
        typer.Option(
            help="Also write <stem>_trimap.png: the trimap a trimap-free method predicted, or with --trimap auto "
            "the predicted trimap the method used."
        ),
    ] = False,
    preview: Annotated[
        bool,
        typer.Option(
            help="Also write <stem>_preview.png: input | trimap | alpha | cut-out over a checkerboard, "
            "side by side, at most 2048 px wide."
        ),
    ] = False,
    strategy: options.StrategyOpt = None,
    variant: options.VariantOpt = None,
    tile_size: options.TileSizeOpt = None,
    tile_overlap: options.TileOverlapOpt = None,
    batch_size: options.BatchSizeOpt = None,
    max_memory: options.MaxMemoryOpt = None,
    scales: options.ScalesOpt = None,
    compile_model: options.CompileOpt = False,
    device: options.DeviceOpt = "auto",
    precision: options.PrecisionOpt = "fp32",
    weights: options.WeightsOpt = None,
    no_download: options.NoDownloadOpt = False,
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
    shard: options.ShardOpt = None,
    overwrite: OverwriteOpt = False,
    max_pixels: MaxPixelsOpt = None,
    json_lines: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compute alpha mattes for images, files or whole folders.

    Outputs are <OUT>/<stem>.png (folder structure mirrored); existing outputs are
    skipped unless --overwrite, so an interrupted run resumes. With --trimap auto a
    trimap-based method (sim, cf, knn) runs on photos alone: each trimap is predicted first
    (AIM's glance decoder, or --trimap-method shm for people), both models loaded once.
    """
    from mattecli import backends
    from mattecli.pipelines.matte import MatteSettings

    options.check_bit_depth(bit_depth)
    if jobs < 1:
        raise common.UsageError("--jobs must be >= 1")
    trimap_path, auto = split_trimap(
        trimap, trimap_method, trimap_variant, needs_trimap=_needs_trimap(method), quiet=quiet
    )
    settings = MatteSettings(
        cutout=cutout,
        foreground=foreground,
        save_trimap=save_trimap,
        preview=preview,
        trimap_method=auto,
        trimap_variant=trimap_variant,
        bit_depth=bit_depth,
        max_pixels=max_pixels,
        io_workers=jobs,
        options=options.method_options(
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
    # a process-wide heap setting, made here by the CLI (never by the library): runtime/allocator.py
    from mattecli.runtime.allocator import configure_for_cli

    configure_for_cli(device, settings.options.engine.max_memory)
    backend = backends.backend_for(device, ray=ray, ray_address=ray_address)
    total, results = backends.matte(
        inputs,
        out,
        method=method,
        trimap=trimap_path,
        settings=settings,
        backend=backend,
        recursive=recursive,
        overwrite=overwrite,
        shard=options.shard_of(shard),
        stdin=common.in_stdin(inputs),
        progress=common.download_progress(quiet),
    )
    where = "" if backend.name == "local" else f" on {backend.name}"
    label = method if auto is None else f"{method}, trimaps by {auto}"
    common.report(total, results, title=f"matte ({label}){where}", quiet=quiet, json_lines=json_lines)
