"""``bench --html``: one self-contained HTML page of a bench report.

The page holds what the CLI prints (the metrics table with the published numbers beside ours, the
per-group tables, speed and peak memory, notes and failures) and then one row per sample: its
image / ground truth / prediction / error-map thumbnails (data URIs the report's rows carry, see
:mod:`mattecli.benchmark.thumbnails`) and its metrics. Numbers and lines are worded as the CLI prints
them (:mod:`mattecli.benchmark.report_text`: MSE and MAD x 1e3, two decimals). Every table sorts by
any column on a click (a few lines of plain JavaScript, inline); the sample table's initial order
may come from the URL fragment:
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

from mattecli.benchmark.report_text import COLUMNS, columns, fmt, label, notes, region, speed_lines

__all__ = ["TEMPLATE", "TEMPLATE_DIR", "render_html", "write_html"]

#: The page's Jinja2 template: ``templates/report.html.j2`` beside this module (package data).
TEMPLATE = "report.html.j2"
TEMPLATE_DIR = Path(__file__).resolve().with_name("templates")
_THUMBS = (("image", "image"), ("gt", "ground truth"), ("prediction", "prediction"), ("error", "error"))


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
    settings = report.get("settings", {})
    sub = [
        f"{summary['count']} images, metrics over the {region(report)}",
        f"mattecli {report.get('tool', {}).get('version', '?')}",
        f"created {report.get('created', '?')}",
    ]
    if report.get("weights_sha256"):
        sub.append(f"weights sha256 {report['weights_sha256'][:12]}")
    if settings:
        sub.append(f"quantize {settings.get('quantize')}, grad norm {settings.get('grad_norm')}")
    return {
        "title": f"{label(report)} on {ds['title']}",
        "sub": sub,
        "metrics": _metrics_table(report, cols),
        "groups": _group_tables(report, cols),
        "lines": speed_lines(report) + [note.line for note in notes(report)],
        "failures": [{"name": f["name"], "error": f.get("error", "")} for f in report.get("failures", [])],
        "samples": _samples_table(report, cols),
    }


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page.

    Args:
        report: a bench report (:func:`mattecli.benchmark.run.run_bench`,
            :func:`~mattecli.benchmark.reports.merge_reports` or a loaded JSON report).

    Returns:
        The page as a ``str`` (UTF-8 when written), rendered from :data:`TEMPLATE` with every
        value HTML-escaped.
    """
    return _template().render(_page(report))


def write_html(report: dict, path: str | os.PathLike) -> None:
    """Write :func:`render_html` of ``report`` to ``path``, UTF-8, atomically (a temporary file, then a rename).

    Raises:
        OutputError: ``path`` cannot be written.
    """
    from mattecli import io

    io.atomic_write_bytes(path, render_html(report).encode("utf-8"))
