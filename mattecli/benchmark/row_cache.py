"""The per-image rows of a bench run, cached in a JSONL file beside its report, so a killed run resumes.

Each line is ``{"key": settings key, "row": row}`` (:func:`mattecli.benchmark.settings.settings_key`):
rows computed under other settings are never reused. Lines are appended and flushed as images
finish; a line cut short by a killed run is ignored when read, and the next run starts on a new line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mattecli.errors import OutputError

__all__ = ["cache_path_for", "read_rows", "RowWriter"]


def cache_path_for(report_path: str | os.PathLike) -> Path:
    """The per-image JSONL cache that lives next to a report: ``out.json`` -> ``out.rows.jsonl``."""
    p = Path(report_path)
    return p.with_name(p.stem + ".rows.jsonl")


def read_rows(path: Path | None, key: str) -> dict[str, dict]:
    """The ``ok`` rows cached under ``key`` in ``path``, by sample name (none when ``path`` is None or absent)."""
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


class RowWriter:
    """Appends rows under ``key`` to ``path`` (nothing when ``path`` is None); a context manager.

    Raises:
        OutputError: on entering, when ``path`` cannot be opened for appending.
    """

    def __init__(self, path: Path | None, key: str):
        self.path = path
        self.key = key
        self._fh = None

    def __enter__(self) -> RowWriter:
        if self.path is not None:
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
        """Append one row and flush it."""
        if self._fh is not None:
            self._fh.write(json.dumps({"key": self.key, "row": row}, ensure_ascii=False) + "\n")
            self._fh.flush()

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
