"""The one job runner of every command: output naming, skip/resume, per-file errors, I/O beside compute.

Every file command (``matte``, ``trimap``, ``composite``) does the same thing: turn
discovered inputs into jobs with output paths, skip jobs whose outputs exist,
run the rest one by one, and report each as ``ok``, ``skipped`` or ``error``
without letting one bad file stop the run. That logic lives here, with no
printing: :func:`run_jobs` yields one result dict per job and the CLI renders it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattecli import constants
from mattecli.errors import (
    BadOptionError,
    DeviceError,
    MatteCliError,
    OutputError,
    TrimapError,
    UsageError,
    WeightsError,
)
from mattecli.io import InputItem, find_by_stem, is_image_path, not_regular_output, remove_stale_parts

__all__ = ["Job", "Stages", "plan_jobs", "pair_file", "run_jobs", "check_writable", "is_done", "check_inputs_kept"]


@dataclass(frozen=True)
class Job:
    """One input image and the files it produces (role -> path; the first role is the main output)."""

    item: InputItem
    outputs: dict[str, Path]

    @property
    def output(self) -> Path:
        return next(iter(self.outputs.values()))


def is_done(job: Job) -> bool:
    """Whether every output of ``job`` exists as a regular file (a rerun skips it unless ``--overwrite``).

    A device, pipe or socket (or a folder) where an output belongs is not a finished output:
    :func:`check_inputs_kept` refuses it up front and :func:`run_jobs` reports it for its job."""
    return all(p.is_file() for p in job.outputs.values())


def _looks_like_file(out: Path) -> bool:
    return is_image_path(out) and not out.is_dir()


def plan_jobs(
    items: Sequence[InputItem],
    out: Path,
    *,
    roles: dict[str, str] | None = None,
    ext: str = ".png",
) -> list[Job]:
    """Decide output paths for each input.

    ``out`` is a folder, mirroring each input's relative path there with the suffix
    ``ext``; with exactly one input, ``out`` may also be a file name (it has an
    image extension and is not an existing folder). ``roles`` maps extra output
    roles to file-name suffixes, e.g. ``{"cutout": "_cutout"}`` gives
    ``<stem>_cutout.png`` beside the main output.

    Raises:
        BadOptionError: ``out`` names a file but there are several inputs, or is ``-``.
    """
    roles = roles or {}
    if str(out) == "-":
        raise BadOptionError(
            "OUT '-' would be a folder named '-': outputs are files, never stdout",
            hint="name an output file or folder (use ./- if you really mean that folder)",
        )
    if _looks_like_file(out) and len(items) > 1:
        raise BadOptionError(
            f"{out} looks like a file but there are {len(items)} inputs",
            hint="give an output folder for several inputs",
        )
    jobs = []
    for item in items:
        main = out if _looks_like_file(out) else out / item.rel.with_suffix(ext)
        outputs = {"main": main}
        for role, suffix in roles.items():
            outputs[role] = main.with_name(main.stem + suffix + ".png")
        jobs.append(Job(item, outputs))
    return jobs


def pair_file(item: InputItem, given: Path | None, *, count: int, role: str) -> Path | None:
    """The companion file (trimap, alpha...) of ``item``: a file for a single input, else matched by stem.

    Raises:
        BadOptionError: a single file given for several inputs, or a path that does not exist.
        TrimapError: no file with the item's stem in the folder.
    """
    if given is None:
        return None
    if given.is_dir():
        return find_by_stem(item, given, role=role)
    if not given.exists():
        raise BadOptionError(f"{role} not found: {given}")
    if count > 1:
        raise BadOptionError(
            f"one {role} file ({given}) given for {count} inputs",
            hint=f"pass a folder of {role}s matched to images by file stem",
        )
    return given


def _identity(path: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file ``path`` names (symlinks followed), None if it does not exist."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_inputs_kept(
    jobs: Sequence[Job],
    companions: dict[str, Path | None] | None = None,
    shared: dict[str, Path | None] | None = None,
) -> None:
    """Refuse, before any work, a run that would write over any of its own inputs, or over
    anything that is not a regular file.

    The inputs are every job's image, its companion of each role in ``companions`` (role ->
    the file given for one input, or the folder its file is matched from by stem, as
    :func:`pair_file` does) and the files in ``shared`` (role -> one file every job reads,
    e.g. a background image). An output is the same file as an input when both exist and
    have the same ``(st_dev, st_ino)``: symlinked folders, symlinks and hard links all
    resolve to it. (An output that does not exist yet cannot be an existing input.) This
    holds with or without ``--overwrite``: without it such a run would "skip" the output
    and silently do nothing.

    An existing output path that is a device, a pipe or a socket (symlinks followed) is refused
    too, with or without ``--overwrite``: replacing it would rename a PNG over ``/dev/null``,
    and skipping it would report a file as done that was never written.

    Raises:
        BadOptionError: an output is an input (the message names both).
        BadOptionError: from :func:`pair_file` (one companion file for several inputs).
        OutputError: an output path is a device, a pipe or a socket (the message names it).
    """
    for job in jobs:
        for out in job.outputs.values():
            _refuse_special_output(out)
    inputs: dict[tuple[int, int], tuple[str, Path]] = {}

    def add(role: str, path: Path | None) -> None:
        key = None if path is None else _identity(path)
        if key is not None:
            inputs.setdefault(key, (role, path))

    for role, path in (shared or {}).items():
        add(role, path)
    for job in jobs:
        add("input image", job.item.path)
        for role, given in (companions or {}).items():
            if given is None:
                continue
            try:
                add(role, pair_file(job.item, given, count=len(jobs), role=role))
            except TrimapError:
                continue  # no companion for this image: reported for it when it runs
    if not inputs:
        return
    for job in jobs:
        for out in job.outputs.values():
            hit = inputs.get(_identity(out))
            if hit is not None:
                role, path = hit
                raise BadOptionError(
                    f"output {out} would overwrite the {role} {path}",
                    hint="write the outputs somewhere else: inputs are never overwritten, not even with --overwrite",
                )


def _refuse_special_output(out: Path, job: Job | None = None) -> None:
    kind = not_regular_output(out)
    if kind is not None:
        lead = f"{job.item.path}: output" if job is not None else "output"
        raise OutputError(
            f"{lead} {out} is {kind}, not a regular file: it is never written over (nor skipped as done)",
            hint="remove it or choose another OUT",
        )


def check_writable(folder: Path) -> None:
    """Fail early (before any work) if ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"cannot create output folder {folder} ({err.strerror or err})",
            hint="choose a writable output folder",
        ) from err
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable", hint="choose a writable output folder")


@dataclass(frozen=True)
class Stages:
    """One job's work split so that disk and device overlap.

    ``load(job)`` (decode inputs) and ``save(job, outputs)`` (encode + write, may
    return extra result fields) run in I/O threads; ``compute(job, inputs)`` (the
    model) runs on the calling thread, one job at a time, in order.
    """

    compute: Callable[[Job, Any], Any]
    load: Callable[[Job], Any] | None = None
    save: Callable[[Job, Any], dict | None] | None = None


def _timed(func: Callable, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    return func(*args), time.perf_counter() - start


def _report(result: dict, job: Job, err: BaseException) -> None:
    """Turn a per-file exception into the error fields of ``result`` (fatal families propagate)."""
    if isinstance(err, (UsageError, WeightsError, DeviceError)):
        raise err  # wrong for every file: stop the run (the CLI exits 2)
    if isinstance(err, MatteCliError):
        result.update(status="error", error=_with_path(err.message, job), hint=err.hint)
    elif isinstance(err, MemoryError):
        result.update(status="error", error=f"{job.item.path}: out of memory", hint="try a smaller image")
    else:  # a bug or an unexpected library failure: report, keep going
        if constants.MATTECLI_DEBUG:
            raise err
        result.update(
            status="error",
            error=f"{job.item.path}: internal error: {type(err).__name__}: {err}",
            hint="set MATTECLI_DEBUG=1 for the traceback and please report it",
        )


def _real(path: Path) -> Path:
    """``path`` with symlinks resolved; never raises (a symlink loop stays as it is)."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError, RuntimeError):
        return Path(os.path.abspath(path))


def _claim(job: Job, claimed: dict[Path, Path]) -> None:
    image = _identity(job.item.path)
    for path in job.outputs.values():
        key = _real(path)
        if key in claimed:
            raise OutputError(
                f"{job.item.path}: output {path} is also the output of {claimed[key]}",
                hint="inputs with the same file stem would overwrite each other; rename one",
            )
        if key == _real(job.item.path) or (image is not None and _identity(path) == image):
            raise OutputError(f"{job.item.path}: output would overwrite the input itself")
        if path.is_dir():
            raise OutputError(f"{job.item.path}: output {path} is a folder", hint="move it away or choose another OUT")
        _refuse_special_output(path, job)
        claimed[key] = job.item.path


#: output folders already cleared by this process (a Ray actor runs many small batches into one folder)
_CLEARED: set[str] = set()
_CLEARED_LOCK = threading.Lock()


def _remove_stale_parts(jobs: Sequence[Job]) -> None:
    """Before writing, clear the temporary files that killed runs left in the output folders.

    Once per folder and process: what is stale was left before this process started writing there.
    """
    folders: dict[Path, set[str]] = {}
    for job in jobs:
        for path in job.outputs.values():
            folders.setdefault(path.parent, set()).add(path.name)
    for folder, names in folders.items():
        key = os.path.abspath(folder)
        with _CLEARED_LOCK:
            if key in _CLEARED:
                continue
        if folder.is_dir():
            remove_stale_parts(folder, names)
            with _CLEARED_LOCK:
                _CLEARED.add(key)


def run_jobs(
    jobs: Sequence[Job],
    work: Stages | Callable[[Job], dict | None],
    *,
    overwrite: bool = False,
    method: str | None = None,
    io_workers: int = 2,
    prefetch: int = 4,
) -> Iterator[dict]:
    """Run the jobs and yield one result dict per job, in job order.

    ``work`` is either :class:`Stages` (decoding and writing then run in
    ``io_workers`` threads, overlapped with ``compute``; at most ``prefetch``
    decoded inputs and ``prefetch`` pending writes are held, so memory stays
    bounded on huge folders) or a plain ``work(job)`` run on the calling thread.

    First, temporary files that killed runs left in the output folders are removed
    (see :func:`mattecli.io.remove_stale_parts`). A job whose outputs all exist is
    skipped unless ``overwrite``. Two jobs that would write the same file, a job that
    would overwrite its own input, or an output path that is a folder, a device, a pipe or a
    socket are errors of that job (planners refuse any output that is an input or not a regular
    file up front, see
    :func:`check_inputs_kept`). Usage, weights and device errors are wrong for every file and propagate
    (the run stops). Any other exception is reported for that file (typed errors by
    their message; anything else as an internal error, re-raised when
    ``MATTECLI_DEBUG`` is set), and the run goes on.

    Interrupted (``KeyboardInterrupt``, or the exception a CLI's SIGTERM / SIGHUP handler raises,
    in the consuming thread), it stops at once: queued loads and writes are cancelled, a write in
    flight in an I/O thread completes or removes its temporary file there, and nothing waits for
    it (:func:`mattecli.io.abandon_writes` bounds that wait for a stopping process).

    Result keys: ``input``, ``output``, ``method``, ``seconds`` (load + compute +
    save time of that file), ``status`` (ok / skipped / error), ``error``, ``hint``
    and whatever ``save`` (or ``work``) returns.
    """
    if not isinstance(work, Stages):
        plain = work
        work = Stages(compute=lambda job, _: plain(job), save=lambda job, extra: extra)
    io_workers = max(1, io_workers)
    prefetch = max(1, prefetch)
    _remove_stale_parts(jobs)
    claimed: dict[Path, Path] = {}
    results: list[dict] = []
    todo: list[int] = []  # indices of jobs that need work
    for i, job in enumerate(jobs):
        result = {
            "input": str(job.item.path),
            "output": str(job.output),
            "method": method,
            "seconds": 0.0,
            "status": "ok",
            "error": None,
            "hint": None,
        }
        try:
            _claim(job, claimed)
            if not overwrite and is_done(job):
                result["status"] = "skipped"
            else:
                todo.append(i)
        except Exception as err:
            _report(result, job, err)
        results.append(result)

    def load(i: int):
        return _timed(work.load, jobs[i]) if work.load else (None, 0.0)

    def save(i: int, outputs):
        return _timed(work.save, jobs[i], outputs) if work.save else (None, 0.0)

    pool = ThreadPoolExecutor(io_workers, thread_name_prefix="mattecli-io")
    interrupted = False
    try:
        loads: dict[int, Future] = {}
        pending: deque[tuple[int, Future | None]] = deque()  # in job order
        next_load = 0
        emitted = 0

        def fill_loads() -> None:
            nonlocal next_load
            while next_load < len(todo) and len(loads) < prefetch:
                loads[todo[next_load]] = pool.submit(load, todo[next_load])
                next_load += 1

        def finish(i: int, future: Future | None) -> None:
            if future is None:
                return
            try:
                extra, seconds = future.result()
                results[i]["seconds"] += seconds
                if extra:
                    results[i].update(extra)
            except Exception as err:
                _report(results[i], jobs[i], err)

        def drain(limit: int) -> Iterator[dict]:
            nonlocal emitted
            while pending and (len(pending) > limit or pending[0][1] is None or pending[0][1].done()):
                i, future = pending.popleft()
                finish(i, future)
                results[i]["seconds"] = round(results[i]["seconds"], 4)
                # everything before i (skipped / failed early) is complete too
                while emitted <= i:
                    yield results[emitted]
                    emitted += 1

        try:
            fill_loads()
            for i in todo:
                result = results[i]
                save_future = None
                try:
                    inputs, seconds = loads.pop(i).result()
                    fill_loads()
                    result["seconds"] += seconds
                    outputs, seconds = _timed(work.compute, jobs[i], inputs)
                    result["seconds"] += seconds
                    save_future = pool.submit(save, i, outputs)
                except Exception as err:
                    fill_loads()
                    _report(result, jobs[i], err)
                pending.append((i, save_future))
                yield from drain(prefetch)
            yield from drain(0)
        finally:
            for future in loads.values():
                future.cancel()
    except BaseException as err:
        # Ctrl-C, a CLI's SIGTERM handler, the consumer closing the generator: stop without waiting
        # for queued work; a write in flight completes or removes its temporary file in its thread
        # (see mattecli.io.abandon_writes for one that never returns)
        interrupted = not isinstance(err, Exception)
        raise
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
    while emitted < len(results):
        yield results[emitted]
        emitted += 1


def _with_path(message: str, job: Job) -> str:
    """Prefix the input's path unless the message already names the file."""
    if str(job.item.path) in message or job.item.path.name in message:
        return message
    return f"{job.item.path}: {message}"
