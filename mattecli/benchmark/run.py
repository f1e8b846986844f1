"""Run (or resume) one benchmark: a method's quality, speed and memory on a dataset, as a report.

:func:`run_bench` runs a registered method (or scores a folder of existing predictions) over a
dataset (:mod:`mattecli.benchmark.datasets`) and returns a JSON-ready report
(:mod:`mattecli.benchmark.reports`): one row per image (:mod:`mattecli.benchmark.scoring`), means
overall and per group, speed, peak memory (CUDA ``max_memory_allocated`` when CUDA was used, the
process's peak RSS), the method's published numbers, tool version, weights sha256, device and
settings, and the dataset: images found against the published test-set size (``found``,
``expected``, ``complete``) and, for a default-folder dataset, where it came from (``source``).

Rows are appended to a JSONL cache as they are computed (:mod:`mattecli.benchmark.row_cache`),
keyed by a hash of everything that determines them (dataset, method, weights, device, metric
options, tool version, the metrics' revision, the memory budget); a rerun with the same settings
reuses them, so a killed benchmark resumes. Nothing here prints: progress goes to callbacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from mattecli import __version__
from mattecli.benchmark import machine
from mattecli.benchmark.datasets import load_dataset
from mattecli.benchmark.reports import build_report
from mattecli.benchmark.row_cache import RowWriter, read_rows
from mattecli.benchmark.samples import Dataset
from mattecli.benchmark.scoring import Scorer, open_scorer
from mattecli.benchmark.settings import BenchSettings, settings_key
from mattecli.errors import DatasetError, InputError, MatteCliError

__all__ = ["METRICS_REVISION", "run_bench", "default_folder"]

#: The revision of the metrics' arithmetic, part of the row cache's key: raised whenever a metric's
#: value changes, so that rows scored by another revision are computed again.
METRICS_REVISION = 2


def default_folder(
    settings: BenchSettings,
    *,
    progress: type | None = None,
    unpack_progress: Callable[[int, int], None] | None = None,
):
    """``(settings, status)``: ``settings`` with ``root`` set to the dataset's default folder and
    ``dataset_source`` to where it came from; a missing public test set is fetched there first.

    Args:
        settings: ``root`` None; ``options.download`` and ``allow_incomplete`` are honoured.
        progress: tqdm-compatible class for the download bars.
        unpack_progress: called with ``(rows, total)`` while unpacking.

    Returns:
        The new settings and the folder's :class:`~mattecli.benchmark.store.DatasetStatus`.

    Raises:
        DatasetError: not there and not fetched (the one line says how to get it), or incomplete
            without ``allow_incomplete``.
    """
    from mattecli.benchmark.download import resolve

    status = resolve(
        settings.dataset,
        download=settings.options.download,
        allow_incomplete=settings.allow_incomplete,
        progress=progress,
        unpack_progress=unpack_progress,
        options=settings.dataset_options,
    )
    return replace(settings, root=str(status.path), dataset_source=status.source_json()), status


def _expected_size(name: str) -> int | None:
    """The published number of test images of dataset ``name`` (None for ``folder`` or an unreadable manifest)."""
    from mattecli.benchmark.manifest import load_manifest
    from mattecli.errors import ManifestError

    try:
        entry = load_manifest().entries.get(name)
    except ManifestError:
        return None
    return None if entry is None else entry.size.images


def _identity(settings: BenchSettings, dataset: Dataset, scorer: Scorer) -> dict:
    """Everything that determines the per-image rows (hashed into the row cache's key)."""
    from_model = settings.predictions is None
    budget = scorer.budget
    identity = {
        "dataset": dataset.name,
        "root": str(Path(dataset.root).resolve()),
        "layout": dataset.layout,
        "metric_mode": dataset.metric_mode,
        "exact_trimap": dataset.exact_trimap,
        "method": settings.method,
        "variant": settings.options.variant,
        "predictions": None if from_model else str(Path(settings.predictions).resolve()),
        "weights_sha256": scorer.weights_sha256,
        "device": scorer.device,
        "precision": settings.options.precision if from_model else None,
        "method_options": settings.engine_fields,
        "grad_norm": settings.grad_norm,
        "quantize": settings.quantize,
        "clamp_known": scorer.clamp,
        "version": __version__,
        "metrics_revision": METRICS_REVISION,
        # the memory plan's budget: outputs depend on it only through tiling of large images
        "budget": None if budget is None else {k: budget[k] for k in ("bytes", "source")},
    }
    if settings.dataset_source and settings.dataset_source.get("revision"):
        identity["dataset_revision"] = settings.dataset_source["revision"]
    return identity


@dataclass
class _Outcome:
    """The rows of one run: scored or taken from the cache (``cached`` of them), failures, wall time."""

    rows: list[dict]
    failures: list[dict]
    cached: int
    wall_seconds: float


def _score_all(
    scorer: Scorer, cache: Path | None, key: str, progress: Callable[[dict, int, int], None] | None
) -> _Outcome:
    """Every sample of ``scorer.dataset``: its cached row, else scored (and appended to ``cache``)."""
    dataset, thumbnails = scorer.dataset, scorer.settings.thumbnails
    cached = read_rows(cache, key)
    out = _Outcome([], [], 0, 0.0)
    wall0 = time.perf_counter()
    with RowWriter(cache, key) as writer:
        for i, sample in enumerate(dataset, start=1):
            row = cached.get(sample.name)
            if row is not None and thumbnails and "thumbs" not in row:
                row = None  # thumbnails asked for: the cached row has none
            if row is not None:
                out.cached += 1
                out.rows.append(row)
            else:
                try:
                    row = scorer.score(sample)
                except (InputError, DatasetError) as err:
                    row = {"name": sample.name, "status": "error", "error": err.message, "hint": err.hint}
                    out.failures.append(row)
                except MatteCliError:
                    raise
                else:
                    out.rows.append(row)
                    writer.add(row)
            if progress is not None:
                progress(row, i, len(dataset))
    out.wall_seconds = time.perf_counter() - wall0
    return out


def _meta(settings: BenchSettings, scorer: Scorer, identity: dict, outcome: _Outcome, sizes: tuple) -> dict:
    """The report's metadata: tool, dataset (``sizes``: found, expected), method, settings, the run."""
    found, expected = sizes
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    run = {
        "created": created,
        "wall_seconds": outcome.wall_seconds,
        "images": len(scorer.dataset),
        "computed": len(outcome.rows) - outcome.cached,
        "cached": outcome.cached,
        "failed": len(outcome.failures),
        "memory": {"peak_rss_bytes": machine.peak_rss_bytes(), "cuda_peak_bytes": machine.cuda_peak_bytes()},
        "machine": machine.machine_info(),
    }
    described = scorer.dataset.describe()
    described["evaluated"] = len(outcome.rows)
    described["found"] = found
    described["expected"] = expected
    described["complete"] = None if expected is None else found == expected
    if settings.dataset_source:
        described["source"] = dict(settings.dataset_source)
    return {
        "tool": {"name": "mattecli", "version": __version__},
        "created": created,
        "dataset": described,
        "method": settings.method,
        "source": scorer.source,
        "predictions": identity["predictions"],
        "weights_sha256": scorer.weights_sha256,
        "device": scorer.device,
        "budget": scorer.budget,
        "settings": settings.recorded(scorer.clamp),
        "settings_key": settings_key(identity),
        "runs": [run],
        "cached_rows": outcome.cached,
    }


def run_bench(
    settings: BenchSettings,
    *,
    dataset: Dataset | None = None,
    cache: str | os.PathLike | None = None,
    progress: Callable[[dict, int, int], None] | None = None,
    download_progress: type | None = None,
) -> dict:
    """Run (or resume) one benchmark and return its report.

    Args:
        settings: what to run (:class:`~mattecli.benchmark.settings.BenchSettings`); a ``root`` of
            None is the dataset's default folder (:func:`default_folder`).
        dataset: an already loaded dataset (default: ``load_dataset`` from the settings).
        cache: JSONL file of per-image rows (:func:`mattecli.benchmark.row_cache.cache_path_for`);
            rows already there under the same settings key are reused, new rows are appended as
            they finish. None disables caching.
        progress: called after every image with ``(row, done, total)``; a failed image's row has
            ``status="error"`` and an ``error`` message.
        download_progress: a tqdm-compatible class drawing the downloads (weights, dataset).

    Returns:
        The report dict (:func:`mattecli.benchmark.reports.build_report`); JSON-serialisable.

    Raises:
        UsageError, DatasetError, WeightsError, DeviceError: before any image is processed.
        Per-image problems (unreadable files, size mismatches, missing predictions) become
        ``failures`` entries, and the run goes on.
    """
    settings.validate()
    if dataset is None:
        if settings.root is None:
            settings, _ = default_folder(settings, progress=download_progress)
        dataset = load_dataset(settings.dataset, settings.root, **settings.dataset_options)  # type: ignore[arg-type]
    sizes = (len(dataset), _expected_size(dataset.name))
    dataset = dataset.limited(settings.limit)
    if settings.shard is not None:
        from mattecli.io import in_shard

        dataset = replace(dataset, samples=[s for s in dataset.samples if in_shard(s.name, settings.shard)])
    scorer = open_scorer(settings, dataset, download_progress=download_progress)
    identity = _identity(settings, dataset, scorer)
    outcome = _score_all(scorer, None if cache is None else Path(cache), settings_key(identity), progress)
    meta = _meta(settings, scorer, identity, outcome, sizes)
    return build_report(meta, outcome.rows, outcome.failures)
