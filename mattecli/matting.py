"""``matte``: alpha mattes (and optional cutouts / foregrounds) for many images with one method."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mattecli import batch, io, models
from mattecli.composite import estimate_foreground
from mattecli.errors import BadOptionError
from mattecli.trimap import clamp_known

__all__ = [
    "MatteSettings",
    "MatteRunner",
    "output_roles",
    "plan_matte",
    "matte_image",
    "matte_files",
    "predicted_trimap_files",
]


@dataclass(frozen=True)
class MatteSettings:
    """What ``matte`` writes besides the alpha, and how."""

    cutout: bool = False
    foreground: bool = False
    save_trimap: bool = False
    bit_depth: int = 8
    max_pixels: int | None = None
    io_workers: int = 2
    config: models.MethodConfig = field(default_factory=models.MethodConfig)


def matte_image(
    matter: models.Matter, spec: models.MethodSpec, image: np.ndarray, trimap: np.ndarray | None
) -> np.ndarray:
    """One image through a ready method; alpha is float32 ``HxW`` clamped to the known trimap regions."""
    alpha = np.asarray(matter.predict(image, trimap), dtype=np.float32)
    if alpha.shape != image.shape[:2]:
        raise RuntimeError(f"method {spec.name} returned {alpha.shape} for an image of {image.shape[:2]}")
    alpha = np.clip(alpha, 0.0, 1.0)
    if trimap is not None:
        clamp_known(alpha, trimap)
    return alpha


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
    """Mattes jobs with one method; the method is built (weights loaded) on first use, then reused.

    ``count`` is the size of the whole input list (a single trimap file is only valid for one
    input). Used by :func:`matte_files` and by scale-out workers (one runner per process/actor).
    """

    def __init__(
        self,
        spec: models.MethodSpec,
        settings: MatteSettings,
        trimap: Path | None,
        *,
        count: int,
        progress: type | None = None,
    ):
        self.spec = spec
        self.settings = settings
        self.trimap = trimap
        self.count = count
        self.progress = progress
        self.matter = None

    def fetch_weights(self) -> None:
        """Fetch the method's missing weights (once, before the first image) or refuse offline.

        Raises:
            WeightsError: offline / ``--no-download`` with weights missing, or every source failed.
        """
        from mattecli.weights import prefetch

        config = self.settings.config
        prefetch(self.spec.required_weights(config), download=config.download, progress=self.progress)

    def load(self, job: batch.Job):
        s = self.settings
        image = io.read_image(job.item.path, max_pixels=s.max_pixels)
        tri_path = batch.pair_file(job.item, self.trimap, count=self.count, role="trimap")
        tri = None
        if tri_path is not None:
            tri = io.read_trimap(tri_path, shape=image.shape[:2], max_pixels=s.max_pixels)
        return image, tri

    def compute(self, job: batch.Job, inputs) -> dict:
        image, tri = inputs
        if self.matter is None:
            self.matter = self.spec.create(self.settings.config)
        out = {}
        if self.settings.save_trimap:
            alpha, out["trimap"] = self.matter.predict_with_trimap(image)
        else:
            alpha = matte_image(self.matter, self.spec, image, tri)
        out["main"] = alpha
        if self.settings.cutout or self.settings.foreground:
            out["fg"] = estimate_foreground(image, alpha)
        return out

    def save(self, job: batch.Job, out: dict) -> None:
        bits = self.settings.bit_depth
        if "trimap" in out:
            io.atomic_write_bytes(job.outputs["trimap"], io.encode_png(out["trimap"]))
        if self.settings.foreground:
            io.write_image(job.outputs["foreground"], out["fg"], bit_depth=bits)
        if self.settings.cutout:
            io.write_rgba(job.outputs["cutout"], out["fg"], out["main"], bit_depth=bits)
        io.write_alpha(job.output, out["main"], bit_depth=bits)  # last: its presence marks the job done

    def run(self, jobs: list[batch.Job], *, overwrite: bool = False) -> Iterator[dict]:
        """Results per job; weights are fetched first when any job is left to do."""
        if overwrite or any(not all(p.exists() for p in job.outputs.values()) for job in jobs):
            self.fetch_weights()
        stages = batch.Stages(compute=self.compute, load=self.load, save=self.save)
        return batch.run_jobs(
            jobs, stages, overwrite=overwrite, method=self.spec.name, io_workers=self.settings.io_workers
        )


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
) -> tuple[models.MethodSpec, list[batch.Job]]:
    """Check the options against the method and plan the jobs (no model is built).

    Raises:
        UnknownMethodError, BadOptionError, NoInputsError, OutputError.
    """
    spec = models.get(method)
    if spec.needs_trimap and trimap is None:
        raise BadOptionError(
            f"method {method} needs a trimap",
            hint="pass --trimap FILE_OR_FOLDER (or use a trimap-free method)",
        )
    if trimap is not None and not (spec.needs_trimap or spec.accepts_trimap):
        raise BadOptionError(
            f"method {method} is trimap-free and takes no --trimap",
            hint="drop --trimap, or pick a trimap-based method (cf, knn)",
        )
    if settings.save_trimap and spec.needs_trimap:
        raise BadOptionError(f"--save-trimap is for trimap-free methods; {method} takes the trimap you give it")
    if settings.config.options.get("scales") and len(spec.scales) < 2:
        raise BadOptionError(f"method {method} defines no multi-scale fusion; drop --scales")
    if trimap is not None and not trimap.exists():
        raise BadOptionError(f"trimap not found: {trimap}")
    io.pixel_limit(settings.max_pixels)  # a bad --max-pixels / MATTECLI_MAX_PIXELS is a usage error
    items = io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard)
    jobs = batch.plan_jobs(items, Path(out), roles=output_roles(settings))
    batch.check_inputs_kept(jobs, {"trimap": trimap})
    if jobs:
        batch.check_writable(jobs[0].output.parent if len(jobs) == 1 else Path(out))
    return spec, jobs


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
) -> tuple[list[batch.Job], Iterator[dict]]:
    """Plan and run matting over inputs; returns (jobs, iterator of per-file result dicts).

    Missing weights are fetched before any image is read (``settings.config.download``; a
    tqdm-compatible ``progress`` class draws the download); the method is built (weights loaded)
    once, with the first image. ``trimap`` is a file for one input or a folder matched by stem;
    trimap-based methods require it.

    Raises (before any work):
        UnknownMethodError, BadOptionError, NoInputsError, OutputError, WeightsError.
    """
    settings = settings or MatteSettings()
    spec, jobs = plan_matte(
        inputs, out, method=method, trimap=trimap, settings=settings, recursive=recursive, stdin=stdin, shard=shard
    )
    runner = MatteRunner(spec, settings, trimap, count=len(jobs), progress=progress)
    return jobs, runner.run(jobs, overwrite=overwrite)


def predicted_trimap_files(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str = "aim",
    config: models.MethodConfig | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    progress: type | None = None,
) -> tuple[list[batch.Job], Iterator[dict]]:
    """Trimaps predicted from the images themselves by a trimap-free method (e.g. AIM's glance decoder).

    The method's missing weights are fetched first (``config.download``; ``progress`` draws it).

    Raises (before any work):
        UnknownMethodError, BadOptionError (a method that cannot predict trimaps), NoInputsError,
        WeightsError.
    """
    spec = models.get(method)
    if spec.needs_trimap:
        raise BadOptionError(
            f"method {method} needs a trimap itself and cannot predict one",
            hint="use a trimap-free method, e.g. --method aim",
        )
    jobs = batch.plan_jobs(io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard), Path(out))
    batch.check_inputs_kept(jobs)
    config = config or models.MethodConfig()
    if overwrite or any(not job.output.exists() for job in jobs):
        from mattecli.weights import prefetch

        prefetch(spec.required_weights(config), download=config.download, progress=progress)

    def results() -> Iterator[dict]:
        matter = None

        def work(job: batch.Job) -> dict:
            nonlocal matter
            image = io.read_image(job.item.path, max_pixels=max_pixels)
            if matter is None:
                matter = spec.create(config)
            _, trimap = matter.predict_with_trimap(image)
            io.atomic_write_bytes(job.output, io.encode_png(trimap))
            return {"unknown_fraction": round(float((trimap == 128).mean()), 4)}

        yield from batch.run_jobs(jobs, work, overwrite=overwrite, method=method)

    return jobs, results()
