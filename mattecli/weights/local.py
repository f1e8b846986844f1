"""The local copies of a variant's weights: which exist, which one is used, their status and verification.

A variant can have three copies in the Hugging Face cache (:class:`LocalCopy`): our converted
copy pulled from the Hub (``hub``), the authors' own file pulled from their hub repository
(``official-hub``), and a file converted by ``weights import`` or by a pull of the authors'
links (``imported``). :func:`mattecli.weights.load.load_model` uses the first that exists, in
that order, and only once its sha256 is the expected one (:func:`verified_path`). Nothing here
downloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mattecli import constants
from mattecli.errors import WeightsError, WeightsNotCachedError, WeightsUnavailableError
from mattecli.hub import hf_offline
from mattecli.manifests import HEX64
from mattecli.weights.checkpoints import get_architecture
from mattecli.weights.manifest import CheckpointEntry, get_entry, load_manifest
from mattecli.weights.store import check_digest, hub_cache, imports_repo, known_digest, sha256_file
from mattecli.weights.trust import expected_source_sha256, hub_mismatch_hint, hub_revision, recorded_source

__all__ = [
    "LocalCopy",
    "PullResult",
    "WeightsStatus",
    "hub_copy",
    "imported_copy",
    "is_local",
    "local_copy",
    "local_path",
    "not_available",
    "offline_reason",
    "official_hub_copy",
    "size_of",
    "status",
    "verified_path",
    "verify",
]


@dataclass(frozen=True)
class LocalCopy:
    """A weights file on disk: ``kind`` is ``hub`` (our converted copy, pulled), ``official-hub``
    (the authors' own file, pulled from their hub repo) or ``imported``.

    ``ok`` is ``True``/``False`` once the file has been hashed in this process, else ``None``;
    ``problem`` says why verification failed beyond the file's own sha256.
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


@dataclass(frozen=True)
class PullResult:
    """What :func:`mattecli.weights.pull.pull` did.

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


# ----------------------------------------------------------------------------- the copies
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
    repo = imports_repo(entry.variant)
    try:
        ref = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    if not HEX64.fullmatch(ref):
        return None
    path = repo / "snapshots" / ref / entry.filename
    return LocalCopy(entry.variant, "imported", path, ref) if path.is_file() else None


def local_copy(entry: CheckpointEntry) -> LocalCopy | None:
    """The copy :func:`~mattecli.weights.load.load_model` uses: our hub copy, the authors' hub file,
    else an imported one (no hashing)."""
    return hub_copy(entry) or official_hub_copy(entry) or imported_copy(entry)


def is_local(entry: CheckpointEntry) -> bool:
    """Whether ``entry`` has a local copy (not hashed)."""
    return local_copy(entry) is not None


def _with_ok(copy: LocalCopy | None, *, check: bool, force: bool = False) -> LocalCopy | None:
    if copy is None:
        return None
    if check:
        digest = sha256_file(copy.path, use_cache=not force)
    else:
        digest = known_digest(copy.path)
    if digest is None:
        return copy
    return LocalCopy(copy.variant, copy.kind, copy.path, copy.expected_sha256, digest == copy.expected_sha256)


def verified_path(copy: LocalCopy, *, use_cache: bool = True) -> Path:
    """``copy.path`` once its sha256 (and, for hub files, size) is what is expected.

    Raises:
        ChecksumMismatchError: it is not (the hint says how to fetch or import it again).
    """
    entry = get_entry(copy.variant)
    if copy.kind == "hub":
        hint = f"download it again with `mattecli weights pull {copy.variant} --force`"
        check_digest(
            copy.path,
            copy.expected_sha256,
            copy.variant,
            "cached file",
            size=entry.hub.size,
            use_cache=use_cache,
            hint=hint,
        )
    elif copy.kind == "official-hub":
        check_digest(
            copy.path,
            copy.expected_sha256,
            copy.variant,
            "cached file",
            size=hub_revision(entry)["size"],
            use_cache=use_cache,
            hint=hub_mismatch_hint(entry),
        )
    else:
        hint = f"import it again with `{entry.import_command()}`"
        check_digest(copy.path, copy.expected_sha256, copy.variant, "imported file", use_cache=use_cache, hint=hint)
    return copy.path


# ----------------------------------------------------------------------------- not local
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


def offline_reason(download: bool) -> str | None:
    """Why downloads are off now (``MATTECLI_OFFLINE``, ``HF_HUB_OFFLINE``, ``download=False``), as
    the end of a :func:`not_available` message, or ``None`` when they are allowed."""
    if constants.MATTECLI_OFFLINE:
        return "are not downloaded yet and downloads are off (MATTECLI_OFFLINE is set)"
    if hf_offline():
        return "are not downloaded yet and downloads are off (HF_HUB_OFFLINE is set)"
    if not download:
        return "are not downloaded yet and downloads are off (--no-download)"
    return None


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
        """The copy :func:`~mattecli.weights.load.load_model` would use."""
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
    already computed in this process count).

    Raises:
        UnknownCheckpointError: ``variant`` is not in the manifest.
    """
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
    """Path of the file :func:`~mattecli.weights.load.load_model` would use (no download, no hashing).

    Raises:
        WeightsNotCachedError: neither pulled nor imported (``WeightsUnavailableError`` when unpublished).
    """
    entry = get_entry(variant)
    copy = local_copy(entry)
    if copy is None:
        raise not_available(entry)
    return copy.path


# ----------------------------------------------------------------------------- verify
def verify(variant: str | None = None) -> list[LocalCopy]:
    """Re-hash every local file (of one variant, or all) and report each (``ok`` set).

    An imported file also fails when its recorded source is not the official file the manifest
    pins, or not the one first downloaded (``problem`` says so).

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
    source = recorded_source(copy.path)
    if source == expected:
        return copy
    problem = (
        f"converted from a file with sha256 {source}, not the official one ({expected}, from {where})"
        if source
        else "records no source sha256"
    )
    return LocalCopy(copy.variant, copy.kind, copy.path, copy.expected_sha256, False, problem)
