"""A bench report's numbers and lines as text: one wording for the terminal tables and the HTML page.

Metric columns (:data:`COLUMNS`, :func:`columns`) and their format (:func:`fmt`: MSE and MAD x 1e3,
two decimals), the title, the speed and peak-memory lines, the plan line and the notes, all plain
text (no markup): ``mattecli bench`` styles them with Rich, the HTML page escapes them.
Byte counts are SI (:func:`mattecli.units.format_bytes`: ``1.2 GB``); the memory budget is written
as ``--max-memory`` reads it (:func:`mattecli.runtime.memory.format_memory`: ``10G``).
"""

from __future__ import annotations

from dataclasses import dataclass

from mattecli.runtime.memory import format_memory
from mattecli.units import format_bytes

__all__ = ["COLUMNS", "Note", "columns", "fmt", "label", "region", "speed_lines", "plan_line", "notes"]

#: metric key -> (label, display scale, format)
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
_ALWAYS = ("sad", "mse", "grad", "conn")


def columns(report: dict) -> list[str]:
    """The metric keys the tables show for ``report``, in order.

    ``"whole"`` (AIM convention) datasets: sad, mse, mad, grad, conn, then sad_trans, sad_fg and
    sad_bg when the summary has them; ``"unknown"`` (DIM) datasets: sad, mse, grad, conn (MAD is in
    the JSON report only).
    """
    mode = report["dataset"]["metric_mode"]
    base = ["sad", "mse", "mad", "grad", "conn", "sad_trans", "sad_fg", "sad_bg"] if mode == "whole" else [*_ALWAYS]
    present = report["summary"]["metrics"]
    return [c for c in base if c in present or c in _ALWAYS]


def fmt(key: str, value: float | None) -> str:
    """A metric as the tables print it: ``value`` (official units) times the :data:`COLUMNS` scale,
    two decimals (``-`` when None). Raises KeyError for a key not in :data:`COLUMNS`."""
    if value is None:
        return "-"
    _, scale, form = COLUMNS[key]
    return form.format(value * scale)


def label(report: dict) -> str:
    """What was scored: the method's name, or ``predictions``."""
    return report.get("method") or "predictions"


def region(report: dict) -> str:
    """Where the metrics were summed: ``unknown region (trimap == 128)`` or ``whole image``."""
    return "unknown region (trimap == 128)" if report["dataset"]["metric_mode"] == "unknown" else "whole image"


def _bytes(n: int | None) -> str:
    return format_bytes(n) if n else "-"


def speed_lines(report: dict) -> list[str]:
    """``speed: ...`` (when images were scored) and ``peak memory: CPU RSS ...[, CUDA ...] (device D)``."""
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
        f"peak memory: CPU RSS {_bytes(mem.get('peak_rss_bytes'))}"
        + (f", CUDA {_bytes(mem['cuda_peak_bytes'])}" if mem.get("cuda_peak_bytes") else "")
        + f" (device {report.get('device') or '-'})"
    )
    return lines


def plan_line(report: dict) -> str | None:
    """One line on what ran (``plan: 4 hybrid, 2 tiled; budget 10G (default); 0 fallback(s)``).

    Reads ``report["plan"]``: ``strategies`` (name -> image count), ``budget`` (``bytes``,
    ``source``, ``note``), ``fallbacks``. None when the report records no strategies.
    """
    plan = report.get("plan") or {}
    if not plan.get("strategies"):
        return None
    budget = plan.get("budget") or {}
    parts = [", ".join(f"{n} {name}" for name, n in sorted(plan["strategies"].items()))]
    if budget.get("bytes"):
        parts.append(f"budget {format_memory(budget['bytes'])} ({budget.get('source')})")
    if budget.get("note"):
        parts.append(budget["note"])
    parts.append(f"{plan.get('fallbacks') or 0} fallback(s)")
    return "plan: " + "; ".join(parts)


@dataclass(frozen=True)
class Note:
    """One line under the tables: ``kind`` is ``plan``, ``source`` (where the dataset came from),
    ``note`` (a warning: not the full test set) or ``cache`` (rows reused); ``text`` is the line
    without the ``note: `` of a warning, :attr:`line` with it."""

    kind: str
    text: str

    @property
    def line(self) -> str:
        return f"note: {self.text}" if self.kind == "note" else self.text


def notes(report: dict) -> list[Note]:
    """The lines after the speed and memory lines, in order (see :class:`Note`)."""
    ds = report["dataset"]
    out = [Note("plan", line) for line in (plan_line(report),) if line]
    source = ds.get("source") or {}
    if source.get("repo_id"):
        out.append(
            Note(
                "source",
                f"dataset: {source['repo_id']}@{str(source.get('revision'))[:12]} ({source.get('hub_license')}) "
                f"in {ds.get('root')}",
            )
        )
    if ds.get("complete") is False:
        out.append(
            Note(
                "note",
                f"{ds.get('found')} of the {ds.get('expected')} {ds['title']} test images were found under "
                f"{ds.get('root')}: not the full test set, so the numbers are not comparable with published ones",
            )
        )
    if report.get("cached_rows"):
        out.append(Note("cache", f"{report['cached_rows']} image(s) taken from the resume cache"))
    return out
