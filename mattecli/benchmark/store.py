"""Where benchmark datasets live and whether they are complete.

Every dataset of ``datasets_manifest.json`` (:mod:`mattecli.benchmark.manifest`) has a default
folder, ``$MATTECLI_DATASETS/<name>`` (default ``<MATTECLI_HOME>/datasets/<name>``, i.e.
``~/.cache/mattecli/datasets/<name>``), read in either layout its loader accepts. :func:`check` loads
a folder with :func:`mattecli.benchmark.datasets.load_dataset` and compares the number of test images
with the published size: ``complete``, ``incomplete`` (fewer, or a layout that does not load: the
loader's message), ``mismatch`` (more) or ``missing`` (no files), so a partial copy is never scored
silently. A folder made by :func:`mattecli.benchmark.download.fetch` carries a marker
(:data:`MARKER`: repository, resolved commit, licence, files), which its status reports.

``MATTECLI_DATASETS`` is read at call time (:func:`mattecli.constants.mattecli_datasets`). Nothing
here downloads or prints. Errors: :class:`~mattecli.errors.DatasetError` for a name that is not in
the manifest (the message lists the known ones).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mattecli import constants
from mattecli.benchmark.datasets import DATASETS, load_dataset
from mattecli.benchmark.manifest import DatasetEntry, get_entry, load_manifest
from mattecli.errors import DatasetError

__all__ = [
    "ENV_DATASETS",
    "MARKER",
    "MARKER_FORMAT",
    "STATES",
    "DatasetStatus",
    "datasets_root",
    "location",
    "check",
    "status",
]

#: Environment variable holding the folder of the default dataset locations.
ENV_DATASETS = "MATTECLI_DATASETS"
#: File written last into a dataset folder made by :func:`mattecli.benchmark.download.fetch`.
MARKER = ".mattecli-dataset.json"
MARKER_FORMAT = "mattecli-dataset/1"
#: ``complete`` (the published number of images), ``incomplete`` (fewer, or files missing),
#: ``mismatch`` (more images than the published set), ``missing`` (no files).
STATES = ("complete", "incomplete", "mismatch", "missing")


def datasets_root() -> Path:
    """``$MATTECLI_DATASETS``, else ``<MATTECLI_HOME>/datasets`` (read at call time)."""
    override = constants.mattecli_datasets()
    return Path(override).expanduser() if override else constants.MATTECLI_HOME / "datasets"


def location(name: str) -> Path:
    """The default folder of dataset ``name``."""
    return datasets_root() / name


# ----------------------------------------------------------------------------- status
@dataclass(frozen=True)
class DatasetStatus:
    """What is in a dataset's folder compared with the published test set.

    Attributes:
        entry: the manifest entry.
        path: the folder looked at.
        state: one of :data:`STATES`.
        found: test images found (None when the layout could not be read).
        layout: the layout the loader recognised (``merged``, ``compose``, ``original``...).
        problem: why it is not complete (the loader's message or the count), else None.
        source: the marker of a folder made by :func:`mattecli.benchmark.download.fetch` (repository,
            revision, licence), else None.
    """

    entry: DatasetEntry
    path: Path
    state: str
    found: int | None
    layout: str | None
    problem: str | None
    source: dict | None

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def title(self) -> str:
        return DATASETS[self.entry.name].title

    @property
    def expected(self) -> int:
        return self.entry.size.images

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    def counts(self) -> str:
        """``"480/500"`` (``"-/500"`` when the layout could not be read)."""
        return f"{'-' if self.found is None else self.found}/{self.expected}"

    def how_to_get(self) -> str:
        """One short line: how this dataset gets into its folder."""
        e = self.entry
        if self.source:
            return f"downloaded from {self.source.get('repo_id')}@{str(self.source.get('revision'))[:12]}"
        if self.complete:
            return "in place"
        if e.hub is not None and e.hub.pinned:
            return f"`{e.download_command}` (or first use)"
        if e.hub is not None:
            return f"`{e.download_command}` (or first use: {e.hub.repo_id}'s current commit, recorded)"
        verb = "request" if e.official.access == "request" else "download"
        return f"{verb} at {e.official.url}"

    def source_json(self) -> dict:
        """Where the data came from, for reports."""
        out = {"location": str(self.path), "license": self.entry.license}
        if self.source:
            out.update({k: self.source.get(k) for k in ("repo_id", "revision", "requested_revision")})
            out["hub_license"] = self.source.get("license")
        return out

    def to_json(self) -> dict:
        e = self.entry
        return {
            "name": e.name,
            "title": self.title,
            "license": e.license,
            "path": str(self.path),
            "state": self.state,
            "found": self.found,
            "expected": self.expected,
            "layout": self.layout,
            "problem": self.problem,
            "access": e.official.access,
            "official": e.official.url,
            "expected_layout": e.layout,
            "hub": None
            if e.hub is None
            else {"repo_id": e.hub.repo_id, "revision": e.hub.revision, "license": e.hub.license},
            "source": self.source,
            "how_to_get": self.how_to_get(),
        }


def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads((path / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MARKER_FORMAT else None


def _has_files(path: Path) -> bool:
    try:
        return any(not p.name.startswith(".") for p in path.iterdir())
    except OSError:
        return False


def check(
    name: str,
    path: str | os.PathLike | None = None,
    entry: DatasetEntry | None = None,
    *,
    options: dict | None = None,
) -> DatasetStatus:
    """Compare the folder of ``name`` (default: :func:`location`) with the published test set.

    ``options`` are extra :func:`mattecli.benchmark.datasets.load_dataset` arguments (``layout``, ``bg_dir``).

    Raises:
        DatasetError: ``name`` is not in the manifest.
    """
    entry = entry or get_entry(name)
    path = Path(path) if path is not None else location(name)
    source = _read_marker(path) if path.is_dir() else None
    if not path.exists() or (path.is_dir() and not _has_files(path)):
        return DatasetStatus(entry, path, "missing", 0, None, None, source)
    try:
        ds = load_dataset(name, path, **(options or {}))
    except DatasetError as err:
        return DatasetStatus(entry, path, "incomplete", None, None, err.message, source)
    found, expected = len(ds), entry.size.images
    if found == expected:
        return DatasetStatus(entry, path, "complete", found, ds.layout, None, source)
    state = "incomplete" if found < expected else "mismatch"
    problem = f"{found} of {expected} images" if found < expected else f"{found} images, the test set has {expected}"
    return DatasetStatus(entry, path, state, found, ds.layout, problem, source)


def status(name: str | None = None) -> list[DatasetStatus]:
    """:func:`check` of every manifest dataset (or of ``name``) in its default folder."""
    manifest = load_manifest()
    names = [name] if name is not None else manifest.names()
    return [check(n, entry=manifest.get(n)) for n in names]
