"""Backend: one worker process per local device (``--device cuda:0,cuda:1``, ``all``, ``cpu,cpu``).

Each worker runs the ordinary single-device path (:mod:`mattecli.backends.local`) on its shard of
the inputs (``--shard k/N`` semantics, by relative path), so outputs are byte-identical to a
single-device run and skip-existing / atomic writes make any worker safely re-runnable. The parent
fetches missing weights once before any worker starts and only collects the per-file results for
the progress bar, the summary and ``--json``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from mattecli.errors import BadOptionError, DeviceError

__all__ = ["parse_devices", "matte_on_devices"]


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
    from mattecli.pipelines.matte import matte_files

    settings = call["settings"]
    settings = replace(settings, options=replace(settings.options, device=devices[index]))
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

    The jobs are planned here first: when every output exists already (and not ``overwrite``) each
    file is reported ``skipped`` with no worker started and no weights fetched. Missing weights are
    fetched here, once, before any worker starts (``progress``: a tqdm-compatible download bar).
    Results arrive as workers finish files (not in input order).
    A usage, weights or device error in any worker stops the run with that error.
    """
    from dataclasses import replace

    from mattecli import errors, methods
    from mattecli.pipelines.matte import finished_run, plan_matte, prefetch_trimap_method
    from mattecli.weights import prefetch

    spec = methods.get(method)
    for device in devices:  # every option checked on every device before spawning anything
        spec.resolve(replace(settings.options, device=device))  # e.g. cuda:1 on a one-GPU machine
    if stdin is not None and "-" in [os.fspath(i) for i in inputs]:  # workers cannot share our stdin
        inputs = [os.fspath(i) for i in inputs if os.fspath(i) != "-"] + [
            line.strip() for line in stdin if line.strip()
        ]
    one = replace(settings, options=replace(settings.options, device=devices[0]))
    resolved, jobs = plan_matte(inputs, Path(out), method=method, trimap=trimap, settings=one, recursive=recursive)
    done = finished_run(jobs, overwrite=overwrite, method=spec.name)
    if done is not None:  # a finished folder run again: no worker to start
        return len(jobs), ({**row, "device": None} for row in done)
    prefetch(resolved.weights_to_fetch(), download=settings.options.download, progress=progress)
    prefetch_trimap_method(spec, settings, progress=progress)  # --trimap auto: the trimap method's weights too
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
    return len(jobs), results()
