"""The local weights store: hashing, cache locations, status, download, import, loading.

See the package docstring for the resolution order and the cache layout of imported files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mattecli import __version__, constants
from mattecli.errors import (
    CheckpointMismatchError,
    ChecksumMismatchError,
    UnknownCheckpointError,
    UnsafeCheckpointError,
    WeightsCacheError,
    WeightsError,
    WeightsNotCachedError,
    WeightsUnavailableError,
)
from mattecli.hub import hf_offline, transport_errors
from mattecli.weights.checkpoints import (
    META,
    Architecture,
    conform,
    convert_file,
    get_architecture,
    layout_of,
    load_into,
)
from mattecli.weights.manifest import (
    HEX40,
    HEX64,
    CheckpointEntry,
    OfficialLink,
    get_entry,
    load_manifest,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CONVERTER_VERSION",
    "IMPORTS_NAMESPACE",
    "LocalCopy",
    "WeightsStatus",
    "ImportResult",
    "PullResult",
    "sha256_file",
    "trusted_source",
    "hub_revision",
    "official_hub_copy",
    "prefetch",
    "status",
    "local_path",
    "ensure_weights",
    "pull",
    "import_checkpoint",
    "verify",
    "load_model",
]

#: Bumped whenever the conversion changes the bytes it writes for the same input.
CONVERTER_VERSION = 1
#: Owner name of the cache repositories that hold imported weights.
IMPORTS_NAMESPACE = "mattecli-imports"

# ----------------------------------------------------------------------------- hashing
_VERIFIED: dict[tuple, str] = {}


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path: str | Path, *, use_cache: bool = True) -> str:
    """Hex sha256 of a file (1 MiB reads). ``use_cache`` reuses a hash computed earlier in this
    process for the same unchanged file (same inode, size and mtime)."""
    path = Path(path)
    key = _file_key(path)
    if use_cache and key in _VERIFIED:
        return _VERIFIED[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    value = digest.hexdigest()
    _VERIFIED[key] = value
    return value


def _known_digest(path: Path) -> str | None:
    try:
        return _VERIFIED.get(_file_key(path))
    except OSError:
        return None


def _check_digest(
    path: Path,
    expected: str,
    variant: str,
    what: str,
    *,
    size: int | None = None,
    use_cache: bool = True,
    hint: str | None = None,
) -> None:
    """Raise :class:`ChecksumMismatchError` unless ``path`` has sha256 ``expected`` (and ``size``)."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumMismatchError(
            f"{variant}: {what} {path} has {actual_size} bytes, expected {size}; it was not loaded", hint=hint
        )
    actual = sha256_file(path, use_cache=use_cache)
    if actual != expected:
        _VERIFIED.pop(_file_key(path), None)
        raise ChecksumMismatchError(
            f"{variant}: {what} {path} has sha256 {actual}, expected {expected}; it was not loaded", hint=hint
        )


# ----------------------------------------------------------------------------- cache locations
def hub_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, default ``$HF_HOME/hub``), read at call time."""
    from huggingface_hub import constants as hf_constants

    return Path(hf_constants.HF_HUB_CACHE).expanduser()


def _imports_repo(variant: str) -> Path:
    return hub_cache() / f"models--{IMPORTS_NAMESPACE}--{variant}"


@dataclass(frozen=True)
class LocalCopy:
    """A weights file on disk: ``kind`` is ``hub`` (our converted copy, pulled), ``official-hub``
    (the authors' own file, pulled from their hub repo) or ``imported``.

    ``ok`` is ``True``/``False`` once the file has been hashed in this process, else ``None``.
    """

    variant: str
    kind: str
    path: Path
    expected_sha256: str
    ok: bool | None = None
    problem: str | None = None

    def to_json(self) -> dict:
        out = {"kind": self.kind, "path": str(self.path), "sha256": self.expected_sha256, "ok": self.ok}
        if self.problem:
            out["problem"] = self.problem
        return out


def hub_copy(entry: CheckpointEntry) -> LocalCopy | None:
    """The pulled file at the pinned revision, if it is in the cache (no network, no hashing)."""
    if entry.hub is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        entry.hub.repo_id, entry.hub.filename, cache_dir=hub_cache(), revision=entry.hub.revision
    )
    if not isinstance(found, str) or not os.path.isfile(found):
        return None
    return LocalCopy(entry.variant, "hub", Path(found), entry.hub.sha256)


def official_hub_copy(entry: CheckpointEntry) -> LocalCopy | None:
    """The authors' hub file in the HF cache, if it is there (no network, no hashing): at the pinned
    commit, or at the commit recorded by its first fetch. ``None`` while neither is known (an
    unpinned file is looked for only once its first fetch has recorded what to expect)."""
    src = entry.official_hub
    if src is None:
        return None
    expected = hub_revision(entry)
    if expected["commit"] is None or expected["sha256"] is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(src.repo_id, src.filename, cache_dir=hub_cache(), revision=expected["commit"])
    if not isinstance(found, str) or not os.path.isfile(found):
        return None
    return LocalCopy(entry.variant, "official-hub", Path(found), expected["sha256"])


def imported_copy(entry: CheckpointEntry) -> LocalCopy | None:
    """The imported file named by ``refs/main`` of the imports repo, if any (no hashing)."""
    repo = _imports_repo(entry.variant)
    try:
        ref = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    if not HEX64.fullmatch(ref):
        return None
    path = repo / "snapshots" / ref / entry.filename
    return LocalCopy(entry.variant, "imported", path, ref) if path.is_file() else None


def _with_ok(copy: LocalCopy | None, *, check: bool, force: bool = False) -> LocalCopy | None:
    if copy is None:
        return None
    if check:
        digest = sha256_file(copy.path, use_cache=not force)
    else:
        digest = _known_digest(copy.path)
    if digest is None:
        return copy
    return LocalCopy(copy.variant, copy.kind, copy.path, copy.expected_sha256, digest == copy.expected_sha256)


# ----------------------------------------------------------------------------- status
@dataclass(frozen=True)
class WeightsStatus:
    """Local state of one variant, for ``mattecli weights list``."""

    entry: CheckpointEntry
    implemented: bool
    hub: LocalCopy | None
    imported: LocalCopy | None
    official_hub: LocalCopy | None = None

    @property
    def active(self) -> LocalCopy | None:
        """The copy :func:`load_model` would use."""
        return self.hub or self.official_hub or self.imported

    @property
    def state(self) -> str:
        """One of ``unpublished`` (nothing to download: import only), ``missing`` (downloadable,
        not fetched yet), ``cached``, ``imported``, ``checksum ok``, ``checksum mismatch``."""
        active = self.active
        if active is None:
            return "missing" if self.entry.downloadable else "unpublished"
        if active.ok is None:
            return "imported" if active.kind == "imported" else "cached"
        return "checksum ok" if active.ok else "checksum mismatch"

    def to_json(self) -> dict:
        e = self.entry
        out = {
            "variant": e.variant,
            "method": e.method,
            "state": self.state,
            "published": e.published,
            "downloadable": e.downloadable,
            "origin": e.origin(),
            "size": size_of(e),
            "implemented": self.implemented,
            "license": e.license,
            "description": e.description,
            "path": str(self.active.path) if self.active else None,
            "source": self.active.kind if self.active else None,
            "hub": self.hub.to_json() if self.hub else None,
            "imported": self.imported.to_json() if self.imported else None,
        }
        if e.official_hub is not None:
            out["official_hub"] = self.official_hub.to_json() if self.official_hub else None
            out["revision"] = hub_revision(e)
        return out


def size_of(entry: CheckpointEntry) -> int | None:
    """Bytes to download where the manifest knows them (hub copy, else the official file)."""
    if entry.hub is not None:
        return entry.hub.size
    if entry.official_hub is not None:
        return hub_revision(entry)["size"]
    f = entry.official_file
    return f.size if f is not None else None


def _implemented(variant: str) -> bool:
    try:
        get_architecture(variant)
    except WeightsUnavailableError:
        return False
    return True


def status(variant: str | None = None, *, check: bool = False) -> list[WeightsStatus]:
    """Local status of one variant or of all; ``check`` hashes the files (else only hashes
    already computed in this process count)."""
    manifest = load_manifest()
    entries = [manifest.get(variant)] if variant else list(manifest.entries.values())
    return [
        WeightsStatus(
            e,
            _implemented(e.variant),
            _with_ok(hub_copy(e), check=check),
            _with_ok(imported_copy(e), check=check),
            _with_ok(official_hub_copy(e), check=check),
        )
        for e in entries
    ]


def local_path(variant: str) -> Path:
    """Path of the file :func:`load_model` would use (no download, no hashing).

    Raises:
        WeightsNotCachedError: neither pulled nor imported (``WeightsUnavailableError`` when unpublished).
    """
    entry = get_entry(variant)
    copy = _local_copy(entry)
    if copy is None:
        raise not_available(entry)
    return copy.path


def _local_copy(entry: CheckpointEntry) -> LocalCopy | None:
    """The copy :func:`load_model` uses: our hub copy, the authors' hub file, else an imported one."""
    return hub_copy(entry) or official_hub_copy(entry) or imported_copy(entry)


def not_available(entry: CheckpointEntry, reason: str | None = None) -> WeightsError:
    """The error for weights that are not local, naming the variant and the exact commands to run:
    :class:`WeightsNotCachedError` for a downloadable variant (``reason``: why it was not
    downloaded now), :class:`WeightsUnavailableError` for one that nothing publishes (only an
    import can provide it)."""
    v = entry.variant
    if entry.downloadable:
        what = reason or "are not downloaded yet"
        return WeightsNotCachedError(
            f"{v} weights {what}; run `mattecli weights pull {v}`, or {entry.manual_route()}",
            hint="`mattecli weights list` shows where each variant comes from",
        )
    if entry.official_file is not None:  # authors' file known, but no link mattecli can fetch
        return WeightsUnavailableError(
            f"{v} weights are not imported and cannot be downloaded automatically; {entry.manual_route()}",
            hint=entry.where_to_get(),
        )
    return WeightsUnavailableError(
        f"{v}: no weights are published for this variant (the authors released none); {entry.manual_route()}",
        hint="`mattecli weights list` shows the variants that can be downloaded",
    )


def _offline_reason(download: bool) -> str | None:
    """Why downloads are off now, or ``None`` when they are allowed."""
    if constants.MATTECLI_OFFLINE:
        return "are not downloaded yet and downloads are off (MATTECLI_OFFLINE is set)"
    if hf_offline():
        return "are not downloaded yet and downloads are off (HF_HUB_OFFLINE is set)"
    if not download:
        return "are not downloaded yet and downloads are off (--no-download)"
    return None


def verified_path(copy: LocalCopy, *, use_cache: bool = True) -> Path:
    """``copy.path`` once its sha256 (and, for hub files, size) is what is expected."""
    entry = get_entry(copy.variant)
    if copy.kind == "hub":
        hint = f"download it again with `mattecli weights pull {copy.variant} --force`"
        _check_digest(
            copy.path,
            copy.expected_sha256,
            copy.variant,
            "cached file",
            size=entry.hub.size,
            use_cache=use_cache,
            hint=hint,
        )
    elif copy.kind == "official-hub":
        _check_digest(
            copy.path,
            copy.expected_sha256,
            copy.variant,
            "cached file",
            size=hub_revision(entry)["size"],
            use_cache=use_cache,
            hint=_hub_mismatch_hint(entry),
        )
    else:
        hint = f"import it again with `{entry.import_command()}`"
        _check_digest(copy.path, copy.expected_sha256, copy.variant, "imported file", use_cache=use_cache, hint=hint)
    return copy.path


def ensure_weights(variant: str, *, download: bool = True, progress: type | None = None) -> Path:
    """A verified local weights file for ``variant``: cached hub copy, else imported copy (a pulled
    official file is one), else (when downloadable, ``download`` and not offline) :func:`pull`.

    Raises:
        WeightsNotCachedError: not local and cannot be downloaded now (offline, ``download=False``,
            every source failed).
        WeightsUnavailableError: not local and nothing publishes it (import it).
        ChecksumMismatchError: the local file is not the expected one; it is never loaded.
    """
    entry = get_entry(variant)
    copy = _local_copy(entry)
    if copy is not None:
        return verified_path(copy)
    if not entry.downloadable:
        raise not_available(entry)
    reason = _offline_reason(download)
    if reason:
        raise not_available(entry, reason)
    return pull(variant, progress=progress).path


def prefetch(variants, *, download: bool = True, progress: type | None = None) -> list[Path]:
    """:func:`ensure_weights` for each variant, in order, each once: what a run calls before its first image
    so that a missing file is fetched (or refused, offline) before any work."""
    variants = list(dict.fromkeys(variants))
    reason = _offline_reason(download)
    if reason is not None:  # name every missing file at once rather than one per run
        missing = [get_entry(v) for v in variants if not _is_local(get_entry(v))]
        offline = [e for e in missing if e.downloadable]
        if len(offline) > 1:
            names = " ".join(e.variant for e in offline)
            routes = "; ".join(e.manual_route() for e in offline)
            raise WeightsNotCachedError(
                f"{', '.join(e.variant for e in offline)} weights {reason}; run `mattecli weights pull {names}`, "
                f"or {routes}",
                hint="`mattecli weights list` shows where each variant comes from",
            )
    return [ensure_weights(v, download=download, progress=progress) for v in variants]


def _is_local(entry: CheckpointEntry) -> bool:
    return _local_copy(entry) is not None


# ----------------------------------------------------------------------------- download
@dataclass(frozen=True)
class PullResult:
    """What :func:`pull` did.

    ``source``: ``hub``, ``authors' hub`` (the authors' file on the Hub), ``cache`` (already local,
    nothing fetched) or the official link's host; ``url``: the link downloaded from;
    ``official_sha256``: the sha256 of the authors' file that was downloaded; ``first_download``:
    no checksum was known for it, so this one was recorded (trust on first use) and later downloads
    and ``weights verify`` are checked against it. For the authors' hub file, ``repo_id`` and
    ``revision`` (the commit it was fetched at) are set and ``pinned`` says whether the manifest
    pins that commit and sha256.
    """

    variant: str
    path: Path
    source: str
    url: str | None = None
    official_sha256: str | None = None
    first_download: bool = False
    repo_id: str | None = None
    revision: str | None = None
    pinned: bool = False


def pull(variant: str, *, force: bool = False, progress: type | None = None) -> PullResult:
    """Get a variant's weights from the first source that works, verified, into the HF cache.

    Sources in order: our converted copy on the Hugging Face Hub when the manifest has one
    (``hf_hub_download`` at the pinned revision, sha256 checked), then the authors' own
    ``.safetensors`` file on the Hub (``hf_hub_download`` at the pinned commit, sha256 checked;
    unpinned, at the commit its first fetch recorded, else at ``main`` once, recording the commit
    and sha256: see :func:`hub_revision`), then the manifest's official links in order (each
    fetched from its ``url`` as written: Google Drive's confirmation flow, zip archives, resumable
    transfers; see :mod:`mattecli.weights.download`), converted like ``weights import``. Links
    marked ``manual`` (Baidu Netdisk) are only named in the error. Honours
    ``HF_HOME``/``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``MATTECLI_OFFLINE``. A
    variant already local is not fetched again unless ``force``. ``progress`` is a
    tqdm-compatible class for the download bar.

    A file lock per variant makes concurrent pulls (or first uses) of one variant wait for each
    other; the second finds the first's result.

    Raises:
        WeightsUnavailableError: nothing publishes this variant (import it).
        WeightsNotCachedError: offline, or every source failed (the message lists each, then the
            manual route: the links and the ``weights import`` command).
        ChecksumMismatchError: every file downloaded differed from the pinned or first-recorded
            sha256 (never imported).
    """
    entry = get_entry(variant)
    if not entry.downloadable:
        raise not_available(entry)
    if not force:
        if entry.hub is not None:
            local = hub_copy(entry)
        else:
            local = official_hub_copy(entry) or imported_copy(entry)
        if local is not None:
            return PullResult(variant, verified_path(local), "cache")
    reason = _offline_reason(True)
    if reason is not None:
        raise not_available(entry, reason)
    tried: list[str] = []
    if entry.hub is not None:
        try:
            return PullResult(variant, _pull_hub(entry, force=force, progress=progress), "hub")
        except WeightsError as err:
            if not (entry.official_hub or entry.download_links) or isinstance(err, ChecksumMismatchError):
                raise
            tried.append(f"hub {entry.hub.repo_id}: {err.message}")
    if entry.official_hub is not None:
        try:
            return _pull_official_hub(entry, force=force, progress=progress)
        except WeightsError as err:
            if not entry.download_links or isinstance(err, ChecksumMismatchError):
                raise
            tried.append(f"hub {entry.official_hub.repo_id}: {err.message}")
    return _pull_official(entry, force=force, progress=progress, tried=tried)


def _pull_hub(entry: CheckpointEntry, *, force: bool, progress: type | None) -> Path:
    """``hf_hub_download`` of our converted copy at the pinned revision, verified."""
    hub = entry.hub
    path = _hub_download(entry, hub.repo_id, hub.filename, hub.revision, force=force, progress=progress)
    copy = LocalCopy(entry.variant, "hub", path, hub.sha256)
    return verified_path(copy, use_cache=not force)


def _hub_download(
    entry: CheckpointEntry, repo_id: str, filename: str, revision: str, *, force: bool, progress: type | None
) -> Path:
    """``hf_hub_download`` into the standard HF cache, every failure turned into one typed line.

    Raises:
        WeightsNotCachedError: offline, the hub unreachable, or a transfer error.
        WeightsUnavailableError: no such repository, revision or file on the hub.
    """
    variant = entry.variant
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=hub_cache(),
                force_download=force,
                tqdm_class=progress,
                library_name="mattecli",
                library_version=__version__,
            )
        )
    except (hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError) as err:
        offline = isinstance(err, hf_errors.OfflineModeIsEnabled) or hf_offline()
        raise not_available(
            entry,
            "are not in the cache and the Hugging Face Hub cannot be reached"
            + (" (HF_HUB_OFFLINE is set)" if offline else ""),
        ) from err
    except (
        hf_errors.RepositoryNotFoundError,
        hf_errors.RevisionNotFoundError,
        hf_errors.RemoteEntryNotFoundError,
        hf_errors.DisabledRepoError,
    ) as err:
        raise WeightsUnavailableError(
            f"{variant}: {repo_id}/{filename} at revision {revision[:12]} is not on the hub "
            f"({type(err).__name__}); run `{entry.import_command()}` instead",
            hint=entry.where_to_get(),
        ) from err
    except (hf_errors.HfHubHTTPError, hf_errors.XetDownloadError, OSError, *transport_errors()) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise not_available(entry, f"could not be downloaded ({first})") from err


# ----------------------------------------------------------------------------- the authors' hub file
def hub_revision(entry: CheckpointEntry) -> dict:
    """What is known of the authors' hub file of ``entry`` (``entry.official_hub`` must be set).

    ``{"repo_id", "requested", "commit", "sha256", "size", "pinned", "recorded"}``: ``pinned``
    when the manifest gives the full commit and the sha256; otherwise the commit and sha256 the
    first use recorded (``recorded`` True; ``commit`` is ``None`` for a file imported by hand,
    which records only its sha256), or ``None`` while nothing has been fetched yet.
    """
    src = entry.official_hub
    out = {
        "repo_id": src.repo_id,
        "requested": src.requested_revision,
        "commit": src.commit,
        "sha256": src.sha256,
        "size": src.size,
        "pinned": src.pinned,
        "recorded": False,
    }
    if src.pinned:
        return out
    record = trusted_source(entry.variant)
    if record is None:
        return out
    commit = record.get("revision")
    commit = commit if isinstance(commit, str) and HEX40.fullmatch(commit) else None
    if src.commit is not None and commit not in (None, src.commit):
        commit = None  # a record made before the manifest pinned another commit
    size = record.get("size")
    out.update(
        commit=src.commit or commit,
        sha256=src.sha256 or record["sha256"],
        size=src.size or (size if isinstance(size, int) and size > 0 else None),
        recorded=True,
    )
    return out


def _hub_mismatch_hint(entry: CheckpointEntry) -> str:
    """How to recover from an authors' hub file whose sha256 is not the expected one."""
    if entry.official_hub.pinned:
        return f"download it again with `mattecli weights pull {entry.variant} --force`"
    return (
        f"download it again with `mattecli weights pull {entry.variant} --force`; if the authors replaced "
        f"their file, delete {_trust_path(entry.variant)} and pull again"
    )


def _record_hub_file(entry: CheckpointEntry, sha256: str, size: int, *, commit: str | None, source: str) -> None:
    """Write the trust-on-first-use record of the authors' hub file (``official_sha256.json``)."""
    from datetime import datetime, timezone

    src = entry.official_hub
    record = {
        "variant": entry.variant,
        "filename": src.filename,
        "sha256": sha256,
        "size": size,
        "url": src.url(commit) if commit else None,
        "repo_id": src.repo_id,
        "revision": commit,
        "requested_revision": src.requested_revision,
        "source": source,
        "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = _trust_path(entry.variant)
    try:
        # the record's folder stays a well-formed cache repo for `hf cache scan` (nothing imported yet)
        (path.parent / "snapshots").mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    except OSError as err:
        raise _cache_error(entry.variant, err) from err


def _snapshot_commit(path: Path, filename: str) -> str | None:
    """The commit of ``snapshots/{commit}/{filename}`` in the HF cache layout, else ``None``."""
    parents = path.parents
    depth = len(Path(filename).parts)
    folder = parents[depth - 1] if len(parents) > depth else None
    if folder is None or folder.parent.name != "snapshots" or not HEX40.fullmatch(folder.name):
        return None
    return folder.name


def _pull_official_hub(entry: CheckpointEntry, *, force: bool, progress: type | None) -> PullResult:
    """``hf_hub_download`` of the authors' own file at the pinned (or first-recorded) commit, checked.

    Unpinned and never fetched: fetched at the requested revision (``main``), then the commit it
    resolved to and the file's sha256 are recorded; a file imported by hand before recorded only
    its sha256, which the download must match.
    """
    src = entry.official_hub
    known = hub_revision(entry)
    revision = known["commit"] or src.requested_revision
    path = _hub_download(entry, src.repo_id, src.filename, revision, force=force, progress=progress)
    commit = _snapshot_commit(path, src.filename) or known["commit"]
    if known["sha256"] is not None:
        verified_path(LocalCopy(entry.variant, "official-hub", path, known["sha256"]), use_cache=not force)
        digest, first = known["sha256"], False
        if not known["pinned"] and known["commit"] is None and commit is not None:
            _record_hub_file(entry, digest, path.stat().st_size, commit=commit, source="download")
    else:
        digest, first = sha256_file(path, use_cache=not force), True
        _record_hub_file(entry, digest, path.stat().st_size, commit=commit, source="download")
    return PullResult(
        entry.variant,
        path,
        "authors' hub",
        url=src.url(commit),
        official_sha256=digest,
        first_download=first,
        repo_id=src.repo_id,
        revision=commit,
        pinned=known["pinned"],
    )


# ----------------------------------------------------------------------------- official links
TRUST_FILE = "official_sha256.json"


def _trust_path(variant: str) -> Path:
    return _imports_repo(variant) / TRUST_FILE


def trusted_source(variant: str) -> dict | None:
    """The record of the first download of ``variant``'s official file (trust on first use):
    ``{"filename", "sha256", "size", "url", "recorded"}``, or ``None``."""
    try:
        record = json.loads(_trust_path(variant).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not HEX64.fullmatch(str(record.get("sha256", ""))):
        return None
    return record


def expected_source_sha256(entry: CheckpointEntry) -> tuple[str | None, str]:
    """``(sha256, where it comes from)`` of the official file (the authors' hub file, else their
    linked file): the manifest's pin, else the first download's record, else ``(None, "")``."""
    if entry.official_hub is not None and entry.official_hub.sha256:
        return entry.official_hub.sha256, "the manifest"
    f = entry.official_file
    if f is not None and f.sha256:
        return f.sha256, "the manifest"
    record = trusted_source(entry.variant)
    if record is not None:
        return record["sha256"], f"the first download ({_trust_path(entry.variant)})"
    return None, ""


def _pull_lock(variant: str):
    from filelock import FileLock

    folder = hub_cache() / ".locks" / f"models--{IMPORTS_NAMESPACE}--{variant}"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / "pull.lock"))


def _pull_official(entry: CheckpointEntry, *, force: bool, progress: type | None, tried: list[str]) -> PullResult:
    """Download the official file from the first link that gives it, check it, import it."""
    from mattecli.weights import download

    variant = entry.variant
    official = entry.official_file
    try:
        lock = _pull_lock(variant)
        lock.acquire()
    except OSError as err:
        raise _cache_error(variant, err) from err
    try:
        if not force:  # another process may have finished while we waited for the lock
            local = imported_copy(entry)
            if local is not None:
                return PullResult(variant, verified_path(local), "cache")
        folder = _imports_repo(variant) / "downloads"
        mismatch: ChecksumMismatchError | None = None
        quota: list[OfficialLink] = []
        for link in entry.download_links:
            try:
                fetched = download.fetch(
                    link.url,
                    folder,
                    official.filename,
                    progress=progress,
                    desc=f"{variant} ({link.host})",
                    expected_size=official.size,
                )
            except download.FetchError as err:
                if err.kind == "quota":
                    quota.append(link)
                tried.append(f"{link.host} {link.url}: {err.message}")
                continue
            except OSError as err:
                raise _cache_error(variant, err) from err
            try:
                return _install_download(entry, link, fetched.path)
            except ChecksumMismatchError as err:
                mismatch = err
                tried.append(f"{link.host} {link.url}: {err.message}")
            except (UnknownCheckpointError, CheckpointMismatchError, UnsafeCheckpointError) as err:
                tried.append(f"{link.host} {link.url}: the file is not a {variant} checkpoint ({err.message})")
            finally:
                fetched.path.unlink(missing_ok=True)
    finally:
        lock.release()
    if quota and len(quota) == len(tried):
        where = " or ".join(link.describe() for link in official.links)
        raise WeightsNotCachedError(
            f"Google Drive quota exceeded for {variant}: try again later, or download {official.filename} by hand "
            f"from {where} and run `{entry.import_command()}`"
            if all(link.host == "Google Drive" for link in quota)
            else f"download quota exceeded for {variant}: try again later, or {entry.manual_route()}",
            hint="Drive limits how often a shared file can be downloaded per day; a later try usually works",
        )
    if mismatch is not None:
        raise ChecksumMismatchError(
            f"{variant}: {mismatch.message}"
            if len(tried) == 1
            else f"{variant} weights could not be downloaded (tried {'; '.join(tried)}); {entry.manual_route()}",
            hint=mismatch.hint,
        )
    raise WeightsNotCachedError(
        f"{variant} weights could not be downloaded (tried {'; '.join(tried)}); {entry.manual_route()}",
        hint="behind a firewall or proxy, set HTTPS_PROXY, or fetch the file by hand and import it",
    )


def _install_download(entry: CheckpointEntry, link: OfficialLink, path: Path) -> PullResult:
    """Check a downloaded official file against the pinned / first-recorded sha256, import it, and
    record its sha256 when nothing was known (trust on first use)."""
    variant = entry.variant
    digest = sha256_file(path, use_cache=False)
    expected, where = expected_source_sha256(entry)
    if expected is not None and digest != expected:
        hint = None
        if entry.official_file.sha256 is None:
            hint = f"if the authors replaced their file, delete {_trust_path(variant)} and pull again"
        raise ChecksumMismatchError(
            f"the downloaded {path.name} has sha256 {digest}, but {where} says {expected}; it was not imported",
            hint=hint,
        )
    import_checkpoint(variant, path)
    first = expected is None
    if first:
        from datetime import datetime, timezone

        record = {
            "variant": variant,
            "filename": entry.official_file.filename,
            "sha256": digest,
            "size": path.stat().st_size,
            "url": link.url,
            "recorded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_text_atomic(_trust_path(variant), json.dumps(record, indent=2) + "\n")
    copy = imported_copy(entry)
    return PullResult(variant, copy.path, link.host, link.url, digest, first)


def _cache_error(variant: str, err: OSError) -> WeightsCacheError:
    """An unusable cache location or a full disk, in one line."""
    reason = err.strerror or str(err)
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return WeightsCacheError(
        f"cannot write {variant} weights into the Hugging Face cache {hub_cache()}: {reason}{where}",
        hint="free some disk space, or point HF_HOME / HF_HUB_CACHE at a writable folder",
    )


# ----------------------------------------------------------------------------- import
@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_checkpoint` wrote.

    ``official_match`` is ``True``/``False`` when the manifest knows the official file's sha256
    (the source matched it or not), ``None`` when it does not. For a variant whose source is the
    authors' hub file, a source that is not the pinned (or first-recorded) file is refused, so
    ``official_match`` is ``True`` or, when nothing was known and this file's sha256 was recorded
    now (trust on first use, ``recorded``), ``None``.
    """

    variant: str
    path: Path
    sha256: str
    size: int
    source: Path
    source_sha256: str
    source_format: str
    tensors: int
    official_match: bool | None
    recorded: bool = False


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path`` (nothing left on failure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _reproducible_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with a canonical header (sorted keys), so that converting the same file
    twice, anywhere, gives the same sha256 (safetensors itself writes metadata in hash-map order)."""
    from safetensors.torch import save

    from mattecli.io import canonical_safetensors

    return canonical_safetensors(save(tensors, metadata=metadata))


def _store_import(entry: CheckpointEntry, write: Callable[[Path], None]) -> tuple[Path, str, int]:
    """Write a file into the imports cache repo (content-addressed snapshot, ``refs/main``)."""
    repo = _imports_repo(entry.variant)
    tmp: Path | None = None
    try:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "snapshots").mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".import-", suffix=".tmp", dir=repo)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        digest = sha256_file(tmp, use_cache=False)
        size = tmp.stat().st_size
        snapshot = repo / "snapshots" / digest
        snapshot.mkdir(exist_ok=True)
        final = snapshot / entry.filename
        os.replace(tmp, final)
        sha256_file(final)  # remember the verified hash for this process
        write_text_atomic(repo / "refs" / "main", digest)
    except OSError as err:
        raise _cache_error(entry.variant, err) from err
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    for old in (repo / "snapshots").iterdir():
        if old.name != digest and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final, digest, size


def import_checkpoint(variant: str, file: str | Path, *, architecture: Architecture | None = None) -> ImportResult:
    """Convert an official checkpoint (or check an already converted safetensors file) and store
    it in the cache where :func:`load_model` finds it.

    The file is read safely (see :func:`read_checkpoint`), unwrapped, stripped of ``module.``,
    remapped by the variant's registered key mapping, and checked key by key and shape by shape
    against the module. The result is a ``.safetensors`` file whose metadata records the variant,
    the source file's name and sha256, the converter and mattecli versions.

    For a variant whose source is the authors' hub file (``official_hub``), the file must be the
    one the manifest pins, or the one first fetched or imported (its sha256, or a mattecli
    conversion recording it as its source); when nothing is known yet its sha256 is recorded.

    Raises:
        UnknownCheckpointError: unknown variant, or a file that is not a checkpoint of it.
        WeightsUnavailableError: the variant's method is not implemented yet.
        UnsafeCheckpointError: a pickle that references anything but tensors and containers.
        CheckpointMismatchError: missing / unexpected keys or wrong shapes (listed).
        ChecksumMismatchError: not the authors' hub file that is pinned or recorded.
    """
    entry = get_entry(variant)
    arch = architecture or get_architecture(variant)
    source = Path(file).expanduser()
    if not source.is_file():
        raise UnknownCheckpointError(f"{source} does not exist or is not a file", hint=entry.where_to_get())
    source_sha = sha256_file(source)
    hub_expected = _check_hub_source(entry, source, source_sha) if entry.official_hub is not None else None
    layout = layout_of(arch.build())
    converted = convert_file(source, entry, arch, layout)

    if converted.verbatim:

        def write(tmp: Path) -> None:
            shutil.copyfile(source, tmp)
    else:
        meta = {
            "format": "pt",
            f"{META}variant": variant,
            f"{META}source_filename": source.name,
            f"{META}source_sha256": converted.metadata.get(f"{META}source_sha256", source_sha),
            f"{META}source_format": converted.source_format,
            f"{META}key_mapping": entry.conversion.key_mapping,
            f"{META}converter_version": str(CONVERTER_VERSION),
            f"{META}mattecli_version": __version__,
        }
        tensors = {k: v.clone() for k, v in converted.tensors.items()}  # no shared storage

        def write(tmp: Path) -> None:
            tmp.write_bytes(_reproducible_safetensors(tensors, meta))

    path, digest, size = _store_import(entry, write)
    recorded = False
    if entry.official_hub is not None:
        match = True if hub_expected is not None else None
        if hub_expected is None:
            _record_hub_file(entry, source_sha, source.stat().st_size, commit=None, source="imported by hand")
            recorded = True
    else:
        official = [f.sha256 for f in (entry.official.files if entry.official else ()) if f.sha256]
        match = (source_sha in official) if official else None
    return ImportResult(
        variant,
        path,
        digest,
        size,
        source,
        source_sha,
        converted.source_format,
        len(converted.tensors),
        match,
        recorded,
    )


def _check_hub_source(entry: CheckpointEntry, source: Path, source_sha: str) -> str | None:
    """The sha256 an import of the authors' hub file must have (pinned or recorded; ``None`` when
    nothing is known yet); raises :class:`ChecksumMismatchError` when ``source`` is another file.
    A mattecli conversion of the expected file (its ``mattecli.source_sha256``) is that file too."""
    expected, where = expected_source_sha256(entry)
    if expected is None or source_sha == expected:
        return expected
    if _recorded_source(source) == expected:
        return expected
    hint = None if entry.official_hub.pinned else _hub_mismatch_hint(entry).split("; ", 1)[-1]
    raise ChecksumMismatchError(
        f"{entry.variant}: {source} has sha256 {source_sha}, but {where} says {expected} "
        f"({entry.official_hub.repo_id}/{entry.official_hub.filename}); it was not imported",
        hint=hint or f"download the authors' file from {entry.official_hub.url()}",
    )


def _recorded_source(path: Path) -> str | None:
    """The ``mattecli.source_sha256`` a converted safetensors file records, if any."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get(f"{META}source_sha256")
    except Exception:  # noqa: BLE001 - not a safetensors file: no recorded source
        return None


# ----------------------------------------------------------------------------- verify
def verify(variant: str | None = None) -> list[LocalCopy]:
    """Re-hash every local file (of one variant, or all) and report each (``ok`` set).

    Raises:
        WeightsNotCachedError: ``variant`` is given and has no local file.
    """
    results = []
    for st in status(variant):
        for copy in (st.hub, st.official_hub, st.imported):
            if copy is not None:
                checked = _with_ok(copy, check=True, force=True)
                if checked.ok and checked.kind == "imported":
                    checked = _check_source(st.entry, checked)
                results.append(checked)
    if variant is not None and not results:
        raise not_available(get_entry(variant))
    return results


def _check_source(entry: CheckpointEntry, copy: LocalCopy) -> LocalCopy:
    """An imported file whose recorded source (its ``mattecli.source_sha256``) is not the official
    file the manifest pins, or not the one first downloaded, fails verification."""
    expected, where = expected_source_sha256(entry)
    if expected is None:
        return copy
    source = _recorded_source(copy.path)
    if source == expected:
        return copy
    problem = (
        f"converted from a file with sha256 {source}, not the official one ({expected}, from {where})"
        if source
        else "records no source sha256"
    )
    return LocalCopy(copy.variant, copy.kind, copy.path, copy.expected_sha256, False, problem)


# ----------------------------------------------------------------------------- loading
def load_model(
    variant: str,
    device: str | torch.device = "cpu",
    weights_file: str | Path | None = None,
    *,
    download: bool = True,
    progress: type | None = None,
    architecture: Architecture | None = None,
) -> nn.Module:
    """Build ``variant``'s network and load its weights strictly; the one way model code gets weights.

    Args:
        variant: manifest variant, e.g. ``"sim-comp1k"``.
        device: where to put the module (``"cpu"``, ``"cuda:0"``, a ``torch.device``).
        weights_file: ``--weights FILE`` override for local experiments: a converted safetensors
            file or an official checkpoint, checked key by key like an import (but not against the
            manifest's sha256).
        download: allow :func:`pull` when the weights are not local.
        progress: tqdm-compatible class for a download bar.
        architecture: the variant's network and key mapping (a method's declaration); default
            the one registered for ``variant``.

    Returns:
        The module in eval mode on ``device``.

    Raises:
        WeightsUnavailableError, WeightsNotCachedError, ChecksumMismatchError,
        CheckpointMismatchError, UnknownCheckpointError, UnsafeCheckpointError.
    """
    entry = get_entry(variant)
    arch = architecture or get_architecture(variant)
    if weights_file is not None:
        source = Path(weights_file).expanduser()
        if not source.is_file():
            raise UnknownCheckpointError(f"--weights {source} does not exist or is not a file")
    else:
        source = ensure_weights(variant, download=download, progress=progress)
    model = arch.build()
    layout = layout_of(model)
    if weights_file is not None:
        tensors = convert_file(source, entry, arch, layout).tensors
    else:
        from safetensors.torch import load_file

        tensors = conform(load_file(str(source)), layout, variant, source)
    load_into(model, tensors, layout, variant, source)
    return model.to(device).eval()
