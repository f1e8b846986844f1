"""Bench reports: built from their rows, merged from shards, written and read as JSON.

A report (format :data:`REPORT_FORMAT`) is the run's metadata (``tool``, ``created``, ``dataset``,
``method``, ``source``, ``predictions``, ``weights_sha256``, ``device``, ``budget``, ``settings``,
``settings_key``, ``runs``, ``cached_rows``) plus everything derived from its rows, which
:func:`build_report` computes and nothing else stores:

* ``rows`` (sorted by name) and ``failures`` (an image another part scored is not a failure);
* ``summary`` and ``groups``: plain means of every metric (``{"count", "metrics", "counts"}``),
  over all rows and per group value (type, category, class);
* ``speed``: the rows' seconds and megapixels summed, images/s, model seconds per megapixel;
* ``memory``: the largest peak RSS and CUDA peak, in bytes, over the runs;
* ``published``: the method's published numbers on that dataset (from its spec);
* ``plan``: the memory budget, how many images ran with each strategy, how many fell back.

Because the aggregates are pure functions of the rows, :func:`merge_reports` of shards' reports
equals one full run's report. Metrics are in the evaluation codes' units (MSE raw, not x 1e3).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from mattecli.errors import UsageError

__all__ = [
    "REPORT_FORMAT",
    "META_KEYS",
    "published_for",
    "build_report",
    "merge_reports",
    "write_report",
    "load_report",
]

REPORT_FORMAT = "mattecli-bench/1"

#: The metadata a merged report takes from its first part.
META_KEYS = (
    "tool", "created", "dataset", "method", "source", "predictions", "weights_sha256", "device",
    "settings", "settings_key", "runs", "cached_rows",
)  # fmt: skip


def published_for(method: str | None, dataset: str, variant: str | None = None):
    """The numbers published for ``method`` (``variant``: its weights, default the method's default) on
    ``dataset``, as :class:`~mattecli.methods.base.Published` (from the method's spec; empty if none)."""
    from mattecli import methods

    return methods.published_for(method, dataset, variant)


# ----------------------------------------------------------------------------- aggregates
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


def _groups(meta: dict, ok: Sequence[dict]) -> dict[str, dict[str, dict]]:
    """Per group key (the dataset's, then any other a row carries), per value: the mean table."""
    group_keys = list(meta.get("dataset", {}).get("group_keys", []))
    for r in ok:
        for k in r.get("groups", {}):
            if k not in group_keys:
                group_keys.append(k)
    groups: dict[str, dict[str, dict]] = {}
    for key in group_keys:
        values = sorted({r["groups"][key] for r in ok if key in r.get("groups", {})})
        groups[key] = {v: _mean_table([r for r in ok if r.get("groups", {}).get(key) == v]) for v in values}
    return groups


def _memory(runs: Sequence[dict]) -> dict:
    cuda_peaks = [r["memory"]["cuda_peak_bytes"] for r in runs if r.get("memory", {}).get("cuda_peak_bytes")]
    rss_peaks = [r["memory"]["peak_rss_bytes"] for r in runs if r.get("memory", {}).get("peak_rss_bytes")]
    return {
        "peak_rss_bytes": max(rss_peaks) if rss_peaks else None,
        "cuda_peak_bytes": max(cuda_peaks) if cuda_peaks else None,
    }


def _plan(meta: dict, ok: Sequence[dict]) -> dict:
    strategies: dict[str, int] = {}
    for r in ok:
        if r.get("plan"):
            strategies[r["plan"].get("strategy") or "-"] = strategies.get(r["plan"].get("strategy") or "-", 0) + 1
    fallbacks = sum(1 for r in ok if (r.get("plan") or {}).get("fallback"))
    return {"budget": meta.get("budget"), "strategies": strategies, "fallbacks": fallbacks}


def build_report(meta: dict, rows: Iterable[dict], failures: Iterable[dict] = ()) -> dict:
    """A report from its metadata and per-image rows: sorts the rows and computes every aggregate.

    ``meta`` holds the identity of the run (``dataset``, ``method``, ``settings``, ``settings_key``,
    ``runs``, ...); everything derived (``summary``, ``groups``, ``speed``, ``memory``,
    ``published``, ``plan``) is recomputed here, which is what makes :func:`merge_reports` exact.
    Rows whose ``status`` is not ``ok`` are dropped; a failure whose image has a row is dropped.
    """
    ok = sorted((r for r in rows if r.get("status", "ok") == "ok"), key=lambda r: r["name"])
    done = {r["name"] for r in ok}
    bad = sorted((f for f in failures if f["name"] not in done), key=lambda f: f["name"])
    dataset_name = meta.get("dataset", {}).get("name", "")
    variant = (meta.get("settings") or {}).get("variant")
    report = dict(meta)
    report.update(
        {
            "format": REPORT_FORMAT,
            "rows": ok,
            "failures": bad,
            "summary": _mean_table(ok),
            "groups": _groups(meta, ok),
            "speed": _speed(ok),
            "memory": _memory(list(meta.get("runs", []))),
            "published": [p.to_json() for p in published_for(meta.get("method"), dataset_name, variant)],
            "plan": _plan(meta, ok),
        }
    )
    return report


def merge_reports(reports: Sequence[dict]) -> dict:
    """Combine partial reports of one benchmark (e.g. shards) into one report.

    The reports must share ``settings_key`` (same dataset, method, weights and metric settings).
    Rows are united by sample name (the first report wins on a duplicate); a failure is dropped if
    another report scored that image; every aggregate is recomputed from the rows, so the result
    equals a single full run's. ``runs`` lists every merged run (wall time, memory, machine).

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
    meta = {k: first[k] for k in META_KEYS if k in first}
    meta["dataset"] = dict(first.get("dataset", {}))
    meta["dataset"]["evaluated"] = len(rows)
    meta["runs"] = runs
    meta["cached_rows"] = sum(int(r.get("cached_rows", 0)) for r in reports)
    return build_report(meta, rows.values(), failures.values())


# ----------------------------------------------------------------------------- files
def write_report(report: dict, path: str | os.PathLike) -> None:
    """Write a report as indented UTF-8 JSON, atomically (NaN and infinities are refused: metrics are finite).

    Raises:
        OutputError: ``path`` cannot be written.
    """
    from mattecli import io

    text = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    io.atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def load_report(path: str | os.PathLike) -> dict:
    """Read a report written by :func:`write_report`.

    Raises:
        UsageError: unreadable, not JSON, or not a mattecli bench report (:data:`REPORT_FORMAT`).
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a readable JSON report ({err})") from err
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise UsageError(f"{path}: not a mattecli bench report ({REPORT_FORMAT})")
    return data
