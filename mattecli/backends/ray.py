"""Backend: a Ray Data pipeline on an existing cluster (``matte --ray``; ``pip install 'mattecli[ray]'``).

The input paths are read here and must be visible to every node (a shared file system);
``map_batches`` runs :class:`RayMatter`, a callable class whose actors each build the method once
(one GPU per actor on GPU clusters, CPU actors otherwise) and write with the same names and
skip-existing semantics as the local path.

Stopping the driver (Ctrl-C, or SIGTERM / SIGHUP through the CLI's handlers) leaves the actors to
Ray, which ends them when the driver's Ray session shuts down; an actor ended mid-write may leave its
``.<name>.<pid>.<random>.part`` file, which the next run over that folder removes once no live
process holds it (:func:`mattecli.io.remove_stale_parts`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from mattecli.errors import BadOptionError

__all__ = ["RayMatter", "matte_with_ray"]


# ----------------------------------------------------------------------------- Ray
class RayMatter:
    """A Ray Data ``map_batches`` callable: each actor builds the method (loads the weights) once.

    Batches are dicts of numpy arrays with ``path`` and ``rel`` columns; the result column
    ``result`` holds each file's result dict as JSON (same fields as the local path). Outputs
    are planned and written exactly as locally (same names, skip-existing, atomic writes).
    """

    def __init__(
        self, *, method: str, settings, trimap: str | None, out: str, count: int, overwrite: bool, device: str
    ):
        from dataclasses import replace

        from mattecli import methods
        from mattecli.pipelines.matte import MatteRunner

        self.settings = replace(settings, options=replace(settings.options, device=device))
        self.out = Path(out)
        self.overwrite = overwrite
        resolved = methods.get(method).resolve(self.settings.options)
        self.runner = MatteRunner(resolved, self.settings, None if trimap is None else Path(trimap), count=count)

    def __call__(self, rows: dict) -> dict:
        import json

        import numpy as np

        from mattecli.io import InputItem
        from mattecli.pipelines import runner
        from mattecli.pipelines.matte import output_roles

        items = [InputItem(Path(p), Path(r)) for p, r in zip(rows["path"], rows["rel"], strict=True)]
        jobs = runner.plan_jobs(items, self.out, roles=output_roles(self.settings))
        results = [json.dumps(r, default=str) for r in self.runner.run(jobs, overwrite=self.overwrite)]
        return {"result": np.array(results, dtype=object)}


def matte_with_ray(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    *,
    method: str,
    trimap: Path | None,
    settings,
    address: str | None = None,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    workers: int | None = None,
    batch_size: int = 4,
    progress: type | None = None,
) -> tuple[int, Iterator[dict]]:
    """Matte ``inputs`` with a Ray Data pipeline; returns (number of inputs, iterator of results).

    Connects to ``address`` (or ``RAY_ADDRESS``; a new local instance when neither is set).
    ``shard`` keeps shard K of N of the inputs, as on one machine.
    The input paths are read here and must be visible to every node (a shared file system).
    Each actor takes one GPU when the cluster has GPUs (and ``--device`` is not ``cpu``),
    otherwise one CPU; ``workers`` actors (default: one per GPU, or one per two CPUs).

    Raises:
        BadOptionError: Ray is not installed (``pip install 'mattecli[ray]'``).
    """
    import json

    try:
        import ray
    except ImportError:
        raise BadOptionError("--ray needs Ray", hint="pip install 'mattecli[ray]'") from None
    from mattecli.pipelines.matte import finished_run, plan_matte, prefetch_trimap_method
    from mattecli.weights import prefetch

    resolved, jobs = plan_matte(
        inputs,
        Path(out),
        method=method,
        trimap=trimap,
        settings=settings,
        recursive=recursive,
        stdin=stdin,
        shard=shard,
    )
    done = finished_run(jobs, overwrite=overwrite, method=resolved.spec.name)
    if done is not None:  # a finished folder run again: no cluster to join
        return len(jobs), done
    # actors on this machine (or sharing its cache) find them
    prefetch(resolved.weights_to_fetch(), download=settings.options.download, progress=progress)
    prefetch_trimap_method(resolved.spec, settings, progress=progress)  # --trimap auto: its weights too
    if not ray.is_initialized():
        ray.init(
            address=address,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if settings.options.device != "cpu" else 0
    cpus = max(1, int(resources.get("CPU", 1)))
    actors = workers or (gpus if gpus else max(1, cpus // 2))
    rows = [{"path": str(job.item.path), "rel": job.item.rel.as_posix()} for job in jobs]

    def results() -> Iterator[dict]:
        if not rows:
            return
        ds = ray.data.from_items(rows).map_batches(
            RayMatter,
            fn_constructor_kwargs={
                "method": method,
                "settings": settings,
                "trimap": None if trimap is None else str(trimap),
                "out": str(out),
                "count": len(jobs),
                "overwrite": overwrite,
                "device": "cuda" if gpus else "cpu",
            },
            batch_size=batch_size,
            concurrency=actors,
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
        )
        for row in ds.iter_rows():
            yield json.loads(row["result"])

    return len(jobs), results()
