"""``composite``: images over a new background (a colour, an image, or their own background blurred)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from mattecli import io
from mattecli.composite import composite, estimate_foreground, make_background, parse_background
from mattecli.errors import BadOptionError, InputError
from mattecli.pipelines import runner

__all__ = ["composite_files"]


def composite_files(
    images: Sequence[str | os.PathLike],
    alpha: Path,
    out: Path,
    *,
    background: str,
    estimate_fg: bool = True,
    bit_depth: int = 8,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> tuple[list[runner.Job], object]:
    """Plan composites of images over a new background; returns (jobs, iterator of result dicts).

    ``alpha`` is one file (single image) or a folder of mattes matched by stem.

    Raises (before any work):
        BadOptionError (a bad background -- also an unreadable background image -- or --max-pixels, an
        output that is an input), NoInputsError,
        OutputError (the output folder cannot be created or written).
    """
    kind, value = parse_background(background)  # fail before any work on a bad spec
    io.pixel_limit(max_pixels)
    items = io.discover(images, recursive=recursive, stdin=stdin, shard=shard)
    ext = out.suffix.lower() if len(items) == 1 and io.is_image_path(out) else ".png"
    jobs = runner.plan_jobs(items, Path(out), ext=ext)
    runner.check_inputs_kept(
        jobs, {"alpha matte": Path(alpha)}, {"background image": value if kind == "image" else None}
    )
    if jobs:
        runner.check_writable(jobs[0].output.parent if len(jobs) == 1 else Path(out))
    backdrop = None
    if kind == "image":  # decoded once for all images; a bad one is wrong for every image
        try:
            backdrop = io.read_image(value, max_pixels=max_pixels)
        except InputError as err:
            raise BadOptionError(f"--background {err.message}", hint=err.hint) from err

    def work(job: runner.Job) -> None:
        image = io.read_image(job.item.path, max_pixels=max_pixels)
        alpha_path = runner.pair_file(job.item, alpha, count=len(jobs), role="alpha matte")
        a = io.read_gray(alpha_path, max_pixels=max_pixels)
        if a.shape != image.shape[:2]:
            raise InputError(
                f"{alpha_path}: alpha is {a.shape[1]}x{a.shape[0]} but {job.item.path} is "
                f"{image.shape[1]}x{image.shape[0]}",
                hint="the alpha matte must have exactly the size of its image",
            )
        if estimate_fg:
            fg, est_bg = estimate_foreground(image, a, with_background=True)
        else:
            fg, est_bg = image, None
        bg = make_background(background, image, estimated_background=est_bg, background_image=backdrop)
        io.write_image(job.output, composite(fg, a, bg), bit_depth=bit_depth)

    return jobs, runner.run_jobs(jobs, work, overwrite=overwrite, method="composite")
