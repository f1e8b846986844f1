"""``datasets_manifest.json``: where each benchmark test set comes from, validated like the weights manifest.

One entry per dataset of :data:`mattecli.benchmark.datasets.DATASETS` (``folder`` excepted): what it is,
its licence, its known size (what "complete" means), where the authors publish it (``access``
``public`` or ``request``), the folder layout the loader reads, the background images its recipe
needs, and, for a set that a licence allows to be mirrored, its Hugging Face Hub copy
(``hub``: dataset repo, pinned 40-hex ``revision``, licence, parquet files and columns, and how
the rows unpack into the loader's layout). ``hub.revision`` is ``null`` when no commit has been
checked yet: such a copy is never fetched implicitly (``mattecli bench download NAME --revision
COMMIT`` fetches it on the user's say-so).

Every field is checked with the validator the weights manifest uses too
(:class:`mattecli.manifests.Fields`), so a bad or unknown field raises
:class:`~mattecli.errors.ManifestError` naming the entry and the field; an entry's ``paper`` is the
shared :class:`mattecli.manifests.Paper`.

The manifest in use is ``MATTECLI_DATASETS_MANIFEST`` (read at call time, by
:func:`mattecli.constants.mattecli_datasets_manifest`), else the repository root's
``datasets_manifest.json``, else the copy packaged with mattecli.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mattecli import constants
from mattecli.benchmark.datasets import DATASETS
from mattecli.errors import DatasetError, ManifestError
from mattecli.manifests import HEX40, Fields, Paper, parse_paper, read_manifest
from mattecli.manifests import REPO_ID as _REPO_ID

__all__ = [
    "ENV_MANIFEST",
    "ACCESS",
    "DatasetSize",
    "OfficialSource",
    "Backgrounds",
    "HubColumns",
    "UnpackLayout",
    "HubDataset",
    "DatasetEntry",
    "DatasetManifest",
    "parse_manifest",
    "default_manifest_path",
    "load_manifest",
    "get_entry",
]

#: Environment variable naming an alternative datasets manifest.
ENV_MANIFEST = "MATTECLI_DATASETS_MANIFEST"
#: How the authors hand a dataset out: ``public`` (a download link) or ``request`` (ask them, licence).
ACCESS = ("public", "request")
FORMATS = ("parquet",)
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_REL_DIR = re.compile(r"[\w.-]+")  # one folder or file name, no separators


@dataclass(frozen=True)
class DatasetSize:
    """The published size of the test set: what a complete copy holds.

    ``images`` is the number of test images (for composed sets: foregrounds x backgrounds per
    foreground); ``foregrounds`` / ``backgrounds`` are given for composed sets.
    """

    images: int
    foregrounds: int | None
    backgrounds: int | None


@dataclass(frozen=True)
class OfficialSource:
    """Where the authors publish the dataset and how one gets it (one sentence)."""

    url: str
    access: str
    how: str


@dataclass(frozen=True)
class Backgrounds:
    """Background images a composition recipe needs (e.g. PASCAL VOC 2012), and the folder for them."""

    name: str
    url: str
    folder: str


@dataclass(frozen=True)
class HubColumns:
    """Parquet column names: sample name, image, GT alpha, optional trimap, group columns."""

    name: str | None
    image: str
    alpha: str
    trimap: str | None
    groups: dict[str, str]


@dataclass(frozen=True)
class UnpackLayout:
    """Where unpacked rows go, relative to the dataset folder (the layout the loader reads)."""

    image: str
    alpha: str
    trimap: str | None
    groups: str | None


@dataclass(frozen=True)
class HubDataset:
    """A copy of the test set in a Hugging Face Hub dataset repository.

    ``revision`` is the pinned 40-hex commit, or None when none has been checked yet (then
    ``revision_note`` says why). ``files`` are file names or ``fnmatch`` patterns at that commit.
    """

    repo_id: str
    revision: str | None
    revision_note: str | None
    license: str
    format: str
    files: tuple[str, ...]
    columns: HubColumns
    unpack: UnpackLayout

    @property
    def pinned(self) -> bool:
        return self.revision is not None

    @property
    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo_id}"


@dataclass(frozen=True)
class DatasetEntry:
    """One manifest entry; ``hub is None`` means no redistributable Hub copy is known."""

    name: str
    description: str
    paper: Paper
    license: str
    license_note: str | None
    size: DatasetSize
    official: OfficialSource
    layout: str
    backgrounds: Backgrounds | None
    hub: HubDataset | None
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def downloadable(self) -> bool:
        """A Hub copy exists (first use may fetch it: at its pinned revision, else at the commit its
        default branch resolves to then, which is recorded)."""
        return self.hub is not None

    @property
    def download_command(self) -> str:
        return f"mattecli bench download {self.name}"


@dataclass(frozen=True)
class DatasetManifest:
    """All entries of a datasets manifest, in file order."""

    path: Path | None
    entries: dict[str, DatasetEntry]

    def get(self, name: str) -> DatasetEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(self.entries)
            where = self.path.name if self.path else "the datasets manifest"
            raise DatasetError(
                f"{name!r} is not in {where}; known datasets: {known}",
                hint="`mattecli bench datasets` lists them; any other folder works with --dataset folder --root DIR",
            ) from None

    def names(self) -> list[str]:
        return list(self.entries)


def _rel(f: Fields, name: str, *, nullable: bool = False) -> str | None:
    """A relative folder/file name inside the dataset folder: no separators, no '..'."""
    value = f.get(name, str, nullable=nullable, pattern=_REL_DIR)
    if value in (".", ".."):
        raise f.error(name, f"must name a folder or file inside the dataset folder, not {value!r}")
    return value


def _hub(h: Fields) -> HubDataset:
    repo_id = h.get("repo_id", str, pattern=_REPO_ID)
    revision = h.get("revision", str, nullable=True, pattern=HEX40)
    revision_note = h.get("revision_note", str, required=False)
    if revision is None and revision_note is None:
        raise h.error("revision_note", "is missing: say why the revision is not pinned")
    license_ = h.get("license", str)
    fmt = h.get("format", str)
    if fmt not in FORMATS:
        raise h.error("format", f"must be one of {', '.join(FORMATS)}, not {fmt!r}")
    files = h.get("files", list)
    if not files or not all(isinstance(x, str) and x.strip() for x in files):
        raise h.error("files", "must be a non-empty list of file names or patterns")
    c = h.sub("columns")
    groups = c.get("groups", dict)
    for key, col in groups.items():
        if not (isinstance(key, str) and _NAME.fullmatch(key) and isinstance(col, str) and col.strip()):
            raise c.error("groups", f"must map group names to column names, not {key!r}: {col!r}")
    columns = HubColumns(
        c.get("name", str, nullable=True), c.get("image", str), c.get("alpha", str),
        c.get("trimap", str, nullable=True), dict(groups),
    )  # fmt: skip
    c.done()
    u = h.sub("unpack")
    unpack = UnpackLayout(_rel(u, "image"), _rel(u, "alpha"), _rel(u, "trimap", nullable=True),
                          _rel(u, "groups", nullable=True))  # fmt: skip
    u.done()
    if columns.trimap is not None and unpack.trimap is None:
        raise u.error("trimap", "must name a folder since columns.trimap is given")
    if columns.groups and unpack.groups is None:
        raise u.error("groups", "must name a JSON file since columns.groups is not empty")
    h.done()
    return HubDataset(repo_id, revision, revision_note, license_, fmt, tuple(files), columns, unpack)


def _parse_entry(f: Fields, known: set[str] | None) -> DatasetEntry:
    name = f.get("name", str, pattern=_NAME)
    f.where = f"{f.where} ({name})"
    if known is not None and name not in known:
        raise f.error("name", f"is not a dataset mattecli can load ({', '.join(sorted(known))})")
    description = f.get("description", str)
    paper = parse_paper(f)
    license_ = f.get("license", str)
    license_note = f.get("license_note", str, required=False)

    s = f.sub("size")
    size = DatasetSize(s.get("images", int), s.get("foregrounds", int, required=False),
                       s.get("backgrounds", int, required=False))  # fmt: skip
    s.done()

    o = f.sub("official")
    official = OfficialSource(o.get("url", str), o.get("access", str), o.get("how", str))
    if official.access not in ACCESS:
        raise o.error("access", f"must be one of {', '.join(ACCESS)}, not {official.access!r}")
    o.done()

    layout = f.get("layout", str)
    backgrounds = None
    b = f.sub("backgrounds", nullable=True)
    if b is not None:
        backgrounds = Backgrounds(b.get("name", str), b.get("url", str), b.get("folder", str))
        b.done()
    hub = None
    h = f.sub("hub", nullable=True)
    if h is not None:
        hub = _hub(h)
    f.done()
    return DatasetEntry(name, description, paper, license_, license_note, size, official, layout, backgrounds, hub,
                        raw=f.data)  # fmt: skip


def parse_manifest(data: Any, source: str = "datasets_manifest.json", path: Path | None = None) -> DatasetManifest:
    """Validate a decoded datasets manifest; raises :class:`ManifestError` naming the entry and field."""

    known = {n for n in DATASETS if n != "folder"}
    top = Fields(data, "top level", source)
    version = top.get("schema_version", int)
    if version != 1:
        raise top.error("schema_version", f"is {version}; this mattecli reads version 1")
    top.get("comment", str, required=False)
    entries: dict[str, DatasetEntry] = {}
    for i, raw in enumerate(top.get("datasets", list)):
        entry = _parse_entry(Fields(raw, f"datasets[{i}]", source), known)
        if entry.name in entries:
            raise ManifestError(f"{source}: datasets[{i}]: dataset {entry.name!r} appears twice")
        entries[entry.name] = entry
    top.done()
    return DatasetManifest(path, entries)


def default_manifest_path() -> Path:
    """The manifest in use: ``$MATTECLI_DATASETS_MANIFEST``, else the repo root's, else the packaged copy."""
    override = constants.mattecli_datasets_manifest()
    if override:
        return Path(override).expanduser()
    package = Path(__file__).resolve().parents[1]  # .../mattecli
    root = package.parent
    if (root / "pyproject.toml").is_file() and (root / "datasets_manifest.json").is_file():
        return root / "datasets_manifest.json"
    if (package / "datasets_manifest.json").is_file():
        return package / "datasets_manifest.json"
    raise ManifestError(
        "datasets_manifest.json not found (neither packaged with mattecli nor at the repo root)",
        hint=f"reinstall mattecli, or point {ENV_MANIFEST} at a manifest file",
    )


def load_manifest(path: str | Path | None = None) -> DatasetManifest:
    """Read and validate a datasets manifest (default: :func:`default_manifest_path`); cached per file version."""
    path = Path(path) if path is not None else default_manifest_path()
    return read_manifest(path, "datasets manifest", parse_manifest)


def get_entry(name: str) -> DatasetEntry:
    """The manifest entry of dataset ``name`` (:class:`DatasetError` lists the known ones)."""
    return load_manifest().get(name)
