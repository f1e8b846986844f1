"""``matte``: alpha mattes (and optional cutouts, foregrounds, predicted trimaps) with one method.

plan (:func:`plan_matte`: options checked against the method's spec, inputs discovered, outputs
named and checked, all before any image is read) -> load (weights fetched once, the method built
with the first image) -> compute (``Matter.predict``) -> save (atomic writes; the alpha last), on
the shared job runner (:mod:`mattecli.pipelines.runner`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mattecli import io, methods
from mattecli.composite import estimate_foreground
from mattecli.errors import BadOptionError
from mattecli.methods.base import Matter, MethodOptions, Resolved
from mattecli.pipelines import runner

__all__ = [
    "MatteSettings",
    "MatteRunner",
    "output_roles",
    "plan_matte",
    "matte_image",
    "matte_files",
    "check_trimap_options",
]


@dataclass(frozen=True)
class MatteSettings:
    """What ``matte`` writes besides the alpha, and how the method runs (``options``)."""

    cutout: bool = False
    foreground: bool = False
    save_trimap: bool = False
    bit_depth: int = 8
    max_pixels: int | None = None
    io_workers: int = 2
    options: MethodOptions = field(default_factory=MethodOptions)


def matte_image(matter: Matter, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
    """One image through a ready method: float32 ``HxW`` alpha, clamped to the trimap's known regions."""
    return matter.predict(image, trimap).alpha


def output_roles(settings: MatteSettings) -> dict[str, str]:
    """Extra outputs beside each alpha: role -> file-name suffix."""
    roles = {}
    if settings.cutout:
        roles["cutout"] = "_cutout"
    if settings.foreground:
        roles["foreground"] = "_fg"
    if settings.save_trimap:
        roles["trimap"] = "_trimap"
    return roles


class MatteRunner:
    """Mattes jobs with one resolved method; the method is built (weights loaded) on first use, then reused.

    ``count`` is the size of the whole input list (a single trimap file is only valid for one
    input). Used by :func:`matte_files` and by the backends (one runner per process or actor).
    """

    def __init__(
        self,
        resolved: Resolved,
        settings: MatteSettings,
        trimap: Path | None,
        *,
        count: int,
        progress: type | None = None,
    ):
        self.resolved = resolved
        self.spec = resolved.spec
        self.settings = settings
        self.trimap = trimap
        self.count = count
        self.progress = progress
        self.matter: Matter | None = None

    def fetch_weights(self) -> None:
        """Fetch the method's missing weights (once, before the first image) or refuse offline.

        Raises:
            WeightsError: offline / ``--no-download`` with weights missing, or every source failed.
        """
        from mattecli.weights import prefetch

        prefetch(
            self.resolved.weights_to_fetch(), download=self.resolved.options.download, progress=self.progress
        )

    def load(self, job: runner.Job):
        s = self.settings
        image = io.read_image(job.item.path, max_pixels=s.max_pixels)
        tri_path = runner.pair_file(job.item, self.trimap, count=self.count, role="trimap")
        tri = None
        if tri_path is not None:
            tri = io.read_trimap(tri_path, shape=image.shape[:2], max_pixels=s.max_pixels)
        return image, tri

    def compute(self, job: runner.Job, inputs) -> dict:
        image, tri = inputs
        if self.matter is None:
            self.matter = self.spec.create(self.resolved)
        result = self.matter.predict(image, tri)
        out = {"main": result.alpha}
        if self.settings.save_trimap:
            out["trimap"] = result.trimap
        if self.settings.cutout or self.settings.foreground:
            out["fg"] = estimate_foreground(image, result.alpha)
        return out

    def save(self, job: runner.Job, out: dict) -> None:
        bits = self.settings.bit_depth
        if "trimap" in out:
            io.atomic_write_bytes(job.outputs["trimap"], io.encode_png(out["trimap"]))
        if self.settings.foreground:
            io.write_image(job.outputs["foreground"], out["fg"], bit_depth=bits)
        if self.settings.cutout:
            io.write_rgba(job.outputs["cutout"], out["fg"], out["main"], bit_depth=bits)
        io.write_alpha(job.output, out["main"], bit_depth=bits)  # last: its presence marks the job done

    def run(self, jobs: list[runner.Job], *, overwrite: bool = False) -> Iterator[dict]:
        """Results per job; weights are fetched first when any job is left to do."""
        if overwrite or any(not runner.is_done(job) for job in jobs):
            self.fetch_weights()
        stages = runner.Stages(compute=self.compute, load=self.load, save=self.save)
        return runner.run_jobs(
            jobs, stages, overwrite=overwrite, method=self.spec.name, io_workers=self.settings.io_workers
        )


def check_trimap_options(spec, trimap: Path | None, *, save_trimap: bool = False) -> None:
    """What a method does with trimaps against ``--trimap`` / ``--save-trimap`` (usage errors, before any work)."""
    caps = spec.capabilities
    name = spec.name
    if caps.needs_trimap and trimap is None:
        raise BadOptionError(
            f"method {name} needs a trimap",
            hint="pass --trimap FILE_OR_FOLDER (or use a trimap-free method)",
        )
    if trimap is not None and not caps.takes_trimap:
        takers = ", ".join(s.name for s in methods.specs() if s.capabilities.takes_trimap)
        raise BadOptionError(
            f"method {name} is trimap-free and takes no --trimap",
            hint=f"drop --trimap, or pick a method that takes one ({takers})",
        )
    if save_trimap and not caps.predicts_trimap:
        if caps.needs_trimap:
            raise BadOptionError(f"--save-trimap is for trimap-free methods; {name} takes the trimap you give it")
        predictors = ", ".join(s.name for s in methods.specs() if s.capabilities.predicts_trimap)
        raise BadOptionError(
            f"method {name} predicts no trimap; drop --save-trimap (methods that predict one: {predictors})"
        )
    if trimap is not None and not Path(trimap).exists():
        raise BadOptionError(f"trimap not found: {trimap}")


def plan_matte(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str,
    trimap: Path | None,
    settings: MatteSettings,
    recursive: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
) -> tuple[Resolved, list[runner.Job]]:
    """Check the options against the method and plan the jobs (no model is built, no image read).

    Raises:
        UnknownMethodError, BadOptionError, DeviceError, NoInputsError, OutputError.
    """
    spec = methods.get(method)
    resolved = spec.resolve(settings.options)
    check_trimap_options(spec, trimap, save_trimap=settings.save_trimap)
    io.pixel_limit(settings.max_pixels)  # a bad --max-pixels / MATTECLI_MAX_PIXELS is a usage error
    items = io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard)
    jobs = runner.plan_jobs(items, Path(out), roles=output_roles(settings))
    runner.check_inputs_kept(jobs, {"trimap": trimap})
    if jobs:
        runner.check_writable(jobs[0].output.parent if len(jobs) == 1 else Path(out))
    return resolved, jobs


def matte_files(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str = "cf",
    trimap: Path | None = None,
    settings: MatteSettings | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    progress: type | None = None,
) -> tuple[list[runner.Job], Iterator[dict]]:
    """Plan and run matting over inputs; returns (jobs, iterator of per-file result dicts).

    Missing weights are fetched before any image is read (``settings.options.download``; a
    tqdm-compatible ``progress`` class draws the download); the method is built (weights loaded)
    once, with the first image. ``trimap`` is a file for one input or a folder matched by stem;
    trimap-based methods require it.

    Raises (before any work):
        UnknownMethodError, BadOptionError, DeviceError, NoInputsError, OutputError, WeightsError.
    """
    settings = settings or MatteSettings()
    resolved, jobs = plan_matte(
        inputs, out, method=method, trimap=trimap, settings=settings, recursive=recursive, stdin=stdin, shard=shard
    )
    matter = MatteRunner(resolved, settings, trimap, count=len(jobs), progress=progress)
    return jobs, matter.run(jobs, overwrite=overwrite)
