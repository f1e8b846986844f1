"""``mattecli semantic-trimap``: SIM's semantic trimap (trimap + 20 class score maps) for images."""

from __future__ import annotations

from typing import Annotated

import typer

from mattecli.cli import common, options
from mattecli.cli.options import InputsArg, JsonOpt, MaxPixelsOpt, OutArg, OverwriteOpt, QuietOpt, RecursiveOpt


@common.handles_errors
def semantic_trimap(
    inputs: InputsArg,
    out: OutArg,
    trimap: Annotated[
        str | None,
        typer.Option(
            "--trimap",
            "-t",
            help="Trimap file (one input) or folder of trimaps matched by file stem; 'auto' predicts each "
            "image's trimap first (see --trimap-method; a folder named auto: ./auto).",
            show_default=False,
        ),
    ] = None,
    trimap_method: options.TrimapMethodOpt = None,
    trimap_variant: options.TrimapVariantOpt = None,
    save_trimap: Annotated[
        bool, typer.Option(help="With --trimap auto: also write <stem>_trimap.png, the predicted trimap used.")
    ] = False,
    scores: Annotated[
        bool,
        typer.Option(
            "--scores/--no-scores",
            help="Write <stem>_semantic.safetensors: the 20 score maps (float32 20xHxW) and the trimap.",
        ),
    ] = True,
    preview: Annotated[
        bool,
        typer.Option(help="Also write <stem>_preview.png: image dimmed, unknown pixels coloured by class, a legend."),
    ] = False,
    patch_sizes: Annotated[
        str,
        typer.Option(help="Patch sides, one pass each, at native resolution (official: 320,800)."),
    ] = "320,800",
    batch_size: Annotated[
        int | None, typer.Option(help="Classifier patches per forward pass (default: 1 on the CPU, 4 on a GPU).")
    ] = None,
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
    """Semantic trimaps (SIM): classify overlapping patches of the unknown region into 20 matting classes.

    For each image writes <OUT>/<stem>_semantic.safetensors (score maps + trimap, class names in
    the metadata) and <OUT>/<stem>_classes.png (class index 0-19 of the best class in the unknown
    region, 255 elsewhere); --preview adds <OUT>/<stem>_preview.png. With one input, OUT may be
    NAME.png (the class-index PNG; the others beside it) or NAME.safetensors. Existing outputs are
    skipped unless --overwrite. Without --trimap (or with --trimap auto) each trimap is predicted
    first (AIM's glance decoder, or --trimap-method shm), so photos alone are enough.
    """
    from mattecli.cli.matte import split_trimap
    from mattecli.methods.sim.semantic import parse_patch_sizes
    from mattecli.pipelines.semantic_trimap import SemanticSettings, semantic_trimap_files

    options.check_max_pixels(max_pixels)
    trimap_path, auto = split_trimap(trimap, trimap_method, trimap_variant, needs_trimap="semantic-trimap", quiet=quiet)
    settings = SemanticSettings(
        scores=scores,
        preview=preview,
        device=device,
        precision=precision,
        weights=weights,
        batch_size=batch_size,
        patch_sizes=parse_patch_sizes(patch_sizes),
        max_pixels=max_pixels,
        download=not no_download,
        trimap_method=auto,
        trimap_variant=trimap_variant,
        save_trimap=save_trimap,
    )
    jobs, results = semantic_trimap_files(
        inputs,
        out,
        trimap=trimap_path,
        settings=settings,
        recursive=recursive,
        shard=options.shard_of(shard),
        overwrite=overwrite,
        stdin=common.in_stdin(inputs),
        progress=common.download_progress(quiet),
    )
    common.report(jobs, results, title="semantic-trimap", quiet=quiet, json_lines=json_lines)
