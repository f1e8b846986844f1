"""Unpack a matting test set published as parquet (Hugging Face ``datasets`` style) into image files.

Hub mirrors store each row's image and alpha as an image cell: a struct ``{bytes, path}`` holding
the original encoded file (or plain binary). :func:`unpack_parquet` writes those bytes unchanged
(no re-encoding, so the pixels are the authors') as ``<image dir>/<name><ext>`` and
``<alpha dir>/<name><ext>``, optional trimaps likewise, and the group columns (e.g. AIM-500's
``type`` / ``category``) as one JSON object ``{name: {group: value}}``, the layout the loaders of
:mod:`mattecli.benchmark.layouts` read. Rows are read a few at a time, so memory stays small whatever the
shard size. Every file is written atomically; the caller unpacks into a temporary folder and
renames it into place.

Reading parquet needs ``pyarrow`` (the optional extra ``mattecli[datasets]``): the Hub copies are
parquet files with embedded image bytes, which nothing else in mattecli's dependencies can read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from mattecli import constants
from mattecli.benchmark.manifest import HubColumns, UnpackLayout
from mattecli.errors import DatasetError

__all__ = ["EXTRA", "require_pyarrow", "unpack_parquet", "sniff_extension", "check_inflation"]

#: The optional dependency group that provides the parquet reader.
EXTRA = "mattecli[datasets]"
_BATCH_ROWS = 8

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"II*\x00", ".tif"),
    (b"MM\x00*", ".tif"),
    (b"BM", ".bmp"),
)


#: Image cells hold encoded files (PNG, JPEG), which compress little; a column chunk that declares
#: more than this many times its compressed size is a decompression bomb.
MAX_INFLATION_RATIO = 100
#: Column chunks up to this size are never refused for their ratio (names and groups compress well).
RATIO_FLOOR_BYTES = 1 << 20
#: The most one column chunk of one row group may declare (pyarrow inflates a chunk's pages to read
#: a batch of its rows).
MAX_CHUNK_BYTES = 4 << 30


def check_inflation(pf: Any, path: Path, columns: Sequence[str]) -> None:
    """Refuse a parquet file whose ``columns`` would inflate beyond bounds, before any row is read.

    From the footer's sizes: every column chunk read declares at most :data:`MAX_CHUNK_BYTES`
    uncompressed and at most :data:`MAX_INFLATION_RATIO` times its compressed size, and the
    compressed sizes fit in the file.

    Raises:
        DatasetError: one line naming the file, the column and the sizes.
    """
    meta = pf.metadata
    wanted = set(columns)
    compressed_total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            compressed, inflated = chunk.total_compressed_size, chunk.total_uncompressed_size
            compressed_total += max(compressed, 0)
            if chunk.path_in_schema.split(".")[0] not in wanted:
                continue
            where = f"{path.name}: column {chunk.path_in_schema!r} of row group {g}"
            if inflated > MAX_CHUNK_BYTES:
                raise DatasetError(
                    f"{where} would inflate to {inflated / 1e6:.1f} MB (at most {MAX_CHUNK_BYTES / 1e6:.0f} MB "
                    "is read); refused unread as a decompression bomb"
                )
            if inflated > RATIO_FLOOR_BYTES and inflated > MAX_INFLATION_RATIO * max(compressed, 1):
                raise DatasetError(
                    f"{where} would inflate from {compressed / 1e6:.1f} MB to {inflated / 1e6:.1f} MB "
                    f"({inflated // max(compressed, 1)}:1); refused unread as a decompression bomb"
                )
    size = path.stat().st_size
    if compressed_total > size:
        raise DatasetError(f"{path.name}: its footer declares {compressed_total} bytes of data in a {size}-byte file")


def require_pyarrow():
    """``pyarrow.parquet``, or a one-line :class:`DatasetError` naming the extra that installs it."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DatasetError(f"reading the Hub's parquet copy of a dataset needs pyarrow: pip install '{EXTRA}'") from err
    return pq


def sniff_extension(data: bytes, path_hint: str | None = None) -> str:
    """The image file extension for encoded ``data``: the hint's when it is an image name, else by magic bytes.

    Raises:
        DatasetError: neither names a format the loaders read.
    """
    if path_hint:
        suffix = PurePosixPath(str(path_hint)).suffix.lower()
        if suffix in constants.IMAGE_EXTENSIONS:
            return suffix
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    raise DatasetError(f"an image cell holds {len(data)} bytes of no known image format ({data[:8]!r}...)")


def _cell_bytes(cell: Any, column: str, row: int) -> tuple[bytes, str | None]:
    """(encoded bytes, original file name or None) of an image cell."""
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
    else:
        data, path = cell, None
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data):
        return bytes(data), path
    if data is None and path:
        raise DatasetError(
            f"row {row}: column {column!r} refers to an external file {path!r} instead of holding its bytes"
        )
    raise DatasetError(f"row {row}: column {column!r} holds no image bytes")


def _sample_name(value: Any, image_path: str | None, row: int) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        if not image_path:
            return f"{row:05d}"
        value = PurePosixPath(image_path).stem
    name = str(value).strip()
    stem = PurePosixPath(name)
    if stem.suffix.lower() in constants.IMAGE_EXTENSIONS:
        name = stem.stem
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith(".") or "\x00" in name:
        raise DatasetError(f"row {row}: sample name {name!r} is not a plain file name")
    return name


def unpack_parquet(
    files: Sequence[Path],
    out: Path,
    columns: HubColumns,
    layout: UnpackLayout,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the rows of ``files`` (in order) under ``out`` in ``layout``; returns the number of samples.

    Args:
        files: parquet files of one split.
        out: the (temporary) dataset folder to fill.
        columns: which parquet columns hold name, image, alpha, trimap and groups.
        layout: the folders (and groups JSON file) to write, relative to ``out``.
        progress: called with ``(rows done, total rows)`` after each batch.

    Every file's footer is checked before any row is read (:func:`check_inflation`): a column
    that would inflate to gigabytes, or by an implausible ratio, refuses the file.

    Raises:
        DatasetError: pyarrow missing, a column missing, a decompression bomb, a cell without
            image bytes, a duplicate or unsafe sample name.
        OutputError: ``out`` cannot be written.
    """
    from mattecli import io

    pq = require_pyarrow()
    wanted = {"image": columns.image, "alpha": columns.alpha}
    if columns.trimap:
        wanted["trimap"] = columns.trimap
    read = list(dict.fromkeys([*wanted.values(), *([columns.name] if columns.name else []), *columns.groups.values()]))
    opened = []
    total = 0
    for path in files:
        try:
            pf = pq.ParquetFile(str(path))
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError for a broken file
            raise DatasetError(f"{path.name}: not a readable parquet file ({err})") from err
        names = pf.schema_arrow.names
        missing = [c for c in read if c not in names]
        if missing:
            raise DatasetError(
                f"{path.name}: no column {', '.join(repr(c) for c in missing)}; it has {', '.join(names)}",
                hint="the manifest's hub.columns name the columns this copy should have",
            )
        check_inflation(pf, path, read)
        opened.append(pf)
        total += pf.metadata.num_rows

    dirs = {"image": out / layout.image, "alpha": out / layout.alpha}
    if columns.trimap and layout.trimap:
        dirs["trimap"] = out / layout.trimap
    seen: set[str] = set()
    groups: dict[str, dict[str, str]] = {}
    row = 0
    for pf in opened:
        for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=read):
            for record in batch.to_pylist():
                image, image_path = _cell_bytes(record[columns.image], columns.image, row)
                name = _sample_name(record.get(columns.name) if columns.name else None, image_path, row)
                if name in seen:
                    raise DatasetError(f"row {row}: sample name {name!r} appears twice")
                seen.add(name)
                io.atomic_write_bytes(dirs["image"] / f"{name}{sniff_extension(image, image_path)}", image)
                for role in ("alpha", "trimap"):
                    if role not in dirs:
                        continue
                    data, hint = _cell_bytes(record[wanted[role]], wanted[role], row)
                    io.atomic_write_bytes(dirs[role] / f"{name}{sniff_extension(data, hint)}", data)
                values = {key: str(record[col]) for key, col in columns.groups.items() if record.get(col) is not None}
                if values:
                    groups[name] = values
                row += 1
            if progress is not None:
                progress(row, total)
    if layout.groups and columns.groups:
        text = json.dumps(dict(sorted(groups.items())), indent=1, ensure_ascii=False)
        io.atomic_write_bytes(out / layout.groups, (text + "\n").encode("utf-8"))
    return row
