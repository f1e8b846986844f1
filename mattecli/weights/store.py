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

from mattecli import __version__
from mattecli.errors import (
    ChecksumMismatchError,
    UnknownCheckpointError,
    WeightsError,
    WeightsNotCachedError,
    WeightsUnavailableError,
)
from mattecli.weights.checkpoints import (
    META,
    conform,
    convert_file,
    get_architecture,
    layout_of,
    load_into,
)
from mattecli.weights.manifest import HEX64, CheckpointEntry, get_entry, load_manifest

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CONVERTER_VERSION",
    "IMPORTS_NAMESPACE",
    "LocalCopy",
    "WeightsStatus",
    "ImportResult",
    "sha256_file",
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
    """A weights file on disk: ``kind`` is ``hub`` (pulled) or ``imported``.

    ``ok`` is ``True``/``False`` once the file has been hashed in this process, else ``None``.
    """

    variant: str
    kind: str
    path: Path
    expected_sha256: str
    ok: bool | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "sha256": self.expected_sha256, "ok": self.ok}


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

    @property
    def active(self) -> LocalCopy | None:
        """The copy :func:`load_model` would use."""
        return self.hub or self.imported

    @property
    def state(self) -> str:
        """One of ``unpublished``, ``missing``, ``cached``, ``imported``, ``checksum ok``,
        ``checksum mismatch``."""
        active = self.active
        if active is None:
            return "missing" if self.entry.published else "unpublished"
        if active.ok is None:
            return "cached" if active.kind == "hub" else "imported"
        return "checksum ok" if active.ok else "checksum mismatch"

    def to_json(self) -> dict:
        e = self.entry
        return {
            "variant": e.variant,
            "method": e.method,
            "state": self.state,
            "published": e.published,
            "implemented": self.implemented,
            "license": e.license,
            "description": e.description,
            "path": str(self.active.path) if self.active else None,
            "source": self.active.kind if self.active else None,
            "hub": self.hub.to_json() if self.hub else None,
            "imported": self.imported.to_json() if self.imported else None,
        }


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
        )
        for e in entries
    ]


def local_path(variant: str) -> Path:
    """Path of the file :func:`load_model` would use (no download, no hashing).

    Raises:
        WeightsNotCachedError: neither pulled nor imported (``WeightsUnavailableError`` when unpublished).
    """
    entry = get_entry(variant)
    copy = hub_copy(entry) or imported_copy(entry)
    if copy is None:
        raise not_available(entry)
    return copy.path


def not_available(entry: CheckpointEntry, reason: str | None = None) -> WeightsError:
    """The error for weights that are not local, naming the variant and the exact commands to run:
    :class:`WeightsNotCachedError` for a published variant, :class:`WeightsUnavailableError` for
    one that is not published (only an import can provide it)."""
    v = entry.variant
    if entry.published:
        what = reason or "are not in the cache"
        return WeightsNotCachedError(
            f"{v} weights {what}; run `mattecli weights pull {v}`, or `{entry.import_command()}` "
            f"with the authors' file",
            hint=entry.where_to_get(),
        )
    return WeightsUnavailableError(
        f"{v} weights are not published yet and not imported; run `{entry.import_command()}`",
        hint=entry.where_to_get(),
    )


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
    else:
        hint = f"import it again with `{entry.import_command()}`"
        _check_digest(copy.path, copy.expected_sha256, copy.variant, "imported file", use_cache=use_cache, hint=hint)
    return copy.path


def ensure_weights(variant: str, *, download: bool = True, progress: type | None = None) -> Path:
    """A verified local weights file for ``variant``: cached hub copy, else imported copy, else
    (when published and ``download``) a fresh download.

    Raises:
        WeightsNotCachedError: not local and cannot be downloaded now (offline, unreachable).
        WeightsUnavailableError: not local and not published (import it).
        ChecksumMismatchError: the local file is not the expected one; it is never loaded.
    """
    entry = get_entry(variant)
    copy = hub_copy(entry) or imported_copy(entry)
    if copy is not None:
        return verified_path(copy)
    if not entry.published or not download:
        raise not_available(entry)
    return pull(variant, progress=progress)


# ----------------------------------------------------------------------------- download
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network exception bases of whichever HTTP client huggingface_hub uses."""
    found: list[type[BaseException]] = []
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            found.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def pull(variant: str, *, force: bool = False, progress: type | None = None) -> Path:
    """Download a published variant with ``hf_hub_download`` at the pinned revision and verify it.

    Uses the standard Hugging Face cache and honours ``HF_HOME``/``HF_HUB_CACHE``,
    ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``. A file already cached at the pinned commit is not
    downloaded again (unless ``force``). ``progress`` is a tqdm-compatible class for the
    download bar (``None``: huggingface_hub's own bars).

    Raises:
        WeightsUnavailableError: not published, or not found on the hub.
        WeightsNotCachedError: offline or hub unreachable (message names the import command).
        ChecksumMismatchError: the downloaded file is not the one the manifest pins.
    """
    entry = get_entry(variant)
    if entry.hub is None:
        raise WeightsUnavailableError(
            f"{variant}: converted weights are not published yet; run `{entry.import_command()}` instead",
            hint=entry.where_to_get(),
        )
    hub = entry.hub
    from huggingface_hub import errors as hf_errors
    from huggingface_hub import hf_hub_download

    try:
        path = Path(
            hf_hub_download(
                hub.repo_id,
                hub.filename,
                revision=hub.revision,
                cache_dir=hub_cache(),
                force_download=force,
                tqdm_class=progress,
                library_name="mattecli",
                library_version=__version__,
            )
        )
    except (hf_errors.OfflineModeIsEnabled, hf_errors.LocalEntryNotFoundError) as err:
        offline = isinstance(err, hf_errors.OfflineModeIsEnabled) or _hf_offline()
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
            f"{variant}: {hub.repo_id}/{hub.filename} at revision {hub.revision[:12]} is not on the hub "
            f"({type(err).__name__}); run `{entry.import_command()}` instead",
            hint=entry.where_to_get(),
        ) from err
    except (hf_errors.HfHubHTTPError, hf_errors.XetDownloadError, OSError, *_transport_errors()) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise not_available(entry, f"could not be downloaded ({first})") from err
    copy = LocalCopy(variant, "hub", path, hub.sha256)
    return verified_path(copy, use_cache=not force)


def _hf_offline() -> bool:
    from huggingface_hub import constants as hf_constants

    return bool(hf_constants.HF_HUB_OFFLINE)


# ----------------------------------------------------------------------------- import
@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_checkpoint` wrote.

    ``official_match`` is ``True``/``False`` when the manifest knows the official file's sha256
    (the source matched it or not), ``None`` when it does not.
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


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary sibling, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _reproducible_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with a canonical header (sorted keys), so that converting the same file
    twice, anywhere, gives the same sha256 (safetensors itself writes metadata in hash-map order)."""
    from safetensors.torch import save

    raw = save(tensors, metadata=metadata)
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + raw[8 + n :]


def _store_import(entry: CheckpointEntry, write: Callable[[Path], None]) -> tuple[Path, str, int]:
    """Write a file into the imports cache repo (content-addressed snapshot, ``refs/main``)."""
    repo = _imports_repo(entry.variant)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "snapshots").mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".import-", suffix=".tmp", dir=repo)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        digest = sha256_file(tmp, use_cache=False)
        size = tmp.stat().st_size
        snapshot = repo / "snapshots" / digest
        snapshot.mkdir(exist_ok=True)
        final = snapshot / entry.filename
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    sha256_file(final)  # remember the verified hash for this process
    write_text_atomic(repo / "refs" / "main", digest)
    for old in (repo / "snapshots").iterdir():
        if old.name != digest and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final, digest, size


def import_checkpoint(variant: str, file: str | Path) -> ImportResult:
    """Convert an official checkpoint (or check an already converted safetensors file) and store
    it in the cache where :func:`load_model` finds it.

    The file is read safely (see :func:`read_checkpoint`), unwrapped, stripped of ``module.``,
    remapped by the variant's registered key mapping, and checked key by key and shape by shape
    against the module. The result is a ``.safetensors`` file whose metadata records the variant,
    the source file's name and sha256, the converter and mattecli versions.

    Raises:
        UnknownCheckpointError: unknown variant, or a file that is not a checkpoint of it.
        WeightsUnavailableError: the variant's method is not implemented yet.
        UnsafeCheckpointError: a pickle that references anything but tensors and containers.
        CheckpointMismatchError: missing / unexpected keys or wrong shapes (listed).
    """
    entry = get_entry(variant)
    arch = get_architecture(variant)
    source = Path(file).expanduser()
    if not source.is_file():
        raise UnknownCheckpointError(f"{source} does not exist or is not a file", hint=entry.where_to_get())
    source_sha = sha256_file(source)
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
    )


# ----------------------------------------------------------------------------- verify
def verify(variant: str | None = None) -> list[LocalCopy]:
    """Re-hash every local file (of one variant, or all) and report each (``ok`` set).

    Raises:
        WeightsNotCachedError: ``variant`` is given and has no local file.
    """
    results = []
    for st in status(variant):
        for copy in (st.hub, st.imported):
            if copy is not None:
                results.append(_with_ok(copy, check=True, force=True))
    if variant is not None and not results:
        raise not_available(get_entry(variant))
    return results


# ----------------------------------------------------------------------------- loading
def load_model(
    variant: str,
    device: str | torch.device = "cpu",
    weights_file: str | Path | None = None,
    *,
    download: bool = True,
    progress: type | None = None,
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

    Returns:
        The module in eval mode on ``device``.

    Raises:
        WeightsUnavailableError, WeightsNotCachedError, ChecksumMismatchError,
        CheckpointMismatchError, UnknownCheckpointError, UnsafeCheckpointError.
    """
    entry = get_entry(variant)
    arch = get_architecture(variant)
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
