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
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from mattecli.errors import BadOptionError, DeviceError

__all__ = ["parse_devices", "matte_on_devices", "STOP_TIMEOUT"]

#: Seconds a worker is given to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 30.0
#: Seconds a stopping worker waits for the write in flight in its I/O threads before abandoning it.
STOP_GRACE = 5.0


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


def _stop_on_signals() -> None:
    """In a worker process (its own process, so no caller's state is touched): SIGTERM and SIGHUP
    raise ``KeyboardInterrupt`` once (later ones are ignored while it cleans up), and Ctrl-C's
    SIGINT, which the terminal sends to the parent too, is left to the parent, which stops the
    workers with SIGTERM. A signal already ignored (``nohup``) stays ignored."""
    stops = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def stop(signum, frame) -> None:
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signum)

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in stops:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, stop)


def _worker(index: int, devices: list[str], call: dict, queue) -> None:
    """One device's share: the normal single-device run on shard ``index + 1`` of ``len(devices)``.

    Stopped by the parent (SIGTERM), it finishes or removes the file it is writing (the job
    runner's clean-up, as after Ctrl-C) and exits without reporting: the parent is no longer reading.
    """
    import warnings
    from dataclasses import replace

    from mattecli.errors import MatteCliError
    from mattecli.pipelines.matte import matte_files

    warnings.simplefilter("ignore")  # the parent planned the same inputs and showed their warnings
    _stop_on_signals()
    try:
        settings = call["settings"]
        settings = replace(settings, options=replace(settings.options, device=devices[index]))
        cpu_workers = sum(d == "cpu" for d in devices)
        if devices[index] == "cpu" and cpu_workers > 1:  # share the cores instead of oversubscribing them
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // cpu_workers))
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
    except KeyboardInterrupt:  # stopped by the parent: nobody reads the queue any more
        queue.cancel_join_thread()
        from mattecli.io import abandon_writes

        if abandon_writes(STOP_GRACE):  # a write blocked for good: do not wait for its thread at exit
            os._exit(128 + signal.SIGTERM)
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
    A usage, weights or device error in any worker stops the run with that error. When the
    results' consumer stops (an exception in this process: Ctrl-C, a CLI's SIGTERM handler), the
    workers get SIGTERM and each finishes or removes the file it is writing (at most
    :data:`STOP_TIMEOUT` seconds) before this returns.
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
        finally:  # a worker stopped mid-write completes or removes that file before it exits
            for p in procs:
                if p.is_alive():
                    p.terminate()
            for p in procs:
                p.join(STOP_TIMEOUT)
                if p.is_alive():  # stuck in native code: its temporary file is removed by the next run
                    p.kill()
                    p.join()

    if sys.platform == "win32":  # pragma: no cover
        raise BadOptionError("several devices per run are not supported on Windows yet")
    return len(jobs), results()
