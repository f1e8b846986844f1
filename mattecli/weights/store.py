"""The weights store: where files live in the Hugging Face cache, and their sha256.

Hub downloads live in huggingface_hub's own layout (``$HF_HUB_CACHE/models--{org}--{name}/
snapshots/{commit}/{filename}``). Imported and converted files live beside them in a repository
folder mattecli owns, ``models--mattecli-imports--{variant}`` (:func:`imports_repo`): a snapshot
named by the file's own sha256, ``refs/main`` naming it, and the trust-on-first-use record of the
authors' file (``official_sha256.json``, :func:`trust_path`). Hashes are remembered per process,
keyed by inode, size and mtime, so a file is hashed once before its first load.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mattecli.errors import ChecksumMismatchError, WeightsCacheError
from mattecli.manifests import HEX40

__all__ = [
    "IMPORTS_NAMESPACE",
    "TRUST_FILE",
    "cache_error",
    "check_digest",
    "hub_cache",
    "imports_repo",
    "known_digest",
    "pull_lock",
    "sha256_file",
    "snapshot_commit",
    "trust_path",
    "write_text_atomic",
]

#: Owner name of the cache repositories that hold imported weights.
IMPORTS_NAMESPACE = "mattecli-imports"
#: The trust-on-first-use record of a variant's official file, in its imports repository.
TRUST_FILE = "official_sha256.json"


# ----------------------------------------------------------------------------- locations
def hub_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, default ``$HF_HOME/hub``), read at call time."""
    from huggingface_hub import constants as hf_constants

    return Path(hf_constants.HF_HUB_CACHE).expanduser()


def imports_repo(variant: str) -> Path:
    """``$HF_HUB_CACHE/models--mattecli-imports--{variant}``: where imports of ``variant`` live."""
    return hub_cache() / f"models--{IMPORTS_NAMESPACE}--{variant}"


def trust_path(variant: str) -> Path:
    """The trust-on-first-use record of ``variant``'s official file (it may not exist)."""
    return imports_repo(variant) / TRUST_FILE


def pull_lock(variant: str):
    """A ``filelock.FileLock`` (not acquired) that serialises pulls of ``variant`` across processes:
    ``$HF_HUB_CACHE/.locks/models--mattecli-imports--{variant}/pull.lock``.

    Raises:
        OSError: the lock's folder cannot be created.
    """
    from filelock import FileLock

    folder = hub_cache() / ".locks" / f"models--{IMPORTS_NAMESPACE}--{variant}"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder / "pull.lock"))


def snapshot_commit(path: Path, filename: str) -> str | None:
    """The commit of ``snapshots/{commit}/{filename}`` in the HF cache layout, else ``None``."""
    parents = path.parents
    depth = len(Path(filename).parts)
    folder = parents[depth - 1] if len(parents) > depth else None
    if folder is None or folder.parent.name != "snapshots" or not HEX40.fullmatch(folder.name):
        return None
    return folder.name


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temporary sibling, then rename it over ``path`` (nothing left on failure).

    Raises:
        OSError: the folder cannot be written.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cache_error(variant: str, err: OSError) -> WeightsCacheError:
    """An unusable cache location or a full disk, in one line."""
    reason = err.strerror or str(err)
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return WeightsCacheError(
        f"cannot write {variant} weights into the Hugging Face cache {hub_cache()}: {reason}{where}",
        hint="free some disk space, or point HF_HOME / HF_HUB_CACHE at a writable folder",
    )


# ----------------------------------------------------------------------------- hashing
_VERIFIED: dict[tuple, str] = {}


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path: str | Path, *, use_cache: bool = True) -> str:
    """Hex sha256 of a file (1 MiB reads). ``use_cache`` reuses a hash computed earlier in this
    process for the same unchanged file (same inode, size and mtime).

    Raises:
        OSError: the file cannot be read.
    """
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


def known_digest(path: Path) -> str | None:
    """The sha256 this process already computed for the unchanged file, else ``None`` (never hashes)."""
    try:
        return _VERIFIED.get(_file_key(path))
    except OSError:
        return None


def check_digest(
    path: Path,
    expected: str,
    variant: str,
    what: str,
    *,
    size: int | None = None,
    use_cache: bool = True,
    hint: str | None = None,
) -> None:
    """Return when ``path`` has sha256 ``expected`` (and ``size`` bytes, when given).

    Raises:
        ChecksumMismatchError: another size or sha256 (the message names ``variant``, ``what`` and
            both values; ``hint`` is its hint).
    """
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
