"""``weights pull``: a variant's weights from the first source that works, verified, into the HF cache."""

from __future__ import annotations

from mattecli.errors import ChecksumMismatchError, WeightsError
from mattecli.weights.hub_pull import pull_hub, pull_official_hub
from mattecli.weights.local import (
    PullResult,
    hub_copy,
    imported_copy,
    not_available,
    official_hub_copy,
    offline_reason,
    verified_path,
)
from mattecli.weights.manifest import get_entry
from mattecli.weights.official_pull import pull_official

__all__ = ["pull"]


def pull(variant: str, *, force: bool = False, progress: type | None = None) -> PullResult:
    """Get a variant's weights from the first source that works, verified, into the HF cache.

    Sources in order: our converted copy on the Hugging Face Hub when the manifest has one
    (``hf_hub_download`` at the pinned revision, sha256 checked), then the authors' own
    ``.safetensors`` file on the Hub (``hf_hub_download`` at the pinned commit, sha256 checked;
    unpinned, at the commit its first fetch recorded, else at ``main`` once, recording the commit
    and sha256: see :func:`~mattecli.weights.trust.hub_revision`), then the manifest's official links
    in order (each fetched from its ``url`` as written: Google Drive's confirmation flow, zip
    archives, resumable transfers; see :mod:`mattecli.weights.download`), converted like ``weights
    import``. Links marked ``manual`` (Baidu Netdisk) are only named in the error. Honours
    ``HF_HOME``/``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and ``MATTECLI_OFFLINE``. A
    variant already local is not fetched again unless ``force``. ``progress`` is a
    tqdm-compatible class for the download bar.

    Raises:
        WeightsUnavailableError: nothing publishes this variant (import it).
        WeightsNotCachedError: offline, or every source failed (the message lists each, then the
            manual route: the links and the ``weights import`` command).
        ChecksumMismatchError: every file downloaded differed from the pinned or first-recorded
            sha256 (never imported).
        WeightsCacheError: the cache cannot be written.
    """
    entry = get_entry(variant)
    if not entry.downloadable:
        raise not_available(entry)
    if not force:
        local = hub_copy(entry) if entry.hub is not None else official_hub_copy(entry) or imported_copy(entry)
        if local is not None:
            return PullResult(variant, verified_path(local), "cache")
    reason = offline_reason(True)
    if reason is not None:
        raise not_available(entry, reason)
    tried: list[str] = []
    if entry.hub is not None:
        try:
            return PullResult(variant, pull_hub(entry, force=force, progress=progress), "hub")
        except WeightsError as err:
            if not (entry.official_hub or entry.download_links) or isinstance(err, ChecksumMismatchError):
                raise
            tried.append(f"hub {entry.hub.repo_id}: {err.message}")
    if entry.official_hub is not None:
        try:
            return pull_official_hub(entry, force=force, progress=progress)
        except WeightsError as err:
            if not entry.download_links or isinstance(err, ChecksumMismatchError):
                raise
            tried.append(f"hub {entry.official_hub.repo_id}: {err.message}")
    return pull_official(entry, force=force, progress=progress, tried=tried)
