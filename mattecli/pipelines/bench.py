"""Quality, speed and memory benchmark of a matting method on a dataset (library; no printing).

:func:`run_bench` runs a registered method (or scores a folder of existing
predictions) over a :mod:`mattecli.datasets` dataset and returns a JSON-ready
report:

* one row per image: metrics (:func:`mattecli.metrics.evaluate`, in the dataset's
  metric mode), size in megapixels, model / I/O / metric seconds;
* means overall and per group (category, type, class), computed from the rows;
* speed (images/s, seconds per megapixel, model vs I/O time) and peak memory
  (CUDA ``max_memory_allocated`` when CUDA was used, CPU peak RSS of the process);
* the published numbers of the method on that dataset (declared in the method's spec);
* tool version, method, weights sha256, device and settings;
* the dataset: images found against the published test-set size (``found``, ``expected``,
  ``complete``) and, for a default-folder dataset, where it came from (``source``: Hub
  repository, commit, licence).

Rows are appended to a JSONL cache as they are computed, keyed by a hash of the
settings that affect them (dataset, method, weights, device, metric options, tool
version); a rerun with the same settings reuses them, so a killed benchmark
resumes. Aggregates are pure functions of the rows, so :func:`merge_reports` of
partial reports (e.g. shards) gives the same numbers as one full run.

Scoring conventions: a trimap-based method's alpha is clamped to 0/1 in the known
trimap regions before scoring (``clamp_known``), and the prediction is quantised
to 8 bit (``quantize=8``) as the official evaluation scores the saved PNGs; both
are settings.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from mattecli import __version__, metrics
from mattecli.datasets import Dataset, Sample, exact_uint, load_dataset
from mattecli.errors import DatasetError, InputError, MatteCliError, UsageError
from mattecli.trimap import clamp_known

__all__ = [
    "REPORT_FORMAT",
    "BenchSettings",
    "published_for",
    "run_bench",
    "build_report",
    "merge_reports",
    "load_report",
    "write_report",
    "cache_path_for",
    "settings_key",
    "PredictionIndex",
    "peak_rss_bytes",
]

REPORT_FORMAT = "mattecli-bench/1"


def published_for(method: str | None, dataset: str, variant: str | None = None):
    """The numbers published for ``method`` (``variant``: its weights, default the method's default) on
    ``dataset`` (from the method's spec; empty if none)."""
    from mattecli import methods

    return methods.published_for(method, dataset, variant)


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BenchSettings:
    """Everything that defines a benchmark run.

    Attributes:
        dataset: dataset name (:data:`mattecli.datasets.DATASETS`).
        root: dataset folder.
        method: registered method name; with ``predictions`` it only labels the report.
        predictions: score the mattes in this folder (matched by name/stem) instead of
            running a method.
        device: passed to the method (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
        precision: passed to the method (``fp32``, ``fp16``, ``bf16``).
        weights: a weights file overriding the manifest (deep methods).
        variant: the weights variant of methods that have several (e.g. ``sim-simd``).
        shard: ``(K, N)``: score only the samples of shard K of N (by sample name); the
            partial reports combine with :func:`merge_reports` into the full one.
        limit: first N samples only.
        grad_norm: ``minmax`` (MATLAB mat2gray) or ``255``.
        quantize: 8 or 16 to score the prediction rounded to that bit depth (what a
            saved PNG holds; 8 is what the official evaluation sees), None for the raw float.
        clamp_known: force 0/1 in known trimap regions before scoring; None means
            "yes for trimap-based methods, no for a predictions folder".
        save_predictions: folder to write the scored predictions to (PNG, ``<name>.png``).
        dataset_options: extra :func:`mattecli.datasets.load_dataset` arguments
            (``layout``, ``bg_dir``, ``image_dir``, ``alpha_dir``, ``trimap_dir``).
        method_options: the engine options of the method (the fields of
            :class:`~mattecli.methods.base.EngineOptions` that are set: ``strategy``, ``tile_size``...).
        dataset_source: where the dataset came from (default folder, Hub repository and
            commit, licence; see :meth:`mattecli.dataset_store.DatasetStatus.source_json`),
            recorded in the report; the Hub commit also keys the row cache.
        thumbnails: keep per-sample thumbnails of this longer side (image, GT, prediction, error
            map; :func:`mattecli.thumbnails.sample_thumbnails`) in each row's ``thumbs`` as data URIs,
            for ``bench --html`` (and merges of such reports); None: none. Not part of the row
            cache's key: a cached row without thumbnails is computed again when they are asked for.
    """

    dataset: str
    root: str
    method: str | None = None
    predictions: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    weights: str | None = None
    variant: str | None = None
    shard: tuple[int, int] | None = None
    limit: int | None = None
    grad_norm: str = "minmax"
    quantize: int | None = 8
    clamp_known: bool | None = None
    save_predictions: str | None = None
    dataset_options: dict = field(default_factory=dict)
    method_options: dict = field(default_factory=dict)
    dataset_source: dict | None = None
    thumbnails: int | None = None

    def validate(self) -> None:
        if self.method is None and self.predictions is None:
            raise UsageError("bench needs a method to run or a predictions folder to score")
        if self.grad_norm not in metrics.GRAD_NORMS:
            raise UsageError(f"grad normalisation must be one of {', '.join(metrics.GRAD_NORMS)}")
        if self.quantize not in (None, 8, 16):
            raise UsageError(f"quantize must be 8, 16 or None, not {self.quantize}")
        if self.limit is not None and self.limit < 0:
            raise UsageError(f"limit must be >= 0, not {self.limit}")
        if self.predictions is not None and self.save_predictions is not None:
            raise UsageError("save_predictions makes no sense when scoring existing predictions")


def settings_key(identity: dict) -> str:
    """A short stable hash of the settings that determine the per-image rows."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cache_path_for(report_path: str | os.PathLike) -> Path:
    """The per-image JSONL cache that lives next to a report: ``out.json`` -> ``out.rows.jsonl``."""
    p = Path(report_path)
    return p.with_name(p.stem + ".rows.jsonl")


# ----------------------------------------------------------------------------- predictions folder
class PredictionIndex:
    """The image files under a predictions folder (recursive), for matching by sample name.

    A sample ``name`` (``stem`` or ``class/stem``) matches, in order: the file at that
    relative path (any image extension); a file whose stem is the name with ``/``
    replaced by ``_`` (SIM saves ``<class>_<name>``); a file anywhere whose stem is the
    name's last part, if exactly one has it.
    """

    def __init__(self, folder: str | os.PathLike):
        from mattecli import constants

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UsageError(f"predictions folder {self.folder} does not exist")
        self.by_rel: dict[str, Path] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for p in sorted(self.folder.rglob("*")):
            if p.is_file() and p.suffix.lower() in constants.IMAGE_EXTENSIONS and not p.name.startswith("."):
                rel = p.relative_to(self.folder).with_suffix("").as_posix()
                self.by_rel.setdefault(rel, p)
                self.by_stem.setdefault(p.stem, []).append(p)
        if not self.by_rel:
            raise UsageError(f"no image files in the predictions folder {self.folder}")

    def find(self, name: str) -> Path:
        """The prediction for sample ``name``.

        Raises:
            InputError: none, or several equally good candidates.
        """
        if name in self.by_rel:
            return self.by_rel[name]
        flat = name.replace("/", "_")
        if flat in self.by_rel:
            return self.by_rel[flat]
        stem = name.rsplit("/", 1)[-1]
        hits = self.by_stem.get(stem, [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InputError(
                f"{name}: several predictions named {stem}.* in {self.folder}: "
                + ", ".join(str(h.relative_to(self.folder)) for h in hits[:4])
            )
        raise InputError(f"{name}: no prediction named {name}.* in {self.folder}")


# ----------------------------------------------------------------------------- memory / machine
def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process so far (``getrusage``), in bytes; None if unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _cuda_in_use() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_initialized())
    except Exception:  # a broken CUDA install must not break the report
        return False


def _machine() -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = getattr(torch, "__version__", None)
        if _cuda_in_use():
            try:
                info["cuda_device"] = torch.cuda.get_device_name()
            except Exception:
                pass
    return info


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- cache
def _read_cache(path: Path | None, key: str) -> dict[str, dict]:
    """Rows cached under ``key`` in a JSONL file, by sample name; unreadable lines are ignored."""
    if path is None or not path.is_file():
        return {}
    rows: dict[str, dict] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:  # a line cut short when a run was killed
                continue
            if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("row"), dict):
                row = entry["row"]
                if row.get("status") == "ok" and "name" in row:
                    rows[row["name"]] = row
    return rows


class _CacheWriter:
    def __init__(self, path: Path | None, key: str):
        self.path = path
        self.key = key
        self._fh = None

    def __enter__(self) -> _CacheWriter:
        if self.path is not None:
            from mattecli.errors import OutputError

            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                needs_newline = (
                    self.path.is_file() and self.path.stat().st_size > 0 and (self.path.read_bytes()[-1:] != b"\n")
                )
                self._fh = open(self.path, "a", encoding="utf-8")
            except OSError as err:
                raise OutputError(f"{self.path}: cannot write the bench cache ({err.strerror or err})") from err
            if needs_newline:  # the previous run died mid-line
                self._fh.write("\n")
        return self

    def add(self, row: dict) -> None:
        if self._fh is not None:
            self._fh.write(json.dumps({"key": self.key, "row": row}, ensure_ascii=False) + "\n")
            self._fh.flush()

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()


# ----------------------------------------------------------------------------- aggregation
def _mean_table(rows: Sequence[dict]) -> dict:
    """``{"count", "metrics": {name: mean}, "counts": {name: n}}`` over rows (plain means)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for row in rows:
        for name, value in row["metrics"].items():
            if name in ("unknown_px", "pixels") or value is None:
                continue
            sums[name] = sums.get(name, 0.0) + float(value)
            counts[name] = counts.get(name, 0) + 1
    return {
        "count": len(rows),
        "metrics": {k: sums[k] / counts[k] for k in sums},
        "counts": counts,
    }


def _speed(rows: Sequence[dict]) -> dict:
    n = len(rows)
    model = sum(r["model_seconds"] for r in rows)
    io_s = sum(r["io_seconds"] for r in rows)
    metric_s = sum(r["metric_seconds"] for r in rows)
    total = sum(r["total_seconds"] for r in rows)
    mp = sum(r["megapixels"] for r in rows)
    return {
        "images": n,
        "megapixels": mp,
        "model_seconds": model,
        "io_seconds": io_s,
        "metric_seconds": metric_s,
        "total_seconds": total,
        "images_per_second": n / total if total > 0 else None,
        "model_images_per_second": n / model if model > 0 else None,
        "seconds_per_megapixel": model / mp if model > 0 and mp > 0 else None,
        "seconds_per_image": total / n if n else None,
    }


def build_report(meta: dict, rows: Iterable[dict], failures: Iterable[dict] = ()) -> dict:
    """A report from its metadata and per-image rows: sorts the rows and computes every aggregate.

    ``meta`` holds the identity of the run (``dataset``, ``method``, ``settings``,
    ``settings_key``, ``runs``, ...); everything derived (``summary``, ``groups``,
    ``speed``, ``memory``, ``published``) is recomputed here, which is what makes
    :func:`merge_reports` exact.
    """
    ok = sorted((r for r in rows if r.get("status", "ok") == "ok"), key=lambda r: r["name"])
    done = {r["name"] for r in ok}
    bad = sorted((f for f in failures if f["name"] not in done), key=lambda f: f["name"])
    group_keys = list(meta.get("dataset", {}).get("group_keys", []))
    for r in ok:
        for k in r.get("groups", {}):
            if k not in group_keys:
                group_keys.append(k)
    groups: dict[str, dict[str, dict]] = {}
    for key in group_keys:
        values = sorted({r["groups"][key] for r in ok if key in r.get("groups", {})})
        groups[key] = {v: _mean_table([r for r in ok if r.get("groups", {}).get(key) == v]) for v in values}
    runs = list(meta.get("runs", []))
    strategies: dict[str, int] = {}
    for r in ok:
        if r.get("plan"):
            strategies[r["plan"].get("strategy") or "-"] = strategies.get(r["plan"].get("strategy") or "-", 0) + 1
    fallbacks = sum(1 for r in ok if (r.get("plan") or {}).get("fallback"))
    cuda_peaks = [r["memory"]["cuda_peak_bytes"] for r in runs if r.get("memory", {}).get("cuda_peak_bytes")]
    rss_peaks = [r["memory"]["peak_rss_bytes"] for r in runs if r.get("memory", {}).get("peak_rss_bytes")]
    dataset_name = meta.get("dataset", {}).get("name", "")
    report = dict(meta)
    report.update(
        {
            "format": REPORT_FORMAT,
            "rows": ok,
            "failures": bad,
            "summary": _mean_table(ok),
            "groups": groups,
            "speed": _speed(ok),
            "memory": {
                "peak_rss_bytes": max(rss_peaks) if rss_peaks else None,
                "cuda_peak_bytes": max(cuda_peaks) if cuda_peaks else None,
            },
            "published": [
                p.to_json()
                for p in published_for(meta.get("method"), dataset_name, (meta.get("settings") or {}).get("variant"))
            ],
            "plan": {"budget": meta.get("budget"), "strategies": strategies, "fallbacks": fallbacks},
        }
    )
    return report


def merge_reports(reports: Sequence[dict]) -> dict:
    """Combine partial reports of one benchmark (e.g. shards) into one report.

    The reports must share ``settings_key`` (same dataset, method, weights and
    metric settings). Rows are united by sample name (the first report wins on a
    duplicate); a failure is dropped if another report scored that image; every
    aggregate is recomputed from the rows, so the result equals a single full run's.
    ``runs`` lists every merged run (wall time, memory, machine).

    Raises:
        UsageError: no reports, or reports of different settings.
    """
    if not reports:
        raise UsageError("nothing to merge")
    keys = {r.get("settings_key") for r in reports}
    if len(keys) != 1:
        raise UsageError(
            "cannot merge reports of different benchmarks (settings keys " + ", ".join(sorted(map(str, keys))) + ")",
            hint="merge only shards of one dataset, method and settings",
        )
    rows: dict[str, dict] = {}
    failures: dict[str, dict] = {}
    runs: list[dict] = []
    for rep in reports:
        for row in rep.get("rows", []):
            rows.setdefault(row["name"], row)
        for fail in rep.get("failures", []):
            failures.setdefault(fail["name"], fail)
        runs.extend(rep.get("runs", []))
    first = reports[0]
    meta = {k: first[k] for k in _META_KEYS if k in first}
    meta["dataset"] = dict(first.get("dataset", {}))
    meta["dataset"]["evaluated"] = len(rows)
    meta["runs"] = runs
    meta["cached_rows"] = sum(int(r.get("cached_rows", 0)) for r in reports)
    return build_report(meta, rows.values(), failures.values())


_META_KEYS = (
    "tool", "created", "dataset", "method", "source", "predictions", "weights_sha256", "device",
    "settings", "settings_key", "runs", "cached_rows",
)  # fmt: skip


def write_report(report: dict, path: str | os.PathLike) -> None:
    """Write a report as indented JSON (atomically). NaN/inf never appear (metrics are finite)."""
    from mattecli import io

    text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    io.atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def load_report(path: str | os.PathLike) -> dict:
    """Read a report written by :func:`write_report`.

    Raises:
        UsageError: not a mattecli bench report.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a readable JSON report ({err})") from err
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise UsageError(f"{path}: not a mattecli bench report ({REPORT_FORMAT})")
    return data


# ----------------------------------------------------------------------------- running
def _expected_size(name: str) -> int | None:
    """The published number of test images of dataset ``name`` (None for ``folder`` or an unreadable manifest)."""
    from mattecli.dataset_manifest import load_manifest
    from mattecli.errors import ManifestError

    try:
        entry = load_manifest().entries.get(name)
    except ManifestError:
        return None
    return None if entry is None else entry.size.images


def _score_one(
    sample: Sample,
    dataset: Dataset,
    settings: BenchSettings,
    *,
    matter: object | None,
    needs_trimap: bool,
    clamp: bool,
    index: PredictionIndex | None,
) -> dict:
    from mattecli import io

    t_start = time.perf_counter()
    plan = None
    io_seconds = 0.0
    model_seconds = 0.0
    t0 = time.perf_counter()
    gt = sample.load_alpha()
    trimaps = sample.load_trimap(exact=dataset.exact_trimap)
    if trimaps is not None and trimaps[0].shape != gt.shape:
        raise InputError(
            f"{sample.name}: trimap is {trimaps[0].shape[1]}x{trimaps[0].shape[0]} but the alpha is "
            f"{gt.shape[1]}x{gt.shape[0]}"
        )
    if dataset.metric_mode == "unknown" and trimaps is None:
        raise InputError(f"{sample.name}: no trimap, but {dataset.title} is scored over the unknown region")
    if index is not None:
        pred = exact_uint(io.read_gray(index.find(sample.name)))
        io_seconds += time.perf_counter() - t0
    else:
        image = sample.load_image()
        io_seconds += time.perf_counter() - t0
        if image.shape[:2] != gt.shape:
            raise InputError(
                f"{sample.name}: image is {image.shape[1]}x{image.shape[0]} but the alpha is "
                f"{gt.shape[1]}x{gt.shape[0]}"
            )
        t0 = time.perf_counter()
        model_trimap = trimaps[1] if (needs_trimap and trimaps is not None) else None
        result = matter.predict(image, model_trimap)  # type: ignore[union-attr]
        pred, plan = result.alpha, dict(result.plan)
        model_seconds = time.perf_counter() - t0
        pred = np.asarray(pred)
        if np.issubdtype(pred.dtype, np.floating):
            if np.isnan(pred).any():
                raise InputError(f"{sample.name}: the method returned NaN alpha values")
            pred = np.clip(pred, 0.0, 1.0)  # the Matter contract is [0, 1]; trim float overshoot
    pred = np.asarray(pred)
    if pred.ndim == 3:
        pred = pred[:, :, 0]
    if pred.shape != gt.shape:
        raise InputError(
            f"{sample.name}: prediction is {pred.shape[1]}x{pred.shape[0]} but the alpha is {gt.shape[1]}x{gt.shape[0]}"
        )
    if clamp and trimaps is not None:
        pred = clamp_known(np.array(metrics.to_alpha(pred, name="prediction"), np.float32), trimaps[1])
    if settings.quantize is not None and np.issubdtype(pred.dtype, np.floating):
        pred = io.to_uint(pred, settings.quantize)
    if settings.save_predictions is not None:
        t0 = time.perf_counter()
        target = Path(settings.save_predictions) / f"{sample.name}.png"
        if np.issubdtype(pred.dtype, np.floating):
            io.write_alpha(target, pred, bit_depth=16)
        else:
            io.atomic_write_bytes(target, io.encode_png(pred))
        io_seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    values = metrics.evaluate(
        pred,
        gt,
        None if trimaps is None else trimaps[0],
        mode=dataset.metric_mode,
        grad_norm=settings.grad_norm,
    )
    metric_seconds = time.perf_counter() - t0
    h, w = gt.shape
    row = {
        "name": sample.name,
        "status": "ok",
        "groups": dict(sample.groups),
        "metrics": values,
        "height": h,
        "width": w,
        "megapixels": h * w / 1e6,
        "model_seconds": model_seconds,
        "io_seconds": io_seconds,
        "metric_seconds": metric_seconds,
        "total_seconds": time.perf_counter() - t_start,
    }
    if plan is not None:  # what ran on this image: strategy, tiles, reduced passes, fallbacks
        row["plan"] = {k: plan.get(k) for k in ("strategy", "tile", "tiles", "passes", "fallback")}
    if settings.thumbnails:  # for bench --html; not timed
        from mattecli.thumbnails import sample_thumbnails

        region = None if dataset.metric_mode != "unknown" or trimaps is None else trimaps[0] == 128
        shown = image if index is None else sample.load_image()
        row["thumbs"] = sample_thumbnails(shown, gt, pred, region, side=settings.thumbnails)
    return row


def run_bench(
    settings: BenchSettings,
    *,
    dataset: Dataset | None = None,
    cache: str | os.PathLike | None = None,
    progress: Callable[[dict, int, int], None] | None = None,
    download: bool = True,
    download_progress: type | None = None,
) -> dict:
    """Run (or resume) one benchmark and return its report.

    Args:
        settings: what to run (see :class:`BenchSettings`).
        dataset: an already loaded dataset (default: ``load_dataset`` from the settings).
        cache: JSONL file of per-image rows (see :func:`cache_path_for`); rows already
            there under the same settings key are reused, new rows are appended as
            they finish. None disables caching.
        progress: called after every image with ``(row, done, total)``; a failed
            image's row has ``status="error"`` and an ``error`` message.
        download: fetch the method's missing weights before the first image (``False``:
            ``--no-download``; offline settings are honoured either way).
        download_progress: a tqdm-compatible class drawing that download.

    Returns:
        The report dict (see :func:`build_report`); JSON-serialisable.

    Raises:
        UsageError, DatasetError, WeightsError, DeviceError: before any image is
        processed. Per-image problems (unreadable files, size mismatches, missing
        predictions) become ``failures`` entries, and the run goes on.
    """
    settings.validate()
    if dataset is None:
        dataset = load_dataset(settings.dataset, settings.root, **settings.dataset_options)
    found = len(dataset)
    expected = _expected_size(dataset.name)
    dataset = dataset.limited(settings.limit)
    if settings.shard is not None:
        from dataclasses import replace as _replace

        from mattecli.io import in_shard

        dataset = _replace(dataset, samples=[s for s in dataset.samples if in_shard(s.name, settings.shard)])

    index = None
    matter = None
    needs_trimap = False
    weights_sha = None
    device = None
    budget = None
    if settings.predictions is not None:
        index = PredictionIndex(settings.predictions)
        source = "predictions"
        clamp = bool(settings.clamp_known)
    else:
        from mattecli import methods
        from mattecli.methods.base import EngineOptions, MethodOptions

        spec = methods.get(settings.method)  # type: ignore[arg-type]
        needs_trimap = spec.needs_trimap
        if needs_trimap and any(s.trimap is None for s in dataset):
            raise DatasetError(
                f"method {spec.name} needs trimaps but {dataset.title} under {dataset.root} has none",
                hint="use a trimap-free method, or give the dataset a trimap folder",
            )
        if settings.device.startswith("cuda") and "torch" in sys.modules and _cuda_in_use():
            sys.modules["torch"].cuda.reset_peak_memory_stats()
        resolved = spec.resolve(
            MethodOptions(
                variant=settings.variant,
                weights=None if settings.weights is None else Path(settings.weights),
                device=settings.device,
                precision=settings.precision,
                download=download,
                engine=EngineOptions(**settings.method_options),
            )
        )
        from mattecli.weights import prefetch

        prefetch(resolved.weights_to_fetch(), download=download, progress=download_progress)
        matter = spec.create(resolved)
        weights_sha = matter.provenance.weights_sha256
        device = matter.provenance.device
        budget = resolved.budget.to_json() if resolved.budget is not None else None
        source = "model"
        clamp = needs_trimap if settings.clamp_known is None else settings.clamp_known

    identity = {
        "dataset": dataset.name,
        "root": str(Path(dataset.root).resolve()),
        "layout": dataset.layout,
        "metric_mode": dataset.metric_mode,
        "exact_trimap": dataset.exact_trimap,
        "method": settings.method,
        "variant": settings.variant,
        "predictions": None if settings.predictions is None else str(Path(settings.predictions).resolve()),
        "weights_sha256": weights_sha,
        "device": device,
        "precision": None if settings.predictions is not None else settings.precision,
        "method_options": settings.method_options,
        "grad_norm": settings.grad_norm,
        "quantize": settings.quantize,
        "clamp_known": clamp,
        "version": __version__,
        # rows scored by an earlier metrics revision are not reused (2: AIM-500 / AM-2k as the AIM
        # authors' evaluate.py computes them, to the float)
        "metrics_revision": 2,
        # the memory plan's budget: outputs depend on it only through tiling of large images
        "budget": None if budget is None else {k: budget[k] for k in ("bytes", "source")},
    }
    if settings.dataset_source and settings.dataset_source.get("revision"):
        identity["dataset_revision"] = settings.dataset_source["revision"]
    key = settings_key(identity)
    cache_path = None if cache is None else Path(cache)
    cached = _read_cache(cache_path, key)

    rows: list[dict] = []
    failures: list[dict] = []
    reused = 0
    wall0 = time.perf_counter()
    with _CacheWriter(cache_path, key) as writer:
        for i, sample in enumerate(dataset, start=1):
            row = cached.get(sample.name)
            if row is not None and settings.thumbnails and "thumbs" not in row:
                row = None  # thumbnails asked for: the cached row has none
            if row is not None:
                reused += 1
                rows.append(row)
            else:
                try:
                    row = _score_one(
                        sample, dataset, settings, matter=matter, needs_trimap=needs_trimap, clamp=clamp,
                        index=index,
                    )  # fmt: skip
                except (InputError, DatasetError) as err:
                    row = {"name": sample.name, "status": "error", "error": err.message, "hint": err.hint}
                    failures.append(row)
                except MatteCliError:
                    raise
                else:
                    rows.append(row)
                    writer.add(row)
            if progress is not None:
                progress(row, i, len(dataset))
    wall = time.perf_counter() - wall0

    cuda_peak = None
    if _cuda_in_use():
        try:
            cuda_peak = int(sys.modules["torch"].cuda.max_memory_allocated())
        except Exception:
            cuda_peak = None
    run = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": wall,
        "images": len(dataset),
        "computed": len(rows) - reused,
        "cached": reused,
        "failed": len(failures),
        "memory": {"peak_rss_bytes": peak_rss_bytes(), "cuda_peak_bytes": cuda_peak},
        "machine": _machine(),
    }
    described = dataset.describe()
    described["evaluated"] = len(rows)
    described["found"] = found
    described["expected"] = expected
    described["complete"] = None if expected is None else found == expected
    if settings.dataset_source:
        described["source"] = dict(settings.dataset_source)
    meta = {
        "tool": {"name": "mattecli", "version": __version__},
        "created": run["created"],
        "dataset": described,
        "method": settings.method,
        "source": source,
        "predictions": identity["predictions"],
        "weights_sha256": weights_sha,
        "device": device,
        "budget": budget,
        "settings": {
            "grad_norm": settings.grad_norm,
            "quantize": settings.quantize,
            "clamp_known": clamp,
            "limit": settings.limit,
            "shard": None if settings.shard is None else f"{settings.shard[0]}/{settings.shard[1]}",
            "requested_device": settings.device,
            "precision": settings.precision,
            "weights": settings.weights,
            "variant": settings.variant,
            "save_predictions": settings.save_predictions,
            "dataset_options": {k: str(v) for k, v in settings.dataset_options.items()},
            "method_options": settings.method_options,
            "thumbnails": settings.thumbnails,
        },
        "settings_key": key,
        "runs": [run],
        "cached_rows": reused,
    }
    return build_report(meta, rows, failures)
