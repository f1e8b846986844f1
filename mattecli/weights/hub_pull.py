"""Pulls from the Hugging Face Hub: our converted copy of a variant, or the authors' own file.

Both go through ``hf_hub_download`` into the standard HF cache (``HF_HOME``/``HF_HUB_CACHE``,
``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` honoured; huggingface_hub's own locking and resume), at a
pinned revision, and are checked against the expected sha256 and size before they are returned.
Only ``.safetensors`` files are ever fetched from the Hub (the manifest names no pickle there).
"""

from __future__ import annotations

from pathlib import Path

from mattecli import __version__
from mattecli.errors import WeightsError, WeightsUnavailableError
from mattecli.hub import HubFailure, call_hub
from mattecli.weights.local import LocalCopy, PullResult, not_available, verified_path
from mattecli.weights.manifest import CheckpointEntry
from mattecli.weights.store import hub_cache, sha256_file, snapshot_commit
from mattecli.weights.trust import hub_revision, record_hub_file

__all__ = ["hub_download", "pull_hub", "pull_official_hub"]


def hub_download(
    entry: CheckpointEntry, repo_id: str, filename: str, revision: str, *, force: bool, progress: type | None
) -> Path:
    """``hf_hub_download`` of ``repo_id/filename`` at ``revision`` into the standard HF cache, every
    failure turned into one typed line; ``progress`` is a tqdm-compatible bar class (or ``None``).

    Raises:
        WeightsNotCachedError: offline, the hub unreachable, or a transfer error.
        WeightsUnavailableError: no such repository, revision or file on the hub.
    """
    from huggingface_hub import hf_hub_download

    def error(failure: HubFailure) -> WeightsError:
        if failure.kind == "unreachable":
            return not_available(
                entry,
                "are not in the cache and the Hugging Face Hub cannot be reached"
                + (" (HF_HUB_OFFLINE is set)" if failure.offline else ""),
            )
        if failure.kind == "missing":
            return WeightsUnavailableError(
                f"{entry.variant}: {repo_id}/{filename} at revision {revision[:12]} is not on the hub "
                f"({failure.detail}); run `{entry.import_command()}` instead",
                hint=entry.where_to_get(),
            )
        return not_available(entry, f"could not be downloaded ({failure.detail})")

    def download() -> Path:
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

    return call_hub(download, error)


def pull_hub(entry: CheckpointEntry, *, force: bool, progress: type | None) -> Path:
    """Our converted copy of ``entry`` (``entry.hub`` must be set) at the pinned revision, verified.

    Raises:
        WeightsNotCachedError, WeightsUnavailableError: as :func:`hub_download`.
        ChecksumMismatchError: the file is not the pinned one.
    """
    hub = entry.hub
    path = hub_download(entry, hub.repo_id, hub.filename, hub.revision, force=force, progress=progress)
    copy = LocalCopy(entry.variant, "hub", path, hub.sha256)
    return verified_path(copy, use_cache=not force)


def pull_official_hub(entry: CheckpointEntry, *, force: bool, progress: type | None) -> PullResult:
    """The authors' own file of ``entry`` (``entry.official_hub`` must be set) at the pinned (or
    first-recorded) commit, checked.

    Unpinned and never fetched: fetched at the requested revision (``main``), then the commit it
    resolved to and the file's sha256 are recorded; a file imported by hand before recorded only
    its sha256, which the download must match.

    Raises:
        WeightsNotCachedError, WeightsUnavailableError: as :func:`hub_download`.
        ChecksumMismatchError: not the pinned or recorded file.
        WeightsCacheError: the record cannot be written.
    """
    src = entry.official_hub
    known = hub_revision(entry)
    revision = known["commit"] or src.requested_revision
    path = hub_download(entry, src.repo_id, src.filename, revision, force=force, progress=progress)
    commit = snapshot_commit(path, src.filename) or known["commit"]
    if known["sha256"] is not None:
        verified_path(LocalCopy(entry.variant, "official-hub", path, known["sha256"]), use_cache=not force)
        digest, first = known["sha256"], False
        if not known["pinned"] and known["commit"] is None and commit is not None:
            record_hub_file(entry, digest, path.stat().st_size, commit=commit, source="download")
    else:
        digest, first = sha256_file(path, use_cache=not force), True
        record_hub_file(entry, digest, path.stat().st_size, commit=commit, source="download")
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
