"""``bench --html``: one self-contained HTML page of a bench report.

The page holds what the CLI prints (the metrics table with the published numbers beside ours, the
per-group tables, speed and peak memory, notes and failures) and then one row per sample: its
image / ground truth / prediction / error-map thumbnails (data URIs the report's rows carry, see
:mod:`mattecli.thumbnails`) and its metrics. Numbers are formatted as the CLI's table formats them
(MSE and MAD x 1e3, two decimals). Every table sorts by any column on a click (a few lines of plain
JavaScript, inline); the sample table's initial order may come from the URL fragment:
``report.html#sort=sad`` (ascending) or ``#sort=-sad`` (descending), any column key (``name``,
``sad``, ``mse``, ..., ``megapixels``, ``model_seconds``).

Nothing is fetched: no external script, style sheet, font or image; all text is escaped.
"""

from __future__ import annotations

import html
import os

__all__ = ["COLUMNS", "columns", "fmt", "format_bytes", "render_html", "write_html"]

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
    """The metric columns the CLI shows for this report (whole-image datasets: all eight)."""
    mode = report["dataset"]["metric_mode"]
    base = ["sad", "mse", "mad", "grad", "conn", "sad_trans", "sad_fg", "sad_bg"] if mode == "whole" else [
        "sad", "mse", "grad", "conn",
    ]  # fmt: skip
    present = report["summary"]["metrics"]
    return [c for c in base if c in present or c in ("sad", "mse", "grad", "conn")]


def fmt(key: str, value: float | None) -> str:
    """A metric as the CLI prints it (``-`` when missing)."""
    if value is None:
        return "-"
    _, scale, form = COLUMNS[key]
    return form.format(value * scale)


def format_bytes(n: int | None) -> str:
    """A byte count as the CLI prints it (``1.5 GiB``; ``-`` when missing)."""
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _num_cell(value, text: str | None = None) -> str:
    v = "" if value is None else repr(float(value))
    return f'<td class="n" data-v="{v}">{_e(text if text is not None else v)}</td>'


def _th(label: str, key: str, kind: str = "num") -> str:
    return f'<th data-key="{_e(key)}" data-type="{kind}" aria-sort="none">{_e(label)}</th>'


def _metrics_table(report: dict, cols: list[str]) -> str:
    summary = report["summary"]
    out = ['<table id="metrics" class="sortable"><thead><tr>', _th("", "source", "text"), _th("n", "count")]
    out += [_th(COLUMNS[c][0], c) for c in cols] + ["</tr></thead><tbody>"]
    out.append(f'<tr class="ours"><td data-v="ours">ours</td>{_num_cell(summary["count"], str(summary["count"]))}')
    out += [_num_cell(summary["metrics"].get(c), fmt(c, summary["metrics"].get(c))) for c in cols]
    out.append("</tr>")
    for pub in report.get("published", []):
        tip = pub.get("source", "") + (f" ({pub['note']})" if pub.get("note") else "")
        out.append(f'<tr class="published" title="{_e(tip)}"><td data-v="{_e(pub["label"])}">{_e(pub["label"])}</td>')
        out.append('<td class="n" data-v="">-</td>')
        out += [_num_cell(pub["metrics"].get(c), fmt(c, pub["metrics"].get(c))) for c in cols]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _group_tables(report: dict, cols: list[str]) -> str:
    out = []
    published = report.get("published", [])
    for key, values in report.get("groups", {}).items():
        if not values:
            continue
        pubs = [p for p in published if key in p.get("groups", {})]
        out.append(f'<h3>per {_e(key)}</h3><table class="sortable group"><thead><tr>')
        out += [_th(key, "value", "text"), _th("n", "count")] + [_th(COLUMNS[c][0], c) for c in cols]
        out += [_th(f"SAD {p['label']}", f"pub{i}") for i, p in enumerate(pubs)] + ["</tr></thead><tbody>"]
        for value, stats in values.items():
            out.append(f'<tr><td data-v="{_e(value)}">{_e(value)}</td>{_num_cell(stats["count"], str(stats["count"]))}')
            out += [_num_cell(stats["metrics"].get(c), fmt(c, stats["metrics"].get(c))) for c in cols]
            out += [_num_cell(p["groups"][key].get(value), fmt("sad", p["groups"][key].get(value))) for p in pubs]
            out.append("</tr>")
        out.append("</tbody></table>")
    return "".join(out)


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
    """One line on what ran: the memory budget, how many images ran with each strategy, fallbacks."""
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


def _samples_table(report: dict, cols: list[str]) -> str:
    rows = report.get("rows", [])
    group_keys = [k for k, v in report.get("groups", {}).items() if v]
    with_thumbs = any("thumbs" in r for r in rows)
    out = ['<table id="samples" class="sortable"><thead><tr>', _th("#", "index"), _th("name", "name", "text")]
    out += [_th(k, f"group.{k}", "text") for k in group_keys]
    if with_thumbs:
        out += [f"<th>{_e(label)}</th>" for _, label in _THUMBS]
    out += [_th(COLUMNS[c][0], c) for c in cols]
    out += [_th("MP", "megapixels"), _th("model s", "model_seconds"), "</tr></thead><tbody>"]
    for i, row in enumerate(rows, 1):
        name = row["name"]
        out.append(f'<tr data-name="{_e(name)}">{_num_cell(i, str(i))}<td class="name" data-v="{_e(name)}">{_e(name)}</td>')
        for k in group_keys:
            value = row.get("groups", {}).get(k, "")
            out.append(f'<td data-v="{_e(value)}">{_e(value)}</td>')
        if with_thumbs:
            thumbs = row.get("thumbs") or {}
            for key, label in _THUMBS:
                uri = thumbs.get(key)
                ok = isinstance(uri, str) and uri.startswith("data:image/")
                out.append(f'<td class="t"><img alt="{_e(label)}" src="{_e(uri)}"></td>' if ok else '<td class="t">-</td>')
        metrics = row.get("metrics", {})
        out += [_num_cell(metrics.get(c), fmt(c, metrics.get(c))) for c in cols]
        out.append(_num_cell(row.get("megapixels"), f"{row.get('megapixels', 0):.3g}"))
        out.append(_num_cell(row.get("model_seconds"), f"{row.get('model_seconds', 0):.3f}"))
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _failures(report: dict) -> str:
    fails = report.get("failures", [])
    if not fails:
        return ""
    items = "".join(f"<li><b>{_e(f['name'])}</b>: {_e(f.get('error', ''))}</li>" for f in fails)
    return f'<h2 class="bad">{len(fails)} image(s) failed</h2><ul id="failures">{items}</ul>'


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:22px 0 8px}h3{font-size:14px;margin:16px 0 6px}
.sub,.lines{color:#4a5262}.lines p{margin:2px 0}.bad{color:#b42318}
table{border-collapse:collapse;margin:4px 0 8px}th,td{padding:4px 9px;border-bottom:1px solid #e3e6ec;text-align:left}
th{background:#f3f5f9;position:sticky;top:0;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
td.n{text-align:right;font-variant-numeric:tabular-nums}tr.ours td{font-weight:600}tr.published td{color:#5b6475}
td.t{padding:2px 3px}td.t img{display:block;max-height:96px;max-width:128px;background:#888}
#samples tbody tr:hover{background:#f7f9fc}table.group th{white-space:normal;max-width:150px;vertical-align:bottom}
"""

_JS = """
(function () {
  function sortTable(table, key, desc) {
    var heads = table.tHead.rows[0].cells, col = -1;
    for (var i = 0; i < heads.length; i++) if (heads[i].getAttribute("data-key") === key) col = i;
    if (col < 0) return;
    var num = heads[col].getAttribute("data-type") === "num", body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
      if (x === "" || y === "") return (x === "") - (y === "");  /* missing values last */
      var c = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return desc ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var j = 0; j < heads.length; j++)
      if (heads[j].hasAttribute("data-key"))
        heads[j].setAttribute("aria-sort", j === col ? (desc ? "descending" : "ascending") : "none");
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
      if (!th.hasAttribute("data-key")) return;
      th.addEventListener("click", function () {
        var desc = th.getAttribute("aria-sort") === "ascending", key = th.getAttribute("data-key");
        sortTable(table, key, desc);
        if (table.id === "samples") history.replaceState(null, "", "#sort=" + (desc ? "-" : "") + key);
      });
    });
  });
  var m = /(?:^#|&)sort=(-?)([A-Za-z0-9_.-]+)/.exec(location.hash), samples = document.getElementById("samples");
  if (m && samples) sortTable(samples, m[2], m[1] === "-");
})();
"""


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page (a ``str``)."""
    ds = report["dataset"]
    summary = report["summary"]
    cols = columns(report)
    label = report.get("method") or "predictions"
    region = "unknown region (trimap == 128)" if ds["metric_mode"] == "unknown" else "whole image"
    title = f"{label} on {ds['title']}"
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
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} - mattecli bench</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(" · ".join(sub))}</p>',
        "<h2>metrics</h2>",
        _metrics_table(report, cols),
        _group_tables(report, cols),
        '<div class="lines">' + "".join(f"<p>{_e(line)}</p>" for line in _speed_lines(report) + _notes(report)) + "</div>",
        _failures(report),
        f"<h2>samples ({len(report.get('rows', []))})</h2>",
        '<p class="sub">click a column to sort; the error map is |prediction − ground truth| '
        "(square-root scaled, dimmed outside the scored region)</p>",
        _samples_table(report, cols),
        f"<script>{_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def write_html(report: dict, path: str | os.PathLike) -> None:
    """Write :func:`render_html` of ``report`` to ``path`` (atomically, UTF-8)."""
    from mattecli import io

    io.atomic_write_bytes(path, render_html(report).encode("utf-8"))
