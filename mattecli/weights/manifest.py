"""``weights_manifest.json``: one typed, validated entry per checkpoint variant.

The manifest is data, not code: every field is checked when it is read and a bad one raises
:class:`~mattecli.errors.ManifestError` naming the entry and the field (unknown fields too, so a
typo such as ``sha265`` cannot hide). See the repo-root ``weights_manifest.json`` for the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mattecli import constants
from mattecli.errors import ManifestError, UnknownCheckpointError
from mattecli.manifests import HEX40, HEX64, Fields, Paper, read_manifest
from mattecli.manifests import REPO_ID as _REPO_ID

__all__ = [
    "Paper",
    "OfficialLink",
    "OfficialFile",
    "OfficialSource",
    "HubLocation",
    "OfficialHubFile",
    "Conversion",
    "CheckpointEntry",
    "Manifest",
    "parse_manifest",
    "default_manifest_path",
    "load_manifest",
    "get_entry",
]

_VARIANT = re.compile(r"[a-z0-9][a-z0-9-]*")
SOURCE_FORMATS = ("torch", "mindspore-ckpt", "safetensors")
#: A branch, tag or pull-request ref of a hub repository (``main``, ``v1.0``, ``refs/pr/3``); a
#: full 40-hex commit matches it too
_HUB_REF = re.compile(r"[A-Za-z0-9](?:[\w.-]*[\w-])?(?:/[A-Za-z0-9](?:[\w.-]*[\w-])?)*")
#: Where the authors' hub files are, for messages to people (downloads use ``HF_ENDPOINT``)
HUB_SITE = "https://huggingface.co"
#: What an unpinned hub file is fetched at the first time
DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class OfficialLink:
    """One place the authors publish a file: ``url`` as given, or a host-specific ``file_id``.

    ``manual`` links (a share page behind a login or a password, e.g. Baidu Netdisk) are shown
    to people as a way to fetch the file by hand and never fetched by mattecli; every other link
    with a ``url`` is downloaded from that URL exactly as written (so a mirror or a test server
    stands in through ``MATTECLI_MANIFEST``).
    """

    host: str
    url: str | None
    file_id: str | None
    password: str | None
    manual: bool = False

    @property
    def automatic(self) -> bool:
        """Whether mattecli downloads from this link by itself."""
        return self.url is not None and not self.manual

    def describe(self) -> str:
        """``Host URL (password P)`` for messages."""
        where = self.url or (f"file id {self.file_id}" if self.file_id else "")
        text = f"{self.host} {where}".strip()
        return text + (f" (password {self.password})" if self.password else "")


@dataclass(frozen=True)
class OfficialFile:
    """An official checkpoint file as the authors name it (``sha256``/``size`` when known)."""

    filename: str
    path: str | None
    links: tuple[OfficialLink, ...]
    sha256: str | None
    size: int | None
    note: str | None


@dataclass(frozen=True)
class OfficialSource:
    """The authors' release: code repository (URL), commit digested, checkpoint files."""

    repo: str | None
    commit: str | None
    project_path: str | None
    files: tuple[OfficialFile, ...]
    note: str | None


@dataclass(frozen=True)
class HubLocation:
    """Our converted ``.safetensors`` file on the Hub, pinned to a commit, with its sha256 and size."""

    repo_id: str
    filename: str
    revision: str
    sha256: str
    size: int


@dataclass(frozen=True)
class OfficialHubFile:
    """The authors' own weights file on the Hugging Face Hub, used as it is (no conversion).

    ``revision`` is the full 40-hex commit that added the file and ``sha256``/``size`` the file's,
    where they could be confirmed; otherwise ``revision`` is a branch or ref (``None``: ``main``)
    and the first fetch records the commit it resolved to and the file's sha256, which every later
    use is checked against (trust on first use). ``filename`` is always a ``.safetensors`` file: a
    pickle (``pytorch_model.bin``) is never fetched. ``license`` is the licence tag of the repo.
    """

    repo_id: str
    filename: str
    revision: str | None
    sha256: str | None
    size: int | None
    license: str
    note: str | None = None

    @property
    def commit(self) -> str | None:
        """The pinned commit (``revision`` when it is a full 40-hex hash), else ``None``."""
        return self.revision if self.revision is not None and HEX40.fullmatch(self.revision) else None

    @property
    def pinned(self) -> bool:
        """Both the commit and the file's sha256 are in the manifest (nothing is trusted on first use)."""
        return self.commit is not None and self.sha256 is not None

    @property
    def requested_revision(self) -> str:
        """What is asked of the hub the first time: the pinned commit, the ref, or ``main``."""
        return self.revision or DEFAULT_BRANCH

    def url(self, revision: str | None = None) -> str:
        """The file's download address on huggingface.co (at ``revision``, default the requested one)."""
        from urllib.parse import quote

        rev = quote(revision or self.requested_revision, safe="")
        return f"{HUB_SITE}/{self.repo_id}/resolve/{rev}/{quote(self.filename)}"


@dataclass(frozen=True)
class Conversion:
    """How an official file becomes our safetensors file.

    ``source_format`` is ``torch`` (pickle / zip checkpoint), ``mindspore-ckpt`` or
    ``safetensors``; ``key_mapping`` names the remap function (``identity`` when none).
    """

    source_format: str
    key_mapping: str
    wrapper: str | None
    note: str | None


@dataclass(frozen=True)
class CheckpointEntry:
    """One manifest entry; ``hub is None`` means our converted file is not published yet.

    Sources, in the order ``weights pull`` tries them: ``hub`` (our converted copy on the Hub),
    ``official_hub`` (the authors' own ``.safetensors`` file on the Hub, used as it is), then the
    ``official`` links (the authors' files elsewhere, converted like an import).
    """

    variant: str
    method: str
    description: str
    paper: Paper
    license: str
    license_note: str | None
    official: OfficialSource | None
    hub: HubLocation | None
    conversion: Conversion
    raw: dict = field(repr=False, compare=False, default_factory=dict)
    official_hub: OfficialHubFile | None = None

    @property
    def published(self) -> bool:
        return self.hub is not None

    @property
    def official_file(self) -> OfficialFile | None:
        """The authors' checkpoint file (the first one the manifest lists), if any."""
        files = self.official.files if self.official else ()
        return files[0] if files else None

    @property
    def download_links(self) -> tuple[OfficialLink, ...]:
        """The official links mattecli downloads from by itself, in manifest order."""
        f = self.official_file
        return tuple(link for link in f.links if link.automatic) if f else ()

    @property
    def downloadable(self) -> bool:
        """A hub copy, the authors' hub file or an official link that mattecli can fetch by itself."""
        return self.published or self.official_hub is not None or bool(self.download_links)

    def origin(self) -> str:
        """Where ``weights pull`` gets it first: ``hub`` (our copy), ``authors' hub`` (the authors'
        file on the Hub), the official link's host, or ``none``."""
        if self.published:
            return "hub"
        if self.official_hub is not None:
            return "authors' hub"
        links = self.download_links
        return links[0].host if links else "none"

    @property
    def filename(self) -> str:
        """Name of the converted file (the hub's name when published)."""
        return self.hub.filename if self.hub else f"{self.variant}.safetensors"

    def import_command(self) -> str:
        """The exact ``mattecli weights import`` command for this variant's official file."""
        if self.official_hub is not None:
            return f"mattecli weights import {self.variant} {self.official_hub.filename.rsplit('/', 1)[-1]}"
        files = self.official.files if self.official else ()
        return f"mattecli weights import {self.variant} {files[0].filename if files else 'FILE'}"

    def manual_route(self) -> str:
        """How to get the file by hand: ``download FILE by hand from LINK [or LINK (password P)] and
        run `mattecli weights import ...```; for a variant with no official file, what to import."""
        if self.official_hub is not None:
            src = self.official_hub
            name = src.filename.rsplit("/", 1)[-1]
            return f"download {name} by hand from {src.url()} and run `{self.import_command()}`"
        f = self.official_file
        if f is None:
            return (
                f"import a .safetensors file of mattecli's layout (e.g. one you trained) with "
                f"`mattecli weights import {self.variant} FILE.safetensors`"
            )
        links = [link.describe() for link in f.links]
        where = (" from " + " or ".join(links)) if links else ""
        return f"download {f.filename} by hand{where} and run `{self.import_command()}`"

    def where_to_get(self) -> str:
        """One line saying where the authors' file is (for error hints)."""
        if self.official_hub is not None:
            return f"the authors' {self.official_hub.filename} from {self.official_hub.url()}"
        files = self.official.files if self.official else ()
        if not files:
            return "no official checkpoint exists for this variant; import a converted .safetensors file"
        f = files[0]
        where = next((link.url for link in f.links if link.url), None)
        if where is None and f.links:
            where = f"{f.links[0].host} file id {f.links[0].file_id}"
        if where is None and self.official.project_path:
            where = self.official.project_path
        return f"official file {f.filename}" + (f" from {where}" if where else "")


@dataclass(frozen=True)
class Manifest:
    """All entries of a manifest file, in file order."""

    path: Path | None
    entries: dict[str, CheckpointEntry]

    def get(self, variant: str) -> CheckpointEntry:
        try:
            return self.entries[variant]
        except KeyError:
            raise UnknownCheckpointError(
                f"unknown weights variant {variant!r}; known variants: {', '.join(self.entries)}",
                hint="`mattecli weights list` shows them all",
            ) from None

    def variants(self) -> list[str]:
        return list(self.entries)


def _parse_entry(f: Fields) -> CheckpointEntry:
    variant = f.get("variant", str, pattern=_VARIANT)
    f.where = f"{f.where} ({variant})"
    method = f.get("method", str, pattern=re.compile(r"[a-z0-9]+"))
    description = f.get("description", str)

    p = f.sub("paper")
    paper = Paper(
        p.get("title", str),
        p.get("authors", str),
        p.get("venue", str, nullable=True),
        p.get("year", int, nullable=True),
    )
    p.done()

    license_ = f.get("license", str)
    license_note = f.get("license_note", str, required=False)

    official = None
    o = f.sub("official", nullable=True)
    if o is not None:
        files = []
        for i, raw in enumerate(o.get("files", list)):
            ff = Fields(raw, f"{o.where}.files[{i}]", f.source)
            links = []
            for j, rawlink in enumerate(ff.get("links", list)):
                lf = Fields(rawlink, f"{ff.where}.links[{j}]", f.source)
                link = OfficialLink(
                    lf.get("host", str),
                    lf.get("url", str, nullable=True),
                    lf.get("file_id", str, required=False),
                    lf.get("password", str, required=False),
                    bool(lf.get("manual", bool, required=False)),
                )
                lf.done()
                if link.url is None and link.file_id is None:
                    raise lf.error("url", "and 'file_id' cannot both be null")
                if link.url is not None and not re.match(r"https?://[^/\s]+", link.url):
                    raise lf.error("url", f"must be an http(s) URL, not {link.url!r}")
                links.append(link)
            files.append(
                OfficialFile(
                    ff.get("filename", str),
                    ff.get("path", str, required=False),
                    tuple(links),
                    ff.get("sha256", str, nullable=True, pattern=HEX64),
                    ff.get("size", int, nullable=True),
                    ff.get("note", str, required=False),
                )
            )
            ff.done()
        official = OfficialSource(
            o.get("repo", str, nullable=True),
            o.get("commit", str, nullable=True),
            o.get("project_path", str, required=False),
            tuple(files),
            o.get("note", str, required=False),
        )
        o.done()

    hub = None
    h = f.sub("hub", nullable=True)
    if h is not None:
        hub = HubLocation(
            h.get("repo_id", str, pattern=_REPO_ID),
            h.get("filename", str, pattern=re.compile(r"[\w.-]+\.safetensors")),
            h.get("revision", str, pattern=HEX40),
            h.get("sha256", str, pattern=HEX64),
            h.get("size", int),
        )
        h.done()

    official_hub = None
    a = f.sub("official_hub", nullable=True, required=False)
    if a is not None:
        official_hub = OfficialHubFile(
            a.get("repo_id", str, pattern=_REPO_ID),
            a.get("filename", str, pattern=re.compile(r"(?:[\w.-]+/)*[\w.-]+\.safetensors")),
            a.get("revision", str, nullable=True, pattern=_HUB_REF),
            a.get("sha256", str, nullable=True, pattern=HEX64),
            a.get("size", int, nullable=True),
            a.get("license", str),
            a.get("note", str, required=False),
        )
        if official_hub.revision is not None and ".." in official_hub.revision:
            raise a.error("revision", f"has an invalid value {official_hub.revision!r}")
        a.done()

    c = f.sub("conversion")
    conversion = Conversion(
        c.get("source_format", str),
        c.get("key_mapping", str),
        c.get("wrapper", str, nullable=True),
        c.get("note", str, required=False),
    )
    if conversion.source_format not in SOURCE_FORMATS:
        raise c.error("source_format", f"must be one of {', '.join(SOURCE_FORMATS)}, not {conversion.source_format!r}")
    c.done()
    f.done()
    if official_hub is not None and conversion.source_format != "safetensors":
        raise c.error("source_format", "must be 'safetensors' for the authors' hub file (it is used as it is)")
    return CheckpointEntry(
        variant,
        method,
        description,
        paper,
        license_,
        license_note,
        official,
        hub,
        conversion,
        raw=f.data,
        official_hub=official_hub,
    )


def parse_manifest(data: Any, source: str = "weights_manifest.json", path: Path | None = None) -> Manifest:
    """Validate a decoded manifest; raises :class:`ManifestError` naming the entry and field."""
    top = Fields(data, "top level", source)
    version = top.get("schema_version", int)
    if version != 1:
        raise top.error("schema_version", f"is {version}; this mattecli reads version 1")
    top.get("comment", str, required=False)
    entries: dict[str, CheckpointEntry] = {}
    for i, raw in enumerate(top.get("checkpoints", list)):
        entry = _parse_entry(Fields(raw, f"checkpoints[{i}]", source))
        if entry.variant in entries:
            raise ManifestError(f"{source}: checkpoints[{i}]: variant {entry.variant!r} appears twice")
        entries[entry.variant] = entry
    top.done()
    return Manifest(path, entries)


def default_manifest_path() -> Path:
    """The manifest in use: ``MATTECLI_MANIFEST``, else the repo root's, else the packaged copy.

    In a source checkout (or editable install) that is the repo-root ``weights_manifest.json``
    beside ``pyproject.toml``; in an installed wheel, ``mattecli/weights_manifest.json``.
    """
    override = getattr(constants, "MATTECLI_MANIFEST", None)
    if override:
        return Path(override).expanduser()
    package = Path(__file__).resolve().parents[1]  # .../mattecli
    root = package.parent
    if (root / "pyproject.toml").is_file() and (root / "weights_manifest.json").is_file():
        return root / "weights_manifest.json"
    if (package / "weights_manifest.json").is_file():
        return package / "weights_manifest.json"
    raise ManifestError(
        "weights_manifest.json not found (neither packaged with mattecli nor at the repo root)",
        hint="reinstall mattecli, or point MATTECLI_MANIFEST at a manifest file",
    )


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read and validate a manifest (default: :func:`default_manifest_path`); cached per file version."""
    return read_manifest(
        Path(path) if path is not None else default_manifest_path(), "weights manifest", parse_manifest
    )


def get_entry(variant: str) -> CheckpointEntry:
    """The manifest entry for ``variant`` (:class:`UnknownCheckpointError` lists the known ones)."""
    return load_manifest().get(variant)
