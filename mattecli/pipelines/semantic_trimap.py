"""``semantic-trimap``: SIM's semantic trimap (trimap + 20 class score maps) written for each image.

The analysis and the file formats are SIM's (:mod:`mattecli.methods.sim.semantic`); this module
plans the outputs and runs them on the job runner. With ``--trimap auto`` (``settings.trimap_method``)
each image's trimap is predicted first by a method that predicts trimaps (AIM's glance decoder by
default), built once beside the classifier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mattecli import io
from mattecli.errors import BadOptionError
from mattecli.methods.sim.semantic import (
    CLASSIFIER_VARIANT,
    PATCH_SIZES,
    class_index,
    class_shares,
    encode_scores,
    load_analyzer,
    parse_patch_sizes,
    render_preview,
)
from mattecli.methods.sim.spec import CLASSIFIER
from mattecli.pipelines import runner

__all__ = ["SemanticSettings", "semantic_trimap_files"]

@dataclass(frozen=True)
class SemanticSettings:
    """What ``semantic-trimap`` writes and how the classifier runs."""

    scores: bool = True
    preview: bool = False
    device: str = "auto"
    precision: str = "fp32"
    weights: Path | None = None
    #: classifier patches per pass; None: 1 on the CPU, 4 on a GPU (``semantic.default_batch_size``)
    batch_size: int | None = None
    patch_sizes: tuple[int, ...] = PATCH_SIZES
    max_pixels: int | None = None
    #: fetch the classifier's weights on first use (``False``: ``--no-download``)
    download: bool = True
    #: ``--trimap auto``: the method that predicts each image's trimap (None: trimaps are given)
    trimap_method: str | None = None
    #: ``--trimap-variant``: that method's weights variant
    trimap_variant: str | None = None
    #: also write ``<stem>_trimap.png``, the predicted trimap (``--trimap auto`` only)
    save_trimap: bool = False


def _plan(items: list[io.InputItem], out: Path, settings: SemanticSettings) -> list[runner.Job]:
    single_scores = out.suffix.lower() == ".safetensors" and not out.is_dir()
    if single_scores:
        if len(items) > 1:
            raise BadOptionError(
                f"{out} looks like a file but there are {len(items)} inputs",
                hint="give an output folder for several inputs",
            )
        if not settings.scores:
            raise BadOptionError(f"--no-scores contradicts the output file {out}")
    jobs = []
    for job in runner.plan_jobs(items, out, ext=".png"):
        main = job.output
        if single_scores:
            named = {"scores": out, "classes": out.with_name(out.stem + "_classes.png")}
            base = out.with_suffix("")
        elif main == out:  # OUT is the class-index PNG of the one input
            named = {"classes": out, "scores": out.with_name(out.stem + "_semantic.safetensors")}
            base = out.with_suffix("")
        else:
            base = main.with_suffix("")
            named = {
                "scores": base.with_name(base.name + "_semantic.safetensors"),
                "classes": base.with_name(base.name + "_classes.png"),
            }
        outputs = {}
        if settings.scores:
            outputs["scores"] = named["scores"]
        outputs["classes"] = named["classes"]
        if settings.preview:
            outputs["preview"] = base.with_name(base.name + "_preview.png")
        if settings.save_trimap:
            outputs["trimap"] = base.with_name(base.name + "_trimap.png")
        jobs.append(runner.Job(job.item, outputs))
    return jobs


def _resolve_predictor(trimap: Path | None, settings: SemanticSettings):
    """``--trimap`` against ``--trimap auto`` (usage errors before any work); the trimap method resolved, or None."""
    from mattecli.methods.base import MethodOptions
    from mattecli.pipelines.trimap import predictors, resolve_trimap_predictor

    if settings.trimap_method is None:
        if settings.trimap_variant is not None:
            raise BadOptionError("--trimap-variant applies only with --trimap auto")
        if settings.save_trimap:
            raise BadOptionError(
                "--save-trimap writes the predicted trimaps; semantic-trimap takes the ones you give it",
                hint="use it with --trimap auto",
            )
        if trimap is None:
            raise BadOptionError(
                "semantic-trimap needs a trimap: pass --trimap FILE_OR_FOLDER, or --trimap auto to predict it "
                f"with {predictors()[0]}"
            )
        if not Path(trimap).exists():
            raise BadOptionError(f"trimap not found: {trimap}")
        return None
    if trimap is not None:
        raise BadOptionError("give --trimap FILE_OR_FOLDER or --trimap auto, not both")
    options = MethodOptions(
        variant=settings.trimap_variant,
        device=settings.device,
        precision=settings.precision,
        download=settings.download,
    )
    return resolve_trimap_predictor(settings.trimap_method, options)


def semantic_trimap_files(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    trimap: Path | None,
    settings: SemanticSettings | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    progress: type | None = None,
) -> tuple[list[runner.Job], Iterator[dict]]:
    """Plan and compute semantic trimaps; returns (jobs, iterator of per-file result dicts).

    ``trimap`` is a file (one input) or a folder matched by file stem; None with
    ``settings.trimap_method`` (``--trimap auto``: each trimap predicted by that method, whose
    weights are fetched here too and which is built once). The classifier's weights
    are fetched here when missing (``settings.download``; ``progress`` draws the download) and
    the classifier is loaded once, when the iterator starts. Result dicts carry ``classes``
    (share of the unknown region per class present) and ``unknown_fraction``.

    Raises (before any work):
        BadOptionError, NoInputsError, OutputError, WeightsError.
    """
    settings = settings or SemanticSettings()
    predictor = _resolve_predictor(trimap, settings)
    sizes = parse_patch_sizes(settings.patch_sizes)
    if settings.batch_size is not None and settings.batch_size < 1:
        raise BadOptionError(f"--batch-size must be >= 1, not {settings.batch_size}")
    io.pixel_limit(settings.max_pixels)  # a bad --max-pixels / MATTECLI_MAX_PIXELS is a usage error
    items = io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard)
    jobs = _plan(items, Path(out), settings)
    runner.check_inputs_kept(jobs, {"trimap": None if trimap is None else Path(trimap)})
    if jobs:
        runner.check_writable(jobs[0].output.parent if len(jobs) == 1 else Path(out))
    if settings.weights is None and (overwrite or any(not all(p.exists() for p in j.outputs.values()) for j in jobs)):
        from mattecli.weights import prefetch

        prefetch([CLASSIFIER_VARIANT], download=settings.download, progress=progress)
    if predictor is not None and (overwrite or any(not runner.is_done(j) for j in jobs)):
        from mattecli.weights import prefetch

        prefetch(predictor.weights_to_fetch(), download=settings.download, progress=progress)

    def results() -> Iterator[dict]:
        analyzer = None
        trimap_matter = None

        def work(job: runner.Job) -> dict:
            nonlocal analyzer, trimap_matter
            image = io.read_image(job.item.path, max_pixels=settings.max_pixels)
            if predictor is not None:
                if trimap_matter is None:
                    trimap_matter = predictor.spec.create(predictor)
                tri = trimap_matter.predict_trimap(image)
                tri_name = f"predicted by {predictor.spec.name}"
            else:
                tri_path = runner.pair_file(job.item, Path(trimap), count=len(jobs), role="trimap")
                tri = io.read_trimap(tri_path, shape=image.shape[:2], max_pixels=settings.max_pixels)
                tri_name = Path(tri_path).name
            if analyzer is None:
                analyzer = load_analyzer(
                    CLASSIFIER,
                    device=settings.device,
                    precision=settings.precision,
                    weights=settings.weights,
                    patch_sizes=sizes,
                    batch_size=settings.batch_size,
                )
            st = analyzer.analyze(image, tri)
            if "scores" in job.outputs:
                meta = {
                    "source": job.item.path.name,
                    "trimap": tri_name,
                    "classifier": CLASSIFIER_VARIANT if settings.weights is None else Path(settings.weights).name,
                    "patch_sizes": ",".join(map(str, sizes)),
                }
                io.atomic_write_bytes(job.outputs["scores"], encode_scores(st, meta))
            if "trimap" in job.outputs:
                io.atomic_write_bytes(job.outputs["trimap"], io.encode_png(tri))
            io.atomic_write_bytes(job.outputs["classes"], io.encode_png(class_index(st)))
            if "preview" in job.outputs:
                io.atomic_write_bytes(job.outputs["preview"], io.encode_png(render_preview(image, st)))
            return {
                "outputs": {k: str(v) for k, v in job.outputs.items()},
                "unknown_fraction": round(float(st.unknown.mean()), 4),
                "classes": class_shares(st),
            }

        yield from runner.run_jobs(jobs, work, overwrite=overwrite, method="semantic-trimap")

    return jobs, results()
