"""``matte``: alpha mattes (and optional cutouts, foregrounds, trimaps, previews) with one method.

plan (:func:`plan_matte`: options checked against the method's spec, inputs discovered, outputs
named and checked, all before any image is read) -> load (weights fetched once, the method built
with the first image) -> compute (``Matter.predict``) -> save (atomic writes; the alpha last), on
the shared job runner (:mod:`mattecli.pipelines.runner`).

``--trimap auto`` composes two methods: a method that predicts trimaps (``settings.trimap_method``,
AIM's glance decoder by default, or SHM's T-Net) predicts each image's trimap and the trimap-based
method mattes the image with it, in the same run. Both methods' options are resolved in
:func:`plan_matte`, both methods' weights are fetched before the first image, and each is built
once (:class:`MatteRunner`). ``--preview`` is a save step (:mod:`mattecli.preview`).
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
from mattecli.methods.base import EngineOptions, Matter, MethodOptions, Resolved
from mattecli.pipelines import runner

__all__ = [
    "MatteSettings",
    "MatteRunner",
    "output_roles",
    "plan_matte",
    "matte_image",
    "matte_files",
    "check_trimap_options",
    "default_trimap_method",
    "trimap_method_options",
    "resolve_trimap_method",
    "prefetch_trimap_method",
    "plan_fields",
]


@dataclass(frozen=True)
class MatteSettings:
    """What ``matte`` writes besides the alpha, and how the method runs (``options``)."""

    cutout: bool = False
    foreground: bool = False
    save_trimap: bool = False
    #: also write ``<stem>_preview.png``: input | trimap | alpha | cut-out over a checkerboard
    preview: bool = False
    bit_depth: int = 8
    max_pixels: int | None = None
    io_workers: int = 2
    options: MethodOptions = field(default_factory=MethodOptions)
    #: ``--trimap auto``: the method that predicts each image's trimap (None: trimaps given, or none needed)
    trimap_method: str | None = None
    #: ``--trimap-variant``: that method's weights variant (None: its default)
    trimap_variant: str | None = None


def default_trimap_method() -> str:
    """The method ``--trimap auto`` uses unless ``--trimap-method`` says otherwise."""
    return methods.DEFAULT_TRIMAP_METHOD


def trimap_method_options(settings: MatteSettings) -> MethodOptions:
    """The trimap method's options: the run's device, precision, memory cap and download policy, its own
    variant (``trimap_variant``) and, for everything else, its own defaults (the engine flags are the
    matting method's)."""
    o = settings.options
    return MethodOptions(
        variant=settings.trimap_variant,
        device=o.device,
        precision=o.precision,
        download=o.download,
        engine=EngineOptions(max_memory=o.engine.max_memory),
    )


def resolve_trimap_method(spec, settings: MatteSettings) -> Resolved | None:
    """``--trimap auto``: the trimap method's options checked against its spec (None without ``--trimap auto``).

    Raises:
        UnknownMethodError, BadOptionError: a method that predicts no trimap, a matting method that
            takes none, a bad ``--trimap-variant`` or an option the trimap method cannot honour.
        DeviceError: a device that is not there.
    """
    if settings.trimap_method is None:
        if settings.trimap_variant is not None:
            raise BadOptionError("--trimap-variant applies only with --trimap auto")
        return None
    from mattecli.pipelines.trimap import resolve_trimap_predictor

    if not spec.capabilities.takes_trimap:
        takers = ", ".join(s.name for s in methods.specs() if s.capabilities.takes_trimap)
        raise BadOptionError(
            f"method {spec.name} is trimap-free and takes no trimap, predicted or given; drop --trimap auto",
            hint=f"--trimap auto is for the methods that take a trimap ({takers})",
        )
    return resolve_trimap_predictor(settings.trimap_method, trimap_method_options(settings))


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
    if settings.preview:
        roles["preview"] = "_preview"
    return roles


class MatteRunner:
    """Mattes jobs with one resolved method; the method is built (weights loaded) on first use, then reused.

    ``count`` is the size of the whole input list (a single trimap file is only valid for one
    input). Used by :func:`matte_files` and by the backends (one runner per process or actor).
    With ``settings.trimap_method`` (``--trimap auto``) the trimap method is resolved here too and
    built once, beside the matting method; each image's predicted trimap is the one fed to the
    matting method, written by ``--save-trimap`` and drawn in the preview.
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
        self.trimap_resolved = resolve_trimap_method(self.spec, settings)
        self.trimap_matter: Matter | None = None

    def fetch_weights(self) -> None:
        """Fetch the method's missing weights (once, before the first image) or refuse offline.

        Raises:
            WeightsError: offline / ``--no-download`` with weights missing, or every source failed.
        """
        from mattecli.weights import prefetch

        prefetch(
            self.resolved.weights_to_fetch(), download=self.resolved.options.download, progress=self.progress
        )
        if self.trimap_resolved is not None:
            t = self.trimap_resolved
            prefetch(t.weights_to_fetch(), download=t.options.download, progress=self.progress)

    def load(self, job: runner.Job):
        s = self.settings
        image = io.read_image(job.item.path, max_pixels=s.max_pixels)
        tri_path = runner.pair_file(job.item, self.trimap, count=self.count, role="trimap")
        tri = None
        if tri_path is not None:
            tri = io.read_trimap(tri_path, shape=image.shape[:2], max_pixels=s.max_pixels)
        return image, tri

    def predict_trimap(self, image: np.ndarray) -> np.ndarray:
        """``--trimap auto``: the image's trimap from the trimap method (built on first use, then reused)."""
        if self.trimap_matter is None:
            self.trimap_matter = self.trimap_resolved.spec.create(self.trimap_resolved)
        return self.trimap_matter.predict_trimap(image)

    def _matter(self) -> Matter:
        """The matting method, built on first use; with ``--trimap auto`` each method's memory plan counts
        the other's fixed memory (both are loaded in this process)."""
        if self.matter is None:
            self.matter = self.spec.create(self.resolved)
            if self.trimap_matter is not None:
                self.matter.share_memory(self.trimap_matter)
                self.trimap_matter.share_memory(self.matter)
        return self.matter

    def compute(self, job: runner.Job, inputs) -> dict:
        image, tri = inputs
        trimap_plan = None
        if self.trimap_resolved is not None:
            tri = self.predict_trimap(image)
            executor = self.trimap_matter.executor
            trimap_plan = executor.record() if executor is not None else None
        result = self._matter().predict(image, tri)
        s = self.settings
        out = {"main": result.alpha, "plan": plan_fields(result.plan, trimap_plan, self.resolved)}
        used = tri if tri is not None else result.trimap  # given or predicted
        if s.save_trimap:
            out["trimap"] = used
        if s.cutout or s.foreground:
            out["fg"] = estimate_foreground(image, result.alpha)
        if s.preview:
            out["image"], out["used_trimap"] = image, used
        return out

    def save(self, job: runner.Job, out: dict) -> dict:
        bits = self.settings.bit_depth
        if "trimap" in out:
            io.atomic_write_bytes(job.outputs["trimap"], io.encode_png(out["trimap"]))
        if self.settings.preview:
            from mattecli.preview import render_preview

            picture = render_preview(out["image"], out["main"], out["used_trimap"], foreground=out.get("fg"))
            io.atomic_write_bytes(job.outputs["preview"], io.encode_png(picture))
        if self.settings.foreground:
            io.write_image(job.outputs["foreground"], out["fg"], bit_depth=bits)
        if self.settings.cutout:
            io.write_rgba(job.outputs["cutout"], out["fg"], out["main"], bit_depth=bits)
        io.write_alpha(job.output, out["main"], bit_depth=bits)  # last: its presence marks the job done
        return out["plan"]

    def run(self, jobs: list[runner.Job], *, overwrite: bool = False) -> Iterator[dict]:
        """Results per job; weights are fetched first when any job is left to do (and a default budget
        lowered to this machine's memory is said once, before the first image)."""
        if overwrite or any(not runner.is_done(job) for job in jobs):
            budget = self.resolved.budget
            if budget is not None and budget.note:
                import warnings

                warnings.warn(budget.note, RuntimeWarning, stacklevel=2)
            self.fetch_weights()
        stages = runner.Stages(compute=self.compute, load=self.load, save=self.save)
        return runner.run_jobs(
            jobs, stages, overwrite=overwrite, method=self.spec.name, io_workers=self.settings.io_workers
        )


def plan_fields(plan, trimap_plan=None, resolved: Resolved | None = None) -> dict:
    """The ``--json`` fields of what ran on one image (:attr:`MatteResult.plan`): ``strategy``, ``tile``
    (``[h, w]`` or None), ``tiles``, ``fallback`` (why a pass deviated from the plan, or None; the
    trimap method's, with ``--trimap auto``, prefixed by its name) and ``budget`` (``bytes``,
    ``source``: ``default``, ``machine`` or ``--max-memory``)."""
    plan = dict(plan or {})
    fallbacks = [plan.get("fallback")]
    if trimap_plan and trimap_plan.get("fallback"):
        fallbacks.insert(0, f"trimap: {trimap_plan['fallback']}")
    budget = resolved.budget if resolved is not None else None
    return {
        "strategy": plan.get("strategy"),
        "tile": plan.get("tile"),
        "tiles": plan.get("tiles"),
        "fallback": "; ".join(f for f in fallbacks if f) or None,
        "budget": None if budget is None else {"bytes": budget.bytes, "source": budget.source},
    }


def finished_run(jobs: list[runner.Job], *, overwrite: bool, method: str) -> Iterator[dict] | None:
    """The results of a run that has nothing left to do -- every output exists and not ``overwrite``:
    each job ``skipped`` (or an error, e.g. two jobs writing one file), with no weights fetched, no
    model built and no worker started -- or None when some job needs work. For backends whose start-up
    (worker processes, a Ray cluster) costs more than the check."""
    if overwrite or not all(runner.is_done(job) for job in jobs):
        return None

    def nothing(job: runner.Job) -> None:  # pragma: no cover - every job is done: run_jobs calls no work
        raise AssertionError(f"{job.item.path} was done")

    return runner.run_jobs(jobs, nothing, method=method)


def prefetch_trimap_method(spec, settings: MatteSettings, *, progress: type | None = None) -> None:
    """``--trimap auto``: fetch the trimap method's missing weights (for backends that fetch in the parent
    before starting workers); nothing without ``--trimap auto``.

    Raises:
        BadOptionError, DeviceError (see :func:`resolve_trimap_method`), WeightsError.
    """
    resolved = resolve_trimap_method(spec, settings)
    if resolved is not None:
        from mattecli.weights import prefetch

        prefetch(resolved.weights_to_fetch(), download=resolved.options.download, progress=progress)


def check_trimap_options(
    spec, trimap: Path | None, *, save_trimap: bool = False, trimap_method: str | None = None
) -> None:
    """What a method does with trimaps against ``--trimap`` / ``--save-trimap`` (usage errors, before any work).

    ``trimap_method``: ``--trimap auto`` with that method predicting the trimaps (checked by
    :func:`resolve_trimap_method`); ``--save-trimap`` then writes the predicted trimaps.
    """
    caps = spec.capabilities
    name = spec.name
    if trimap_method is not None:
        if trimap is not None:
            raise BadOptionError("give --trimap FILE_OR_FOLDER or --trimap auto, not both")
        return
    if caps.needs_trimap and trimap is None:
        free = ", ".join(s.name for s in methods.specs() if not s.capabilities.needs_trimap)
        raise BadOptionError(
            f"method {name} needs a trimap: pass --trimap FILE_OR_FOLDER, or --trimap auto to predict it "
            f"with {default_trimap_method()}",
            hint=f"or use a trimap-free method ({free})",
        )
    if trimap is not None and not caps.takes_trimap:
        takers = ", ".join(s.name for s in methods.specs() if s.capabilities.takes_trimap)
        raise BadOptionError(
            f"method {name} is trimap-free and takes no --trimap",
            hint=f"drop --trimap, or pick a method that takes one ({takers})",
        )
    if save_trimap and not caps.predicts_trimap:
        if caps.needs_trimap:
            raise BadOptionError(
                f"--save-trimap is for predicted trimaps; {name} takes the trimap you give it",
                hint="with --trimap auto, --save-trimap writes the trimap predicted for each image",
            )
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
    check_trimap_options(spec, trimap, save_trimap=settings.save_trimap, trimap_method=settings.trimap_method)
    trimap_resolved = resolve_trimap_method(spec, settings)  # --trimap auto: its options too, before any image
    from mattecli.runtime.memory import check_budget

    loaded = [r.footprint for r in (resolved, trimap_resolved) if r is not None and r.footprint is not None]
    check_budget(resolved.budget, loaded)  # an impossible --max-memory: a usage error, before any image
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
    trimap-based methods require it, unless ``settings.trimap_method`` predicts it (``--trimap auto``:
    both methods' weights fetched first, each method built once).

    Raises (before any work):
        UnknownMethodError, BadOptionError, DeviceError, NoInputsError, OutputError, WeightsError.
    """
    settings = settings or MatteSettings()
    resolved, jobs = plan_matte(
        inputs, out, method=method, trimap=trimap, settings=settings, recursive=recursive, stdin=stdin, shard=shard
    )
    matter = MatteRunner(resolved, settings, trimap, count=len(jobs), progress=progress)
    return jobs, matter.run(jobs, overwrite=overwrite)
