"""``bench --html``: one self-contained HTML page of a bench report.

The page holds what the CLI prints (the metrics table with the published numbers beside ours, the
per-group tables, speed and peak memory, notes and failures) and then one row per sample: its
image / ground truth / prediction / error-map thumbnails (data URIs the report's rows carry, see
:mod:`mattecli.thumbnails`) and its metrics. Numbers are formatted as the CLI's table formats them
(:data:`COLUMNS`: MSE and MAD x 1e3, two decimals). Every table sorts by any column on a click (a few
lines of plain JavaScript, inline); the sample table's initial order may come from the URL fragment:
``report.html#sort=sad`` (ascending) or ``#sort=-sad`` (descending), any column key (``name``,
``sad``, ``mse``, ..., ``megapixels``, ``model_seconds``).

The markup, style sheet and script are the Jinja2 template :data:`TEMPLATE` in this package's
``templates/`` folder, rendered with autoescape on, so every value from the report is HTML-escaped.
This module builds its view model: plain strings and numbers, formatted here. Nothing is fetched: no
external script, style sheet, font or image; a thumbnail is shown only when it is a ``data:image/``
URI (anything else shows ``-``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

__all__ = ["COLUMNS", "TEMPLATE", "columns", "fmt", "format_bytes", "plan_line", "render_html", "write_html"]

#: The page's Jinja2 template: ``templates/report.html.j2`` beside this module (package data).
TEMPLATE = "report.html.j2"
TEMPLATE_DIR = Path(__file__).resolve().with_name("templates")

#: metric key -> (label, display scale, format): the CLI table's (``mattecli.cli.bench``)
COLUMNS = {
    "sad": ("SAD", 1.0, "{:.2f}"),
    "mse": ("MSE×1e3", 1e3, "{:.2f}"),
    "mad": ("MAD×1e3", 1e3, "{:.2f}"),
    "grad": ("Grad", 1.0, "{:.2f}"),
    "conn": ("Conn", 1.0, "{:.2f}"),
    "sad_trans": ("SAD trans", 1.0, "{:.2f}"),
    "sad_fg": ("SAD fg", 1.0, "{:.2f}"),
    "sad_bg": ("SAD bg", 1.0, "{:.2f}"),
}
_THUMBS = (("image", "image"), ("gt", "ground truth"), ("prediction", "prediction"), ("error", "error"))


def columns(report: dict) -> list[str]:
    """The metric keys the CLI's table shows for ``report``, in order.

    ``"whole"`` (AIM convention) datasets: sad, mse, mad, grad, conn, then sad_trans, sad_fg and
    sad_bg when the summary has them; ``"unknown"`` (DIM) datasets: sad, mse, grad, conn.
    """
    mode = report["dataset"]["metric_mode"]
    base = ["sad", "mse", "mad", "grad", "conn", "sad_trans", "sad_fg", "sad_bg"] if mode == "whole" else [
        "sad", "mse", "grad", "conn",
    ]  # fmt: skip
    present = report["summary"]["metrics"]
    return [c for c in base if c in present or c in ("sad", "mse", "grad", "conn")]


def fmt(key: str, value: float | None) -> str:
    """A metric as the CLI prints it: ``value`` (official units) times the :data:`COLUMNS` scale,
    two decimals (``-`` when None). Raises KeyError for a key not in :data:`COLUMNS`."""
    if value is None:
        return "-"
    _, scale, form = COLUMNS[key]
    return form.format(value * scale)


def format_bytes(n: int | None) -> str:
    """A byte count as the CLI prints it, in binary units (``512 B``, ``1.5 GiB``; ``-`` when 0 or None)."""
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def _num(value, text: str | None = None) -> dict:
    """A numeric cell: ``v`` (``repr`` of the float, the sort key; empty when missing) and its text."""
    v = "" if value is None else repr(float(value))
    return {"v": v, "text": text if text is not None else v}


def _head(label: str, key: str, kind: str = "num") -> dict:
    """A sortable header cell: its label, ``data-key`` and ``data-type`` (``num`` or ``text``)."""
    return {"label": label, "key": key, "type": kind}


def _metrics_table(report: dict, cols: list[str]) -> dict:
    summary = report["summary"]
    head = [_head("", "source", "text"), _head("n", "count")] + [_head(COLUMNS[c][0], c) for c in cols]
    ours = [_num(summary["count"], str(summary["count"]))]
    ours += [_num(summary["metrics"].get(c), fmt(c, summary["metrics"].get(c))) for c in cols]
    published = [
        {
            "label": pub["label"],
            "tip": pub.get("source", "") + (f" ({pub['note']})" if pub.get("note") else ""),
            "cells": [_num(pub["metrics"].get(c), fmt(c, pub["metrics"].get(c))) for c in cols],
        }
        for pub in report.get("published", [])
    ]
    return {"head": head, "ours": ours, "published": published}


def _group_tables(report: dict, cols: list[str]) -> list[dict]:
    out = []
    published = report.get("published", [])
    for key, values in report.get("groups", {}).items():
        if not values:
            continue
        pubs = [p for p in published if key in p.get("groups", {})]
        head = [_head(key, "value", "text"), _head("n", "count")] + [_head(COLUMNS[c][0], c) for c in cols]
        head += [_head(f"SAD {p['label']}", f"pub{i}") for i, p in enumerate(pubs)]
        rows = []
        for value, stats in values.items():
            cells = [_num(stats["count"], str(stats["count"]))]
            cells += [_num(stats["metrics"].get(c), fmt(c, stats["metrics"].get(c))) for c in cols]
            cells += [_num(p["groups"][key].get(value), fmt("sad", p["groups"][key].get(value))) for p in pubs]
            rows.append({"value": value, "cells": cells})
        out.append({"key": key, "head": head, "rows": rows})
    return out


def _speed_lines(report: dict) -> list[str]:
    lines = []
    speed = report["speed"]
    if speed["images"]:
        parts = []
        if speed["images_per_second"]:
            parts.append(f"{speed['images_per_second']:.2f} images/s ({speed['seconds_per_image']:.3f} s/image)")
        if speed["seconds_per_megapixel"]:
            parts.append(f"model {speed['seconds_per_megapixel']:.3f} s/MP")
        parts.append(
            f"model {speed['model_seconds']:.2f} s, I/O {speed['io_seconds']:.2f} s, "
            f"metrics {speed['metric_seconds']:.2f} s over {speed['megapixels']:.3g} MP"
        )
        lines.append("speed: " + "; ".join(parts))
    mem = report["memory"]
    lines.append(
        f"peak memory: CPU RSS {format_bytes(mem.get('peak_rss_bytes'))}"
        + (f", CUDA {format_bytes(mem['cuda_peak_bytes'])}" if mem.get("cuda_peak_bytes") else "")
        + f" (device {report.get('device') or '-'})"
    )
    return lines


def plan_line(report: dict) -> str | None:
    """One line on what ran (``plan: 4 hybrid, 2 tiled; budget 10.0 GiB (default); 0 fallback(s)``).

    Reads ``report["plan"]``: ``strategies`` (name -> image count), ``budget`` (``bytes``,
    ``source``, ``note``), ``fallbacks``. None when the report records no strategies.
    """
    plan = report.get("plan") or {}
    if not plan.get("strategies"):
        return None
    budget = plan.get("budget") or {}
    parts = [", ".join(f"{n} {name}" for name, n in sorted(plan["strategies"].items()))]
    if budget.get("bytes"):
        parts.append(f"budget {format_bytes(budget['bytes'])} ({budget.get('source')})")
    if budget.get("note"):
        parts.append(budget["note"])
    parts.append(f"{plan.get('fallbacks') or 0} fallback(s)")
    return "plan: " + "; ".join(parts)


def _notes(report: dict) -> list[str]:
    ds = report["dataset"]
    notes = [line for line in (plan_line(report),) if line]
    source = ds.get("source") or {}
    if source.get("repo_id"):
        notes.append(
            f"dataset: {source['repo_id']}@{str(source.get('revision'))[:12]} ({source.get('hub_license')}) "
            f"in {ds.get('root')}"
        )
    if ds.get("complete") is False:
        notes.append(
            f"note: {ds.get('found')} of the {ds.get('expected')} {ds['title']} test images were found under "
            f"{ds.get('root')}: not the full test set, so the numbers are not comparable with published ones"
        )
    if report.get("cached_rows"):
        notes.append(f"{report['cached_rows']} image(s) taken from the resume cache")
    return notes


def _thumb_uri(uri) -> str | None:
    """A thumbnail the page may show: only a ``data:image/`` URI (nothing is fetched), else None."""
    return uri if isinstance(uri, str) and uri.startswith("data:image/") else None


def _samples_table(report: dict, cols: list[str]) -> dict:
    rows = report.get("rows", [])
    group_keys = [k for k, v in report.get("groups", {}).items() if v]
    with_thumbs = any("thumbs" in r for r in rows)
    head = [_head("#", "index"), _head("name", "name", "text")] + [_head(k, f"group.{k}", "text") for k in group_keys]
    if with_thumbs:
        head += [{"label": label, "key": None} for _, label in _THUMBS]  # not sortable
    head += [_head(COLUMNS[c][0], c) for c in cols] + [_head("MP", "megapixels"), _head("model s", "model_seconds")]
    out = []
    for i, row in enumerate(rows, 1):
        thumbs = row.get("thumbs") or {}
        metrics = row.get("metrics", {})
        cells = [_num(metrics.get(c), fmt(c, metrics.get(c))) for c in cols]
        cells.append(_num(row.get("megapixels"), f"{row.get('megapixels', 0):.3g}"))
        cells.append(_num(row.get("model_seconds"), f"{row.get('model_seconds', 0):.3f}"))
        out.append(
            {
                "index": _num(i, str(i)),
                "name": row["name"],
                "groups": [row.get("groups", {}).get(k, "") for k in group_keys],
                "thumbs": [{"label": label, "uri": _thumb_uri(thumbs.get(key))} for key, label in _THUMBS]
                if with_thumbs
                else [],
                "cells": cells,
            }
        )
    return {"head": head, "rows": out}


@functools.lru_cache(maxsize=1)
def _template():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE)


def _page(report: dict) -> dict:
    """The template's view model: plain strings and numbers, thumbnails checked (see the module docstring)."""
    ds = report["dataset"]
    summary = report["summary"]
    cols = columns(report)
    label = report.get("method") or "predictions"
    region = "unknown region (trimap == 128)" if ds["metric_mode"] == "unknown" else "whole image"
    settings = report.get("settings", {})
    sub = [
        f"{summary['count']} images, metrics over the {region}",
        f"mattecli {report.get('tool', {}).get('version', '?')}",
        f"created {report.get('created', '?')}",
    ]
    if report.get("weights_sha256"):
        sub.append(f"weights sha256 {report['weights_sha256'][:12]}")
    if settings:
        sub.append(f"quantize {settings.get('quantize')}, grad norm {settings.get('grad_norm')}")
    return {
        "title": f"{label} on {ds['title']}",
        "sub": sub,
        "metrics": _metrics_table(report, cols),
        "groups": _group_tables(report, cols),
        "lines": _speed_lines(report) + _notes(report),
        "failures": [{"name": f["name"], "error": f.get("error", "")} for f in report.get("failures", [])],
        "samples": _samples_table(report, cols),
    }


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page.

    Args:
        report: a bench report (:func:`mattecli.pipelines.bench.run_bench`,
            :func:`~mattecli.pipelines.bench.merge_reports` or a loaded JSON report).

    Returns:
        The page as a ``str`` (UTF-8 when written), rendered from :data:`TEMPLATE` with every
        value HTML-escaped.
    """
    return _template().render(_page(report))


def write_html(report: dict, path: str | os.PathLike) -> None:
    """Write :func:`render_html` of ``report`` to ``path``, UTF-8, atomically (a temporary file, then a rename)."""
    from mattecli import io

    io.atomic_write_bytes(path, render_html(report).encode("utf-8"))
