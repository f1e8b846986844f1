"""Imports: an official checkpoint converted (or a converted file checked) into the weights store.

:func:`import_checkpoint` reads the file safely (:func:`mattecli.weights.reading.read_checkpoint`),
unwraps it, strips ``module.``, remaps it with the variant's key mapping and checks it key by key
and shape by shape against the network; the result is a ``.safetensors`` file whose metadata
records the variant, the source file's name and sha256, the converter and mattecli versions,
stored content-addressed in ``models--mattecli-imports--{variant}`` (see
:mod:`mattecli.weights.store`). Conversion is reproducible: the same source, converter version and
mattecli version give the same bytes (:func:`canonical_safetensors`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mattecli import __version__
from mattecli.errors import ChecksumMismatchError, UnknownCheckpointError
from mattecli.weights.checkpoints import META, Architecture, convert_file, get_architecture, layout_of
from mattecli.weights.manifest import CheckpointEntry, get_entry
from mattecli.weights.store import cache_error, imports_repo, sha256_file, write_text_atomic
from mattecli.weights.trust import expected_source_sha256, hub_mismatch_hint, record_hub_file, recorded_source

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONVERTER_VERSION",
    "ImportResult",
    "canonical_safetensors",
    "import_checkpoint",
    "safetensors_bytes",
]

#: Bumped whenever the conversion changes the bytes it writes for the same input.
CONVERTER_VERSION = 1


def canonical_safetensors(raw: bytes) -> bytes:
    """``raw`` (a safetensors file's bytes) with its JSON header re-written canonically (keys sorted,
    no spaces, padded to 8 bytes), the tensor data unchanged: the same tensors and metadata always
    give the same bytes (safetensors writes its metadata in hash-map order, which varies from one
    process to the next)."""
    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + raw[8 + n :]


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """``safetensors.torch.save(tensors, metadata=metadata)`` made canonical (:func:`canonical_safetensors`),
    so that converting the same file twice, anywhere, gives the same sha256."""
    from safetensors.torch import save

    return canonical_safetensors(save(tensors, metadata=metadata))


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


def _store_import(entry: CheckpointEntry, write: Callable[[Path], None]) -> tuple[Path, str, int]:
    """Write a file into the imports cache repo (content-addressed snapshot, ``refs/main``) with
    ``write(temporary path)``; returns ``(path, sha256, size)`` and removes older snapshots.

    Raises:
        WeightsCacheError: the cache cannot be written.
    """
    repo = imports_repo(entry.variant)
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
        raise cache_error(entry.variant, err) from err
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    for old in (repo / "snapshots").iterdir():
        if old.name != digest and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final, digest, size


def _check_hub_source(entry: CheckpointEntry, source: Path, source_sha: str) -> str | None:
    """The sha256 an import of the authors' hub file must have (pinned or recorded; ``None`` when
    nothing is known yet); raises :class:`ChecksumMismatchError` when ``source`` is another file.
    A mattecli conversion of the expected file (its ``mattecli.source_sha256``) is that file too."""
    expected, where = expected_source_sha256(entry)
    if expected is None or source_sha == expected:
        return expected
    if recorded_source(source) == expected:
        return expected
    hint = None if entry.official_hub.pinned else hub_mismatch_hint(entry).split("; ", 1)[-1]
    raise ChecksumMismatchError(
        f"{entry.variant}: {source} has sha256 {source_sha}, but {where} says {expected} "
        f"({entry.official_hub.repo_id}/{entry.official_hub.filename}); it was not imported",
        hint=hint or f"download the authors' file from {entry.official_hub.url()}",
    )


def import_checkpoint(variant: str, file: str | Path, *, architecture: Architecture | None = None) -> ImportResult:
    """Convert an official checkpoint (or check an already converted safetensors file) and store
    it in the cache where :func:`~mattecli.weights.load.load_model` finds it.

    The file is read safely, unwrapped, stripped of ``module.``, remapped by the variant's key
    mapping (``architecture``, default the one registered for ``variant``), and checked key by key
    and shape by shape against the module. A converted ``.safetensors`` file keeps its bytes.

    For a variant whose source is the authors' hub file (``official_hub``), the file must be the
    one the manifest pins, or the one first fetched or imported (its sha256, or a mattecli
    conversion recording it as its source); when nothing is known yet its sha256 is recorded.

    Raises:
        UnknownCheckpointError: unknown variant, or a file that is not a checkpoint of it.
        WeightsUnavailableError: the variant's method is not implemented yet.
        UnsafeCheckpointError: a pickle that references anything but tensors and containers.
        CheckpointMismatchError: missing / unexpected keys or wrong shapes (listed).
        ChecksumMismatchError: not the authors' hub file that is pinned or recorded.
        WeightsCacheError: the cache cannot be written.
    """
    entry = get_entry(variant)
    arch = architecture or get_architecture(variant)
    source = Path(file).expanduser()
    if not source.is_file():
        raise UnknownCheckpointError(f"{source} does not exist or is not a file", hint=entry.where_to_get())
    source_sha = sha256_file(source)
    hub_expected = _check_hub_source(entry, source, source_sha) if entry.official_hub is not None else None
    converted = convert_file(source, entry, arch, layout_of(arch.build()))

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
            tmp.write_bytes(safetensors_bytes(tensors, meta))

    path, digest, size = _store_import(entry, write)
    recorded = False
    if entry.official_hub is not None:
        match = True if hub_expected is not None else None
        if hub_expected is None:
            record_hub_file(entry, source_sha, source.stat().st_size, commit=None, source="imported by hand")
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
