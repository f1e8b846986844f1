"""Scale-out: one worker process per local device, or a Ray Data pipeline on an existing cluster.

``--device cuda:0,cuda:1`` (or ``all``; ``cpu,cpu`` gives CPU workers) starts one process per
device. Each worker runs the ordinary single-device path on its shard of the inputs
(``--shard k/N`` semantics, by relative path), so outputs are byte-identical to a single-device
run and skip-existing / atomic writes make any worker safely re-runnable. The parent only
collects the per-file results for the progress bar, the summary and ``--json``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from mattecli.errors import BadOptionError, DeviceError

__all__ = ["parse_devices", "matte_on_devices", "matte_with_ray", "RayMatter"]


def parse_devices(spec: str) -> list[str] | None:
    """``"cuda:0,cuda:1"`` / ``"all"`` / ``"cpu,cpu"`` -> device list; a single device -> None.

    Raises:
        DeviceError: ``all`` with no CUDA device visible.
    """
    text = (spec or "").strip().lower()
    if text == "all":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError("--device all: no CUDA device is visible", hint="use --device cpu or a list like cpu,cpu")
        return [f"cuda:{i}" for i in range(count)]
    if "," not in text:
        return None
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if len(devices) < 2:
        raise BadOptionError(f"--device {spec!r}: give at least two devices, or one without a comma")
    return devices


def _worker(index: int, devices: list[str], call: dict, queue) -> None:
    """One device's share: the normal single-device run on shard ``index + 1`` of ``len(devices)``."""
    from dataclasses import replace

    from mattecli.errors import MatteCliError
    from mattecli.matting import matte_files

    settings = call["settings"]
    settings = replace(settings, config=replace(settings.config, device=devices[index]))
    cpu_workers = sum(d == "cpu" for d in devices)
    if devices[index] == "cpu" and cpu_workers > 1:  # share the cores instead of oversubscribing them
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cpu_workers))
    try:
        _, results = matte_files(
            call["inputs"],
            call["out"],
            method=call["method"],
            trimap=call["trimap"],
            settings=settings,
            recursive=call["recursive"],
            overwrite=call["overwrite"],
            shard=(index + 1, len(devices)),
        )
        for result in results:
            result["device"] = devices[index]
            queue.put(("row", result))
        queue.put(("done", None))
    except MatteCliError as err:
        queue.put(("fatal", (type(err).__name__, err.message, err.hint)))
    except BaseException as err:  # pragma: no cover - a crash in a worker: report it to the parent
        queue.put(("fatal", (type(err).__name__, f"worker on {devices[index]} crashed: {err}", None)))


def matte_on_devices(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    devices: list[str],
    *,
    method: str,
    trimap: Path | None,
    settings,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    progress: type | None = None,
) -> tuple[int, Iterator[dict]]:
    """Matte ``inputs`` with one process per device; returns (number of inputs, iterator of results).

    Missing weights are fetched here, once, before any worker starts (``progress``: a
    tqdm-compatible download bar). Results arrive as workers finish files (not in input order).
    A usage, weights or device error in any worker stops the run with that error.
    """
    from mattecli import engine, errors, io

    for device in devices:  # fail before spawning anything (e.g. cuda:1 on a one-GPU machine)
        engine.select_device(device)
    _fetch_weights(method, settings, progress)
    if stdin is not None and "-" in [os.fspath(i) for i in inputs]:  # workers cannot share our stdin
        inputs = [os.fspath(i) for i in inputs if os.fspath(i) != "-"] + [
            line.strip() for line in stdin if line.strip()
        ]
    total = len(io.discover(inputs, recursive=recursive))
    call = {
        "inputs": [os.fspath(i) for i in inputs],
        "out": Path(out),
        "method": method,
        "trimap": trimap,
        "settings": settings,
        "recursive": recursive,
        "overwrite": overwrite,
    }
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; spawn is also what Windows and macOS use

    def results() -> Iterator[dict]:
        queue = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(i, devices, call, queue), daemon=True) for i in range(len(devices))]
        for p in procs:
            p.start()
        try:
            running = len(procs)
            while running:
                kind, payload = queue.get()
                if kind == "row":
                    yield payload
                elif kind == "done":
                    running -= 1
                else:
                    name, message, hint = payload
                    cls = getattr(errors, name, errors.MatteCliError)
                    raise cls(message, hint=hint)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()

    if sys.platform == "win32":  # pragma: no cover
        raise BadOptionError("several devices per run are not supported on Windows yet")
    return total, results()


def _fetch_weights(method: str, settings, progress: type | None) -> None:
    """The method's missing weights, fetched once in this process before workers or actors start."""
    from mattecli import models
    from mattecli.weights import prefetch

    config = settings.config
    prefetch(models.get(method).required_weights(config), download=config.download, progress=progress)


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

        from mattecli import models
        from mattecli.matting import MatteRunner

        self.settings = replace(settings, config=replace(settings.config, device=device))
        self.out = Path(out)
        self.overwrite = overwrite
        self.runner = MatteRunner(
            models.get(method), self.settings, None if trimap is None else Path(trimap), count=count
        )

    def __call__(self, rows: dict) -> dict:
        import json

        import numpy as np

        from mattecli import batch
        from mattecli.io import InputItem
        from mattecli.matting import output_roles

        items = [InputItem(Path(p), Path(r)) for p, r in zip(rows["path"], rows["rel"], strict=True)]
        jobs = batch.plan_jobs(items, self.out, roles=output_roles(self.settings))
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
    workers: int | None = None,
    batch_size: int = 4,
    progress: type | None = None,
) -> tuple[int, Iterator[dict]]:
    """Matte ``inputs`` with a Ray Data pipeline; returns (number of inputs, iterator of results).

    Connects to ``address`` (or ``RAY_ADDRESS``; a new local instance when neither is set).
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
    from mattecli.matting import plan_matte

    _, jobs = plan_matte(
        inputs, Path(out), method=method, trimap=trimap, settings=settings, recursive=recursive, stdin=stdin
    )
    _fetch_weights(method, settings, progress)  # actors on this machine (or a shared cache) find them
    if not ray.is_initialized():
        ray.init(
            address=address,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
        )
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if settings.config.device != "cpu" else 0
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
