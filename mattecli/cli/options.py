"""The options and arguments commands share, declared once, and their checks.

Every ``...Opt`` / ``...Arg`` here is an ``Annotated`` type for a Typer parameter (flag name,
help text, default display); help that lists methods, variants or trimap predictors is built from
the registries when this module is imported. :func:`method_options` turns the shared flags into
:class:`~mattecli.methods.base.MethodOptions`; :func:`shard_of`, :func:`check_max_pixels` and
:func:`check_bit_depth` parse or check a flag and raise a
:class:`~mattecli.errors.UsageError` (exit 2) for a bad value. Nothing here prints or exits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mattecli.errors import UsageError

__all__ = [
    "JsonOpt",
    "QuietOpt",
    "OverwriteOpt",
    "RecursiveOpt",
    "BitDepthOpt",
    "MaxPixelsOpt",
    "ShardOpt",
    "StrategyOpt",
    "TrimapMethodOpt",
    "TrimapVariantOpt",
    "TileSizeOpt",
    "TileOverlapOpt",
    "BatchSizeOpt",
    "MaxMemoryOpt",
    "ScalesOpt",
    "CompileOpt",
    "VariantOpt",
    "DeviceOpt",
    "PrecisionOpt",
    "WeightsOpt",
    "NoDownloadOpt",
    "InputsArg",
    "OutArg",
    "method_options",
    "shard_of",
    "check_max_pixels",
    "check_bit_depth",
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object per processed file on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary (errors still show).")]
OverwriteOpt = Annotated[
    bool,
    typer.Option("--overwrite", help="Redo outputs that already exist (default: skip them, so runs resume)."),
]
RecursiveOpt = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into subfolders of input folders.")]
BitDepthOpt = Annotated[int, typer.Option("--bit-depth", help="Bits per channel of PNG outputs: 8 or 16.")]
MaxPixelsOpt = Annotated[
    int | None,
    typer.Option(
        "--max-pixels",
        help="Refuse images with more pixels than this (decompression-bomb guard; "
        "default MATTECLI_MAX_PIXELS or 200 MP).",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="K/N: process only shard K of N (by a hash of each input's relative path), so N processes or "
        "cluster array jobs split a folder with no coordination.",
    ),
]


def _strategies_help() -> str:
    from mattecli import methods

    groups: dict[tuple[str, ...], list[str]] = {}
    for spec in methods.specs():
        groups.setdefault(spec.strategies, []).append(spec.name)
    listed = "; ".join(f"{', '.join(names)}: {', '.join(strats)}" for strats, names in groups.items())
    return (
        f"Test strategy. {listed}. 'tiled' runs global stages at reduced scale and details on "
        "full-resolution tiles; 'auto' tiles only what does not fit --max-memory."
    )


def _variants_help() -> str:
    from mattecli import methods

    several = [f"{s.name}: {', '.join(v.name for v in s.variants)}" for s in methods.specs() if len(s.variants) > 1]
    return f"Weights variant of methods that have several ({'; '.join(several)})."


StrategyOpt = Annotated[str | None, typer.Option(help=_strategies_help())]


def _trimap_method_help() -> str:
    from mattecli.pipelines.trimap import predictors

    names = predictors()
    return f"With --trimap auto: the method that predicts the trimaps ({', '.join(names)}; default {names[0]})."


TrimapMethodOpt = Annotated[str | None, typer.Option(help=_trimap_method_help(), show_default=False)]
TrimapVariantOpt = Annotated[
    str | None,
    typer.Option(help="With --trimap auto: the trimap method's weights variant.", show_default=False),
]
TileSizeOpt = Annotated[
    int | None, typer.Option(help="Tile side in pixels for tiled inference (default: from --max-memory).")
]
TileOverlapOpt = Annotated[
    int | None,
    typer.Option(help="Tile halo in pixels: context seen on each side and discarded (default: the method's margin)."),
]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Tiles or patches per forward pass.")]


def _max_memory_help() -> str:
    from mattecli.runtime.memory import DEFAULT_BUDGET, MACHINE_SHARE, REFERENCE_MEMORY, format_memory

    return (
        "Peak memory of the run (process RAM on CPU, allocated GPU memory on CUDA), e.g. 6G; tiles and batches "
        "are planned from the method's declared memory figures to stay under it "
        f"(default {format_memory(DEFAULT_BUDGET)}, or {MACHINE_SHARE:.0%} of a machine or GPU with less than "
        f"{format_memory(REFERENCE_MEMORY)})."
    )


MaxMemoryOpt = Annotated[str | None, typer.Option(help=_max_memory_help())]
ScalesOpt = Annotated[
    str | None,
    typer.Option(
        help="Multi-scale inference as the method defines it. aim: GLANCE,FOCUS ratios (official 0.25,0.5); "
        "sim: patch-analysis scales x 320 px (official 1,2.5)."
    ),
]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the network (pays off on long runs).")]
VariantOpt = Annotated[str | None, typer.Option(help=_variants_help())]
#: ``--device``, ``--precision`` and ``--weights``: declared once here, used by every command that runs a network.
DeviceOpt = Annotated[
    str,
    typer.Option(
        help="auto, cpu, cuda or cuda:N (deep methods); matte also takes a list (cuda:0,cuda:1) or 'all': "
        "one worker process per device."
    ),
]
PrecisionOpt = Annotated[
    str, typer.Option(help="fp32, fp16 or bf16 (deep methods; autocast on CUDA, bf16 also on CPU).")
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(help="Weights file used instead of the manifest's for the network the command runs (deep methods)."),
]

NoDownloadOpt = Annotated[
    bool,
    typer.Option(
        "--no-download",
        help="Never download missing weights (also MATTECLI_OFFLINE=1 or HF_HUB_OFFLINE=1); "
        "without it, a method's missing weights are fetched before the first image.",
    ),
]


def method_options(
    *,
    device: str = "auto",
    precision: str = "fp32",
    weights: Path | None = None,
    variant: str | None = None,
    no_download: bool = False,
    strategy: str | None = None,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    batch_size: int | None = None,
    max_memory: str | None = None,
    scales: str | None = None,
    compile_model: bool = False,
):
    """:class:`~mattecli.methods.base.MethodOptions` from the shared flags (a bad --max-memory is a usage
    error here; everything else is checked against the method's spec by the pipeline, before any work).

    A device list (``cuda:0,cuda:1``, ``all``) is the backend's business: the options then name the
    first device, and each worker its own.
    """
    from mattecli.methods.base import EngineOptions, MethodOptions
    from mattecli.runtime.memory import parse_memory

    single = device if "," not in device and device.strip().lower() != "all" else "auto"
    return MethodOptions(
        variant=variant,
        weights=weights,
        device=single,
        precision=precision,
        download=not no_download,
        engine=EngineOptions(
            strategy=strategy,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            batch_size=batch_size,
            max_memory=None if max_memory is None else parse_memory(max_memory),
            scales=scales,
            compile=compile_model,
        ),
    )


InputsArg = Annotated[
    list[str],
    typer.Argument(help="Image files, folders, glob patterns, or - to read paths from stdin.", show_default=False),
]
OutArg = Annotated[
    Path,
    typer.Argument(help="Output folder (or output file when there is exactly one input).", show_default=False),
]


def shard_of(text: str | None) -> tuple[int, int] | None:
    """Parse ``--shard`` (None when not given)."""
    from mattecli.io import parse_shard

    return None if text is None else parse_shard(text)


def check_max_pixels(max_pixels: int | None) -> int:
    """The pixel limit of a run (``--max-pixels``, else ``MATTECLI_MAX_PIXELS``); a bad one is a usage error."""
    from mattecli.io import pixel_limit

    return pixel_limit(max_pixels)


def check_bit_depth(bit_depth: int) -> int:
    if bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    return bit_depth
