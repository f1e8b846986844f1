"""``trimap``: trimaps from alpha mattes or masks, or predicted from the photos by a method.

Also the one answer to "which methods predict a trimap" (:func:`predictors`), which the CLI reads
for its help when it starts: this module therefore imports its image and job machinery (OpenCV
among it) only where a function runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mattecli.pipelines import runner
    from mattecli.trimap import TrimapSettings

__all__ = ["trimap_files", "predicted_trimap_files", "predictors", "resolve_trimap_predictor"]


def predictors() -> list[str]:
    """The names of the methods that predict trimaps (``trimap --from-image``, ``--trimap auto``), in
    the registry's order with :data:`mattecli.methods.DEFAULT_TRIMAP_METHOD` first."""
    from mattecli import methods

    names = [s.name for s in methods.specs() if s.capabilities.predicts_trimap]
    return sorted(names, key=lambda name: name != methods.DEFAULT_TRIMAP_METHOD)


def resolve_trimap_predictor(method: str, options=None, *, flag: str = "--trimap-method"):
    """``--trimap auto``'s trimap method (named by ``flag``) with its options checked: a
    :class:`~mattecli.methods.base.Resolved` (the options' ``--variant`` is ``--trimap-variant``).

    Raises:
        UnknownMethodError, BadOptionError (a method that predicts no trimap, an option it cannot
        honour), DeviceError.
    """
    from mattecli import methods
    from mattecli.errors import BadOptionError

    spec = methods.get(method)
    if not spec.capabilities.predicts_trimap:
        raise BadOptionError(
            f"{flag} {spec.name} predicts no trimap", hint=f"use a method that predicts one: {', '.join(predictors())}"
        )
    try:
        return spec.resolve(options)
    except BadOptionError as err:
        message = err.message.replace("--variant", "--trimap-variant")
        raise BadOptionError(f"{flag} {spec.name}: {message}", hint=err.hint) from None


def trimap_files(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    settings: TrimapSettings,
    *,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> tuple[list[runner.Job], object]:
    """Plan trimaps for alpha/mask files; returns (jobs, iterator of result dicts).

    Each trimap is :func:`mattecli.trimap.make_trimap` of the input read as a float ``HxW`` map
    (:func:`mattecli.io.read_gray`), written as an 8-bit PNG of {0, 128, 255}; a result dict adds
    ``unknown_fraction`` (the share of 128 pixels, 4 decimals).

    Raises (before any work):
        BadOptionError (bad settings or --max-pixels, an output that is an input), NoInputsError,
        OutputError (the output folder cannot be created or written).
    """
    from mattecli import io
    from mattecli.pipelines import runner
    from mattecli.trimap import make_trimap

    settings.validate()
    io.pixel_limit(max_pixels)
    jobs = runner.plan_jobs(io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard), Path(out))
    runner.check_inputs_kept(jobs)
    if jobs:
        runner.check_writable(jobs[0].output.parent if len(jobs) == 1 else Path(out))

    def work(job: runner.Job) -> dict:
        trimap = make_trimap(io.read_gray(job.item.path, max_pixels=max_pixels), settings)
        io.atomic_write_bytes(job.output, io.encode_png(trimap))
        return {"unknown_fraction": round(float((trimap == 128).mean()), 4)}

    return jobs, runner.run_jobs(jobs, work, overwrite=overwrite, method="trimap")


def predicted_trimap_files(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str = "aim",
    options=None,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    progress: type | None = None,
) -> tuple[list[runner.Job], Iterator[dict]]:
    """Trimaps predicted from the images themselves by a method that predicts one (AIM's glance
    decoder, SHM's T-Net); ``options`` are its :class:`~mattecli.methods.base.MethodOptions`.
    Each trimap is :meth:`~mattecli.methods.base.Matter.predict_trimap`'s, the very array that
    ``matte --trimap auto`` feeds its method and writes with ``--save-trimap``.

    The method's missing weights are fetched first (``options.download``; ``progress`` draws it).

    Raises (before any work):
        UnknownMethodError, BadOptionError (a method that cannot predict trimaps, a bad option),
        NoInputsError, WeightsError.
    """
    from mattecli import io, methods
    from mattecli.errors import BadOptionError
    from mattecli.pipelines import runner

    spec = methods.get(method)
    if not spec.capabilities.predicts_trimap:
        raise BadOptionError(
            f"method {method} cannot predict a trimap" + (" (it needs one itself)" if spec.needs_trimap else ""),
            hint=f"use a method that predicts one: {', '.join(predictors())}",
        )
    resolved = spec.resolve(options)
    io.pixel_limit(max_pixels)
    jobs = runner.plan_jobs(io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard), Path(out))
    runner.check_inputs_kept(jobs)
    if overwrite or any(not runner.is_done(job) for job in jobs):
        from mattecli.weights import prefetch

        prefetch(resolved.weights_to_fetch(), download=resolved.options.download, progress=progress)

    def results() -> Iterator[dict]:
        matter = None

        def work(job: runner.Job) -> dict:
            nonlocal matter
            image = io.read_image(job.item.path, max_pixels=max_pixels)
            if matter is None:
                matter = spec.create(resolved)
            trimap = matter.predict_trimap(image)  # AIM's glance pass / SHM's T-Net alone
            io.atomic_write_bytes(job.output, io.encode_png(trimap))
            return {"unknown_fraction": round(float((trimap == 128).mean()), 4)}

        yield from runner.run_jobs(jobs, work, overwrite=overwrite, method=method)

    return jobs, results()
