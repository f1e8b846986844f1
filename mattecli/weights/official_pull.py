"""Pulls from the authors' own links: download, check, convert, in order of the manifest's links.

Each link is fetched from its ``url`` exactly as written (:mod:`mattecli.weights.download`: Google
Drive's confirmation form, zip archives, resumed transfers), checked against the sha256 the
manifest pins or the first download recorded (:mod:`mattecli.weights.trust`), then converted like
``weights import``. A file lock per variant makes two processes pulling (or first-using) one
variant wait for each other; the second finds the first's result.
"""

from __future__ import annotations

from pathlib import Path

from mattecli.errors import (
    CheckpointMismatchError,
    ChecksumMismatchError,
    UnknownCheckpointError,
    UnsafeCheckpointError,
    WeightsNotCachedError,
)
from mattecli.weights.imports import import_checkpoint
from mattecli.weights.local import PullResult, imported_copy, verified_path
from mattecli.weights.manifest import CheckpointEntry, OfficialLink
from mattecli.weights.store import cache_error, imports_repo, pull_lock, sha256_file, trust_path
from mattecli.weights.trust import expected_source_sha256, record_linked_file

__all__ = ["pull_official"]


def pull_official(entry: CheckpointEntry, *, force: bool, progress: type | None, tried: list[str]) -> PullResult:
    """Download ``entry``'s official file from the first link that gives it, check it, import it.

    ``tried`` lists the sources that failed before (each ``"<where>: <why>"``); the links that fail
    here are added to it and the error names them all. ``progress`` is a tqdm-compatible bar class.

    Raises:
        WeightsNotCachedError: every link failed (a download quota says so, with when to retry).
        ChecksumMismatchError: every file downloaded differed from the pinned or recorded sha256.
        WeightsCacheError: the cache cannot be written.
    """
    variant = entry.variant
    try:
        lock = pull_lock(variant)
        lock.acquire()
    except OSError as err:
        raise cache_error(variant, err) from err
    try:
        if not force:  # another process may have finished while we waited for the lock
            local = imported_copy(entry)
            if local is not None:
                return PullResult(variant, verified_path(local), "cache")
        result, quota, mismatch = _try_links(entry, progress, tried)
        if result is not None:
            return result
    finally:
        lock.release()
    raise _all_failed(entry, tried, quota, mismatch)


def _try_links(
    entry: CheckpointEntry, progress: type | None, tried: list[str]
) -> tuple[PullResult | None, list[OfficialLink], ChecksumMismatchError | None]:
    """``(result, links refused for a quota, last checksum mismatch)``: the first link whose file
    imports gives ``result``; each one that fails is added to ``tried``."""
    from mattecli.weights import download

    variant, official = entry.variant, entry.official_file
    folder = imports_repo(variant) / "downloads"
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
            raise cache_error(variant, err) from err
        try:
            return _install_download(entry, link, fetched.path), quota, mismatch
        except ChecksumMismatchError as err:
            mismatch = err
            tried.append(f"{link.host} {link.url}: {err.message}")
        except (UnknownCheckpointError, CheckpointMismatchError, UnsafeCheckpointError) as err:
            tried.append(f"{link.host} {link.url}: the file is not a {variant} checkpoint ({err.message})")
        finally:
            fetched.path.unlink(missing_ok=True)
    return None, quota, mismatch


def _all_failed(
    entry: CheckpointEntry, tried: list[str], quota: list[OfficialLink], mismatch: ChecksumMismatchError | None
) -> Exception:
    """The one error when no link gave the file: a quota, a checksum mismatch, or everything tried."""
    variant, official = entry.variant, entry.official_file
    if quota and len(quota) == len(tried):
        where = " or ".join(link.describe() for link in official.links)
        return WeightsNotCachedError(
            f"Google Drive quota exceeded for {variant}: try again later, or download {official.filename} by hand "
            f"from {where} and run `{entry.import_command()}`"
            if all(link.host == "Google Drive" for link in quota)
            else f"download quota exceeded for {variant}: try again later, or {entry.manual_route()}",
            hint="Drive limits how often a shared file can be downloaded per day; a later try usually works",
        )
    if mismatch is not None:
        return ChecksumMismatchError(
            f"{variant}: {mismatch.message}"
            if len(tried) == 1
            else f"{variant} weights could not be downloaded (tried {'; '.join(tried)}); {entry.manual_route()}",
            hint=mismatch.hint,
        )
    return WeightsNotCachedError(
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
            hint = f"if the authors replaced their file, delete {trust_path(variant)} and pull again"
        raise ChecksumMismatchError(
            f"the downloaded {path.name} has sha256 {digest}, but {where} says {expected}; it was not imported",
            hint=hint,
        )
    import_checkpoint(variant, path)
    first = expected is None
    if first:
        record_linked_file(entry, link, path, digest)
    copy = imported_copy(entry)
    return PullResult(variant, copy.path, link.host, link.url, digest, first)
