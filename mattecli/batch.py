"""Run one operation over many images: output naming, skip/resume, per-file errors.

Every file command (``matte``, ``trimap``, ``composite``) does the same thing: turn
discovered inputs into jobs with output paths, skip jobs whose outputs exist,
run the rest one by one, and report each as ``ok``, ``skipped`` or ``error``
without letting one bad file stop the run. That logic lives here, with no
printing: :func:`run_jobs` yields one result dict per job and the CLI renders it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mattecli import constants
from mattecli.errors import BadOptionError, DeviceError, MatteCliError, OutputError, UsageError, WeightsError
from mattecli.io import InputItem, find_by_stem, is_image_path

__all__ = ["Job", "plan_jobs", "pair_file", "run_jobs", "check_writable"]


@dataclass(frozen=True)
class Job:
    """One input image and the files it produces (role -> path; the first role is the main output)."""

    item: InputItem
    outputs: dict[str, Path]

    @property
    def output(self) -> Path:
        return next(iter(self.outputs.values()))


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
        BadOptionError: ``out`` names a file but there are several inputs.
    """
    roles = roles or {}
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


def run_jobs(
    jobs: Sequence[Job],
    work: Callable[[Job], dict | None],
    *,
    overwrite: bool = False,
    method: str | None = None,
) -> Iterator[dict]:
    """Run ``work(job)`` for each job and yield one result dict per job, in order.

    A job whose outputs all exist is skipped unless ``overwrite``. Two jobs that
    would write the same file, or a job that would overwrite its own input, are
    errors. Usage, weights and device errors are wrong for every file and propagate
    (the run stops). Any other exception from ``work`` is caught and reported for that file
    (typed errors by their message; anything else as an internal error, re-raised
    when ``MATTECLI_DEBUG`` is set), so the run goes on.

    Result keys: ``input``, ``output``, ``method``, ``seconds``, ``status``
    (ok / skipped / error), ``error``, ``hint`` and whatever ``work`` returns.
    """
    claimed: dict[Path, Path] = {}
    for job in jobs:
        result = {
            "input": str(job.item.path),
            "output": str(job.output),
            "method": method,
            "seconds": 0.0,
            "status": "ok",
            "error": None,
            "hint": None,
        }
        start = time.perf_counter()
        try:
            for path in job.outputs.values():
                key = path.resolve()
                if key in claimed:
                    raise OutputError(
                        f"{job.item.path}: output {path} is also the output of {claimed[key]}",
                        hint="inputs with the same file stem would overwrite each other; rename one",
                    )
                if key == job.item.path.resolve():
                    raise OutputError(f"{job.item.path}: output would overwrite the input itself")
                claimed[key] = job.item.path
            if not overwrite and all(p.exists() for p in job.outputs.values()):
                result["status"] = "skipped"
            else:
                extra = work(job)
                if extra:
                    result.update(extra)
        except (UsageError, WeightsError, DeviceError):
            raise  # wrong for every file: stop the run (the CLI exits 2)
        except MatteCliError as err:
            result.update(status="error", error=_with_path(err.message, job), hint=err.hint)
        except MemoryError:
            result.update(status="error", error=f"{job.item.path}: out of memory", hint="try a smaller image")
        except Exception as err:  # a bug or an unexpected library failure: report, keep going
            if constants.MATTECLI_DEBUG:
                raise
            result.update(
                status="error",
                error=f"{job.item.path}: internal error: {type(err).__name__}: {err}",
                hint="set MATTECLI_DEBUG=1 for the traceback and please report it",
            )
        result["seconds"] = round(time.perf_counter() - start, 4)
        yield result


def _with_path(message: str, job: Job) -> str:
    """Prefix the input's path unless the message already names the file."""
    if str(job.item.path) in message or job.item.path.name in message:
        return message
    return f"{job.item.path}: {message}"
