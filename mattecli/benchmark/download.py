"""Getting a benchmark dataset into its default folder: fetching the public ones from the Hub, and
explaining the others.

:func:`resolve` (bench's entry point) returns the status of a dataset's default folder
(:mod:`mattecli.benchmark.store`), fetched first when it is missing and has a Hub copy, and refuses
an incomplete copy unless asked. :func:`fetch` gets a set that a licence allows to be mirrored from
its Hugging Face Hub dataset repository at the pinned revision (``hf_hub_download``: standard HF
cache, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` honoured, a tqdm-compatible ``progress`` class for the
bars), unpacks the parquet rows (:mod:`mattecli.benchmark.parquet`) into a temporary folder beside
the target, checks the row count, writes the marker (:data:`mattecli.benchmark.store.MARKER`:
repository, resolved commit, licence, files) and renames the folder into place, all under a file
lock, so an interrupted download never looks complete and two processes never unpack over each
other. Sets that cannot be redistributed raise a one-line :class:`~mattecli.errors.DatasetError`
saying where to request them, which folder to use and which layout works. Nothing here prints.

Downloads are off when :func:`mattecli.constants.offline` says so (``MATTECLI_OFFLINE``,
``HF_HUB_OFFLINE``). huggingface_hub's failures are translated once (:func:`mattecli.hub.call_hub`).
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from mattecli import __version__, constants
from mattecli.benchmark.datasets import DATASETS
from mattecli.benchmark.manifest import DatasetEntry, get_entry
from mattecli.benchmark.store import ENV_DATASETS, MARKER, MARKER_FORMAT, DatasetStatus, check, datasets_root, location
from mattecli.errors import DatasetError, OutputError
from mattecli.hub import HubFailure, call_hub
from mattecli.manifests import HEX40

__all__ = ["DEFAULT_BRANCH", "resolve", "fetch"]

#: what an unpinned Hub copy is fetched at (resolved to its commit, which is recorded)
DEFAULT_BRANCH = "main"


# ----------------------------------------------------------------------------- messages
def _where_to_put(st: DatasetStatus) -> str:
    e = st.entry
    text = f"put {e.layout} in {st.path}"
    if e.backgrounds is not None:
        text += f", and {e.backgrounds.name} ({e.backgrounds.url}) in {st.path / e.backgrounds.folder}"
    return text


def _not_downloadable(st: DatasetStatus, lead: str) -> DatasetError:
    """The one-line error for a dataset that is not local and will not be fetched now."""
    e = st.entry
    if e.official.access == "request":
        return DatasetError(
            f"{lead} and cannot be downloaded ({e.license}): request it at {e.official.url} ({e.official.how}), "
            f"then {_where_to_put(st)}; or pass --root DIR"
        )
    return DatasetError(
        f"{lead} and has no Hub copy to fetch: download {e.official.how} ({e.official.url}, {e.license}), "
        f"then {_where_to_put(st)}; or pass --root DIR"
    )


def _offline_reason(no_download: bool) -> str:
    return "--no-download" if no_download else "MATTECLI_OFFLINE or HF_HUB_OFFLINE is set"


def _incomplete_error(st: DatasetStatus) -> DatasetError:
    e = st.entry
    what = f"{st.found} of {st.expected} images" if st.found is not None else st.problem
    if st.state == "mismatch":
        what = f"{st.found} images where the published test set has {st.expected}"
    if st.source:
        fix = f"run `{e.download_command} --force` to fetch it again"
    else:
        fix = _where_to_put(st)
    tail = "; or pass --allow-incomplete to score only what is there" if st.found is not None else ""
    return DatasetError(f"{st.title} in {st.path} is {st.state}: {what}; {fix}{tail}")


# ----------------------------------------------------------------------------- resolve (bench's entry point)
def resolve(
    name: str,
    *,
    download: bool = True,
    allow_incomplete: bool = False,
    progress: type | None = None,
    unpack_progress: Callable[[int, int], None] | None = None,
    options: dict | None = None,
) -> DatasetStatus:
    """The status of ``name`` in its default folder, fetched first when missing and downloadable.

    Args:
        options: extra :func:`mattecli.benchmark.datasets.load_dataset` arguments (``layout``, ``bg_dir``).
        download: fetch a missing dataset that has a Hub copy (``--no-download`` is False);
            downloads are also off when :func:`mattecli.constants.offline` is true.
        allow_incomplete: return an incomplete (or larger) copy instead of refusing it.
        progress: tqdm-compatible class for the download bars.
        unpack_progress: called with ``(rows, total)`` while unpacking.

    Raises:
        DatasetError: not local and not fetched (the one line says how to get it), or not
            complete (found vs expected count) and ``allow_incomplete`` is False.
    """
    entry = get_entry(name)
    st = check(name, entry=entry, options=options)
    if st.state == "complete":
        return st
    if st.state == "missing":
        if not entry.downloadable:
            raise _not_downloadable(st, f"{st.title} is not in {st.path}")
        if not download or constants.offline():
            raise DatasetError(
                f"{st.title} ({name}) is not in {st.path} and downloads are off ({_offline_reason(not download)}); "
                f"run `{entry.download_command}` while online, or pass --root DIR"
            )
        st, _ = fetch(name, progress=progress, unpack_progress=unpack_progress)
        return st
    if allow_incomplete and st.found:
        return st
    raise _incomplete_error(st)


# ----------------------------------------------------------------------------- fetch
def _hub_call(entry: DatasetEntry, revision: str, what: str, call: Callable):
    """Run one huggingface_hub call, turning its errors into one-line DatasetErrors."""
    hub = entry.hub
    assert hub is not None

    def error(failure: HubFailure) -> DatasetError:
        if failure.kind == "unreachable":
            return DatasetError(
                f"could not download {entry.name} ({what}): the Hugging Face Hub cannot be reached; "
                f"run `{entry.download_command}` again when online"
            )
        if failure.kind == "missing":
            return DatasetError(
                f"{entry.name}: {hub.repo_id} at revision {revision[:12]} has no {what} on the Hub "
                f"({failure.detail}); {entry.official.how} ({entry.official.url}) instead"
            )
        return DatasetError(f"could not download {entry.name} ({what}): {failure.detail}")

    return call_hub(call, error)


def _resolve_commit(entry: DatasetEntry, revision: str) -> str:
    from huggingface_hub import HfApi

    if HEX40.fullmatch(revision):
        return revision
    hub = entry.hub
    api = HfApi(library_name="mattecli", library_version=__version__)
    info = _hub_call(
        entry, revision, f"revision {revision!r}", lambda: api.dataset_info(hub.repo_id, revision=revision)
    )
    if not info.sha:
        raise DatasetError(f"{entry.name}: the Hub did not resolve revision {revision!r} of {hub.repo_id} to a commit")
    return info.sha


def _hub_files(entry: DatasetEntry, commit: str) -> list[str]:
    """The repository files to fetch: the manifest's names, or the files its patterns match at ``commit``."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    hub = entry.hub
    if not any(ch in pattern for pattern in hub.files for ch in "*?["):
        return list(hub.files)
    api = HfApi(library_name="mattecli", library_version=__version__)
    tree = _hub_call(
        entry, commit, "file listing",
        lambda: [f.path for f in api.list_repo_tree(hub.repo_id, repo_type="dataset", revision=commit, recursive=True)
                 if isinstance(f, RepoFile)],
    )  # fmt: skip
    names = sorted(p for p in tree if any(fnmatch.fnmatchcase(p, pattern) for pattern in hub.files))
    if not names:
        raise DatasetError(
            f"{entry.name}: no file of {hub.repo_id}@{commit[:12]} matches {', '.join(hub.files)} "
            f"(it has {len(tree)} files)"
        )
    return names


def _download(entry: DatasetEntry, filename: str, commit: str, progress: type | None) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(
        _hub_call(
            entry, commit, filename,
            lambda: hf_hub_download(
                entry.hub.repo_id, filename, repo_type="dataset", revision=commit, tqdm_class=progress,
                library_name="mattecli", library_version=__version__,
            ),
        )
    )  # fmt: skip


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(
            f"{path}: cannot create the datasets folder ({err.strerror or err})",
            hint=f"point {ENV_DATASETS} at a writable folder",
        ) from err


def _install(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` folder to ``target``, replacing a previous copy made by :func:`fetch`."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _unpack(
    entry: DatasetEntry,
    files: dict[str, Path],
    tmp: Path,
    revisions: tuple[str, str],
    progress: Callable[[int, int], None] | None,
) -> None:
    """Unpack the downloaded ``files`` (repository path -> local file) into ``tmp``, check the row count,
    write the marker (``revisions``: the commit and the revision asked for) and check the copy loads."""
    from mattecli import io
    from mattecli.benchmark.parquet import unpack_parquet

    hub, (commit, rev) = entry.hub, revisions
    count = unpack_parquet(list(files.values()), tmp, hub.columns, hub.unpack, progress=progress)
    if count != entry.size.images:
        raise DatasetError(
            f"{hub.repo_id}@{commit[:12]} holds {count} rows but {DATASETS[entry.name].title} has "
            f"{entry.size.images} test images; nothing was installed"
        )
    marker = {
        "format": MARKER_FORMAT,
        "name": entry.name,
        "repo_id": hub.repo_id,
        "revision": commit,
        "requested_revision": rev,
        "license": hub.license,
        "files": [{"path": f, "size": p.stat().st_size} for f, p in files.items()],
        "images": count,
        "tool": {"name": "mattecli", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    io.atomic_write_bytes(tmp / MARKER, (json.dumps(marker, indent=2) + "\n").encode("utf-8"))
    unpacked = check(entry.name, tmp, entry)
    if not unpacked.complete:
        raise DatasetError(f"{entry.name}: the unpacked copy does not load: {unpacked.problem}")


def fetch(
    name: str,
    *,
    revision: str | None = None,
    force: bool = False,
    progress: type | None = None,
    unpack_progress: Callable[[int, int], None] | None = None,
) -> tuple[DatasetStatus, bool]:
    """Download ``name`` from its Hub copy and unpack it into its default folder.

    Args:
        revision: a commit (or branch/tag, resolved to its commit, which is recorded) instead of
            the manifest's pinned revision; needed when the manifest pins none.
        force: download and unpack again over a complete copy made by :func:`fetch`.
        progress: tqdm-compatible class for the download bars (``hf_hub_download(tqdm_class=)``).
        unpack_progress: called with ``(rows, total)`` while unpacking.

    Returns:
        ``(status, fetched)``: ``fetched`` is False when a complete copy was already there.

    Raises:
        DatasetError: no Hub copy (the message says where to request it and where to put it),
            no revision, downloads off, the hub unreachable or lacking the files, pyarrow
            missing, a row count that is not the published size, or a folder in the way that
            mattecli did not make.
        OutputError: the datasets folder is not writable.
    """
    from filelock import FileLock

    from mattecli.benchmark.parquet import require_pyarrow

    entry = get_entry(name)
    target = location(name)
    st = check(name, target, entry)
    hub = entry.hub
    if hub is None and st.complete:
        return st, False
    if hub is None:
        lead = f"{st.title} is not in {st.path}" if st.state == "missing" else f"{st.title} ({st.state} in {st.path})"
        raise _not_downloadable(st, lead)
    # the manifest's pinned commit; where it pins none (no copy has been checked), the commit the
    # default branch resolves to now, recorded in the marker (and shown by `bench datasets`)
    rev = revision or hub.revision or DEFAULT_BRANCH
    if st.state == "complete" and not force:
        return st, False
    if constants.offline():
        again = entry.download_command + (f" --revision {revision}" if revision else "")
        raise DatasetError(
            f"cannot download {st.title} ({name}): downloads are off ({_offline_reason(False)}); "
            f"run `{again}` while online"
        )
    require_pyarrow()  # fail before downloading anything
    root = datasets_root()
    _mkdir(root)
    with FileLock(str(root / f".{name}.lock")):
        st = check(name, target, entry)  # another process may have finished it meanwhile
        if st.state == "complete" and not force:
            return st, False
        for stale in [*root.glob(f".{name}.partial-*"), *root.glob(f".{name}.old-*")]:
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed run (we hold the lock)
        if st.state != "missing" and st.source is None:
            raise DatasetError(
                f"{target} holds files mattecli did not download ({st.problem or st.state}): move them away "
                f"(or use them with --root), then run `{entry.download_command}` again"
            )
        commit = _resolve_commit(entry, rev)
        names = _hub_files(entry, commit)
        paths = [_download(entry, filename, commit, progress) for filename in names]
        tmp = root / f".{name}.partial-{uuid.uuid4().hex[:8]}"
        try:
            _unpack(entry, dict(zip(names, paths, strict=True)), tmp, (commit, rev), unpack_progress)
            _install(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return check(name, target, entry), True
