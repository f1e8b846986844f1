"""Finding inputs, reading images/trimaps, and writing outputs atomically.

Conventions at this boundary (see DESIGN.md):

* images come out as float32 ``HxWx3`` RGB in [0, 1], EXIF orientation applied;
* single-channel maps (alphas, masks) come out as float32 ``HxW`` in [0, 1];
* trimaps come out as uint8 ``HxW`` with values exactly {0, 128, 255}
  (anything strictly between 0 and 255 is unknown);
* OpenCV's BGR order never leaves this module;
* every write goes to a temporary file in the destination folder and is renamed
  over the target only when complete, so an interrupted run leaves no partial file
  under the target's name. The temporary file is ``.<name>.<pid>.<random>.part``,
  locked (``flock``) while it is written; one left by a killed process is removed
  by the next run over that folder (:func:`remove_stale_parts`);
* only regular files are read (never a device, a pipe or ``/dev/zero``), and none
  larger than an image within the pixel limit can be (:func:`max_file_bytes`);
* decoders run with their own stderr chatter (libpng's ``libpng error: ...``,
  OpenCV's ``[ WARN:0@...]``) held back: a failure becomes one typed error, and
  ``MATTECLI_DEBUG=1`` lets the chatter through.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from mattecli import constants

if not constants.MATTECLI_DEBUG:  # failures become typed errors; OpenCV's log lines would only repeat them
    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
try:  # POSIX: writers lock their temporary file, cleaners only remove unlocked ones
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from mattecli.errors import (
    BadOptionError,
    ImageReadError,
    ImageTooLargeError,
    NoInputsError,
    OutputError,
    TrimapError,
)

__all__ = [
    "InputItem",
    "SkippedInputWarning",
    "discover",
    "parse_shard",
    "in_shard",
    "read_image",
    "read_gray",
    "read_trimap",
    "normalize_trimap",
    "find_by_stem",
    "is_image_path",
    "pixel_limit",
    "max_file_bytes",
    "atomic_write_bytes",
    "abandon_writes",
    "not_regular_output",
    "remove_stale_parts",
    "encode_png",
    "write_alpha",
    "write_rgba",
    "write_image",
    "to_uint",
]

UNKNOWN = 128


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: permissions for new files: what open() would give (mkstemp alone gives 0600)
_FILE_MODE = 0o666 & ~_current_umask()


# ----------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class InputItem:
    """One input image.

    ``rel`` is the path relative to the folder it was found in (or just the file
    name for files named directly, globbed or read from stdin); outputs mirror it.
    """

    path: Path
    rel: Path

    @property
    def key(self) -> str:
        """Relative path without suffix, used to name outputs and match trimaps."""
        return self.rel.with_suffix("").as_posix()


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in constants.IMAGE_EXTENSIONS


class SkippedInputWarning(UserWarning):
    """An entry of an input folder or glob that is not a regular file (a pipe, a socket, a device):
    skipped unopened (opening a pipe would block the run). The CLI shows it as one ``warning:`` line."""


def _kind(mode: int) -> str:
    """What a non-regular file is, in words (for messages)."""
    if stat.S_ISCHR(mode):
        return "a device (character)"
    if stat.S_ISBLK(mode):
        return "a device (block)"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _entry(path: Path) -> tuple[str, str | None]:
    """``("file" | "dir" | "broken" | "special", kind)`` of a directory entry, symlinks followed, never opened.

    ``broken``: it cannot be looked at (a dangling link, a link loop, no permission); reading it
    reports why. ``special``: a pipe, socket or device (``kind`` says which).
    """
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return "broken", None
    if stat.S_ISREG(st.st_mode):
        return "file", None
    if stat.S_ISDIR(st.st_mode):
        return "dir", None
    return "special", _kind(st.st_mode)


@dataclass(frozen=True)
class _Skipped:
    path: Path
    rel: Path
    kind: str


def _scan_folder(folder: Path, recursive: bool, skipped: list[_Skipped]) -> list[InputItem]:
    """The images of ``folder`` (``recursive``: of its subfolders too, symlinked folders not followed).

    An entry named like an image (by extension, not hidden) is an input when it is a regular file
    *or cannot be looked at* (a dangling symlink, a symlink loop, no permission): reading it then
    reports the failure, so a folder run never drops a file silently. Pipes, sockets and devices are
    appended to ``skipped``, never opened.

    Raises:
        NoInputsError: ``folder`` itself cannot be listed.
    """
    items: list[InputItem] = []
    pending = [Path()]
    while pending:
        sub = pending.pop()
        here = folder / sub
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError as err:
            if sub == Path():
                raise NoInputsError(f"cannot list folder {folder} ({err.strerror or err})") from err
            warnings.warn(
                f"{here}: cannot list this folder ({err.strerror or err}); skipped", SkippedInputWarning, stacklevel=2
            )
            continue
        for entry in entries:
            rel = sub / entry.name
            try:
                real_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                real_dir = False
            if real_dir:
                if recursive:
                    pending.append(rel)
                continue
            if entry.name.startswith(".") or not is_image_path(Path(entry.name)):
                continue
            path = folder / rel
            what, kind = _entry(path)
            if what in ("file", "broken"):
                items.append(InputItem(path, rel))
            elif what == "special":
                skipped.append(_Skipped(path, rel, kind or "not a regular file"))
    return sorted(items, key=lambda it: it.rel.as_posix())


def _has_glob_magic(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 <= K <= N) -> ``(K, N)``.

    Raises:
        BadOptionError: anything else.
    """
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise BadOptionError(f"--shard must look like K/N (e.g. 2/8), not {text!r}") from None
    if not 1 <= k <= n:
        raise BadOptionError(f"--shard {text}: K must be between 1 and N")
    return k, n


def in_shard(key: str, shard: tuple[int, int]) -> bool:
    """Whether ``key`` (a relative path or sample name) belongs to shard ``(K, N)``.

    The choice hashes the key alone (SHA-1, not Python's salted ``hash``), so it is the
    same on every machine and for every order of the inputs: N processes given the same
    inputs split them with no coordination, and together cover each input exactly once.
    """
    k, n = shard
    digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


def _same_file_key(path: Path) -> str:
    """A key that is equal for two names of one file (symlinks resolved); never raises (link loops)."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError, RuntimeError):
        return os.path.abspath(path)


def discover(
    inputs: Sequence[str | os.PathLike],
    *,
    recursive: bool = False,
    stdin: IO[str] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[InputItem]:
    """Expand command-line inputs into an ordered list of images.

    Each input may be a file, a folder (its images; ``recursive`` descends), a glob
    pattern, or ``-`` meaning newline-separated paths read from ``stdin``. Files named
    explicitly are kept even if their extension is unusual (the decoder decides);
    folder scans keep known image extensions only. Duplicates are dropped, first
    occurrence wins. ``shard=(K, N)`` keeps the items of that shard (by relative
    path, see :func:`in_shard`); a shard may be empty.

    Nothing is opened here. An entry that cannot be looked at (a dangling symlink, a symlink
    loop, no permission) is kept: in a folder when it is named like an image, from a glob or a
    named symlink always, so that reading it reports the failure for that file. Pipes, sockets
    and devices found in a folder or by a glob are skipped, each with a
    :class:`SkippedInputWarning` (only those of the shard when ``shard`` is given); named
    explicitly (or on stdin) they are kept and refused when read.

    Raises:
        NoInputsError: nothing matched at all, or a named path does not exist.
    """
    items: list[InputItem] = []
    skipped: list[_Skipped] = []
    for raw in inputs:
        text = os.fspath(raw)
        if text == "-":
            stream = stdin if stdin is not None else sys.stdin
            for line in stream:
                exact = line.rstrip("\r\n")
                if not exact.strip():
                    continue  # blank lines are separators
                # a name may itself begin or end with spaces; otherwise stray spaces are trimmed
                p = Path(exact) if exact != exact.strip() and os.path.lexists(exact) else Path(exact.strip())
                items.extend(_scan_folder(p, recursive, skipped) if p.is_dir() else [InputItem(p, Path(p.name))])
            continue
        path = Path(text)
        if path.is_dir():
            found = _scan_folder(path, recursive, skipped)
            if not found:
                _warn_skipped(skipped, shard)
                raise NoInputsError(
                    f"no images in folder {path}",
                    hint="supported: "
                    + ", ".join(sorted(constants.IMAGE_EXTENSIONS))
                    + ("" if recursive else "; use --recursive for subfolders"),
                )
            items.extend(found)
        elif path.exists() or os.path.islink(path):  # a dangling link named explicitly: its read fails
            items.append(InputItem(path, Path(path.name)))
        elif _has_glob_magic(text):
            matched = []
            for m in sorted(Path(m) for m in glob.glob(text, recursive=True)):
                what, kind = _entry(m)
                if what in ("file", "broken"):
                    matched.append(m)
                elif what == "special":
                    skipped.append(_Skipped(m, Path(m.name), kind or "not a regular file"))
            if not matched:
                _warn_skipped(skipped, shard)
                raise NoInputsError(f"no files match {text}")
            items.extend(InputItem(m, Path(m.name)) for m in matched)
        else:
            raise NoInputsError(f"no such file or folder: {text}")
    _warn_skipped(skipped, shard)
    seen: set[str] = set()
    unique = []
    for it in items:
        key = _same_file_key(it.path)
        if key not in seen:
            seen.add(key)
            unique.append(it)
    if not unique:
        raise NoInputsError("no input images given", hint="pass files, folders, globs, or - for stdin")
    if shard is not None:
        unique = [it for it in unique if in_shard(it.rel.as_posix(), shard)]
    return unique


def _warn_skipped(skipped: list[_Skipped], shard: tuple[int, int] | None) -> None:
    """One :class:`SkippedInputWarning` per skipped entry (of the shard), then forget them."""
    for s in skipped:
        if shard is None or in_shard(s.rel.as_posix(), shard):
            warnings.warn(f"{s.path}: skipped, it is {s.kind}, not an image file", SkippedInputWarning, stacklevel=2)
    skipped.clear()


#: folder -> {file stem: image files with that stem, sorted}; see :func:`_files_with_stem`
_STEM_INDEX: dict[str, dict[str, list[Path]]] = {}
_STEM_INDEX_LOCK = threading.Lock()
_STEM_INDEX_FOLDERS = 64


def _scan_stems(base: Path) -> dict[str, list[Path]]:
    """``{stem: entries}`` of ``base`` named like images that are not folders: a dangling link or a
    pipe is kept too, so that reading it says what it is (never opened here)."""
    index: dict[str, list[Path]] = {}
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return index
    for entry in entries:
        path = base / entry.name
        try:
            if not entry.is_dir() and is_image_path(path):
                index.setdefault(path.stem, []).append(path)
        except OSError:
            continue
    return index


def _files_with_stem(base: Path, stem: str) -> list[Path]:
    """Image files in ``base`` whose stem is exactly ``stem``, sorted by name (see :func:`_scan_stems`).

    Each folder is listed once and indexed (a glob per image would list a folder of N
    trimaps N times). A hit is checked to still exist and a miss is looked up again, so
    files added or removed during a run are seen.
    """
    key = os.fspath(base)
    with _STEM_INDEX_LOCK:
        index = _STEM_INDEX.get(key)
    if index is not None:
        hit = index.get(stem)
        if hit and os.path.lexists(hit[0]):
            return hit
    index = _scan_stems(base)
    with _STEM_INDEX_LOCK:
        if len(_STEM_INDEX) >= _STEM_INDEX_FOLDERS and key not in _STEM_INDEX:
            _STEM_INDEX.pop(next(iter(_STEM_INDEX)))
        _STEM_INDEX[key] = index
    return index.get(stem, [])


def find_by_stem(item: InputItem, folder: Path, *, role: str = "trimap") -> Path:
    """The file in ``folder`` that belongs to ``item``: same relative path and stem.

    Tries ``folder/<rel parent>/<stem>.*`` first, then ``folder/<stem>.*`` (a flat
    folder of trimaps for a recursive run). Any image extension matches; the stem must
    match exactly (the trimap of ``a.jpg`` is ``a.png``, never ``a.old.png``); of several,
    the first by name.

    Raises:
        TrimapError: no such file (the message names the folder and the stem).
    """
    stem = item.rel.stem
    candidates = [folder / item.rel.parent]
    if item.rel.parent != Path("."):
        candidates.append(folder)
    for base in candidates:
        if not base.is_dir():
            continue
        exact = _files_with_stem(base, stem)
        if exact:
            return exact[0]
    raise TrimapError(
        f"{item.path}: no {role} named {stem}.* in {folder}",
        hint=f"{role}s are matched to images by file stem",
    )


# ----------------------------------------------------------------------------- reading
#: Most bytes one pixel can take in a file we decode: 4 channels of float64 samples, uncompressed
#: (TIFF); PNG's worst case (incompressible 16-bit RGBA) is 8 bytes plus a filter byte per row.
MAX_BYTES_PER_PIXEL = 32
#: Room for everything that is not pixels: headers, EXIF, ICC profiles, XMP, embedded previews.
FILE_SLACK_BYTES = 64 << 20

_TOO_LARGE_HINT = "raise it with --max-pixels or MATTECLI_MAX_PIXELS if the file is trusted"


def _parse_pixels(text: str) -> int | None:
    """``"200000000"``, ``"200_000_000"`` or ``"2e8"`` -> int; None when not a whole number."""
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit a read applies: ``max_pixels``, else ``MATTECLI_MAX_PIXELS``, else 200 MP.

    OpenCV refuses images above its own cap (``OPENCV_IO_MAX_IMAGE_PIXELS``, default 2^30 px,
    fixed when ``cv2`` is imported), so a larger limit could never be honoured: it is refused
    here rather than failing on the first big image. The default is lowered to that cap.

    Raises:
        BadOptionError: ``max_pixels`` or ``MATTECLI_MAX_PIXELS`` below 1, above OpenCV's cap,
            or (the variable) not a whole number.
    """
    cap = constants.OPENCV_MAX_PIXELS
    raise_cap = "also raise OpenCV's own cap: OPENCV_IO_MAX_IMAGE_PIXELS=N in the environment"
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
            raise BadOptionError(f"--max-pixels must be a whole number >= 1, not {max_pixels!r}")
        if max_pixels > cap:
            raise BadOptionError(
                f"--max-pixels {max_pixels} is above OpenCV's decode cap of {cap} pixels", hint=raise_cap
            )
        return max_pixels
    text = constants.MATTECLI_MAX_PIXELS_TEXT
    if text is None or not text.strip():
        return min(constants.MAX_PIXELS, cap)
    value = _parse_pixels(text)
    if value is None or value < 1:
        raise BadOptionError(
            f"MATTECLI_MAX_PIXELS must be a whole number >= 1, not {text!r}", hint="e.g. MATTECLI_MAX_PIXELS=300000000"
        )
    if value > cap:
        raise BadOptionError(f"MATTECLI_MAX_PIXELS={text} is above OpenCV's decode cap of {cap} pixels", hint=raise_cap)
    return value


def max_file_bytes(max_pixels: int) -> int:
    """Largest file that may hold an image of at most ``max_pixels`` pixels (a bigger one is refused unread).

    ``max_pixels * MAX_BYTES_PER_PIXEL + FILE_SLACK_BYTES``: no format we decode stores a pixel
    in more than 32 bytes (4 channels x float64, uncompressed), and 64 MiB covers metadata.
    """
    return max_pixels * MAX_BYTES_PER_PIXEL + FILE_SLACK_BYTES


def _not_regular(path: Path, mode: int) -> ImageReadError:
    return ImageReadError(f"{path}: is {_kind(mode)}, not an image file", hint="inputs must be regular files")


def _missing(path: Path) -> ImageReadError:
    """The error for a path that names nothing readable: a dangling symlink says so (and where it points)."""
    if os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return ImageReadError(f"{path}: broken symbolic link (its target {target} does not exist)")
    return ImageReadError(f"{path}: no such file")


def _read_bytes(path: Path, max_pixels: int) -> bytes:
    """The file's bytes, if it is a regular file no larger than ``max_file_bytes(max_pixels)``.

    Checked before reading (a device or ``/dev/zero`` would be read until memory runs out, a
    pipe would block), and again on the open file (O_NONBLOCK: a pipe swapped in meanwhile
    cannot block it either).
    """
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise ImageReadError(f"{path}: is a folder, not an image")
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        limit = max_file_bytes(max_pixels)
        if st.st_size > limit:
            raise ImageTooLargeError(
                f"{path}: the file is {st.st_size / 1e6:.1f} MB, more than an image of at most "
                f"{max_pixels / 1e6:.1f} MP can take ({limit / 1e6:.1f} MB)",
                hint=_TOO_LARGE_HINT,
            )
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise _not_regular(path, mode)
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ImageTooLargeError(
                f"{path}: the file grew past {limit / 1e6:.1f} MB while read", hint=_TOO_LARGE_HINT
            )
        return data
    except (FileNotFoundError, NotADirectoryError) as err:
        raise _missing(path) from err
    except IsADirectoryError as err:
        raise ImageReadError(f"{path}: is a folder, not an image") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageReadError(f"{path}: symbolic link loop (it never reaches a file)") from err
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from err


#: Lines that image codecs print on stderr by themselves (C code, so Python cannot catch them).
_CODEC_NOISE = re.compile(
    rb"^(libpng (error|warning)|\[ ?(WARN|ERROR|INFO|DEBUG|VERBOSE|FATAL):|"
    rb"(Corrupt|Premature end of|Invalid|Bogus|Unsupported|Not a) JPEG|JPEG datastream|"
    rb"TIFF[A-Za-z]*(Error|Warning)?:)"
)
_capture_lock = threading.Lock()
_capture_depth = 0
_capture_saved: int | None = None
_capture_sink = None


def _start_capture() -> None:
    global _capture_depth, _capture_saved, _capture_sink
    with _capture_lock:
        if _capture_depth == 0:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            try:
                saved = os.dup(2)
            except OSError:  # no fd 2 at all: nothing to hold back
                return
            try:
                sink = tempfile.TemporaryFile()
            except OSError:
                os.close(saved)
                return
            os.dup2(sink.fileno(), 2)
            _capture_saved, _capture_sink = saved, sink
        _capture_depth += 1


def _end_capture() -> None:
    global _capture_depth, _capture_saved, _capture_sink
    with _capture_lock:
        if _capture_depth == 0:
            return
        _capture_depth -= 1
        if _capture_depth:
            return
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved, sink = _capture_saved, _capture_sink
        _capture_saved = _capture_sink = None
        os.dup2(saved, 2)
        os.close(saved)
        sink.seek(0)
        captured = sink.read()
        sink.close()
    # anything else written to fd 2 meanwhile (by another thread) is passed on unchanged
    kept = b"".join(line for line in captured.splitlines(keepends=True) if not _CODEC_NOISE.match(line))
    if kept:
        with contextlib.suppress(OSError):
            os.write(2, kept)


@contextlib.contextmanager
def _codec_chatter_held_back():
    """Hold back what C decoders print on fd 2 (libpng, OpenCV) while decoding; keep everything else.

    fd 2 is shared by the whole process, so while any decode runs (nested across I/O threads)
    fd 2 goes to a temporary file; when the last one ends, the lines that are not codec noise
    are written to the real stderr (delayed by the decode, not lost). Off with ``MATTECLI_DEBUG``.
    """
    if constants.MATTECLI_DEBUG:
        yield
        return
    _start_capture()
    try:
        yield
    finally:
        _end_capture()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: An ancillary PNG chunk (metadata: text, XMP, an ICC profile, EXIF) larger than this is dropped
#: when OpenCV refuses the file: OpenCV refuses any non-pixel chunk over 8 MB (libpng's default cap).
PNG_METADATA_CHUNK_LIMIT = 1 << 20
#: Text and ICC chunks, which Pillow inflates and refuses beyond its own (process-wide) caps.
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"iCCP")


def _png_without(data: bytes, drop) -> tuple[bytes, list[str]]:
    """``data`` (a PNG) without the chunks ``drop(type, length)`` selects, and those chunks named
    (``"iTXt (9.0 MB)"``); ``(data, [])`` when it is not a PNG or nothing is dropped.

    Critical chunks (``IHDR``, ``PLTE``, ``IDAT``, ``IEND``: an upper-case first letter) are never
    dropped, nor ``tRNS`` (transparency is pixels). Bytes after a truncated chunk are kept as they are.
    """
    if not data.startswith(_PNG_SIGNATURE):
        return data, []
    kept, dropped, pos = [data[:8]], [], 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            break
        ancillary = bool(ctype[0] & 0x20) and ctype != b"tRNS"
        if ancillary and drop(ctype, length):
            dropped.append(f"{ctype.decode('latin-1')} ({length / 1e6:.1f} MB)")
        else:
            kept.append(data[pos:end])
        pos = end
        if ctype == b"IEND":
            break
    kept.append(data[pos:])
    return (b"".join(kept), dropped) if dropped else (data, [])


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's ``IHDR`` chunk, None when it is not a PNG."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _probe(path: Path, data: bytes, max_pixels: int) -> int:
    """Check the pixel count from the header (before decoding) and return the EXIF orientation.

    Pillow reads the header. Where it refuses a PNG for its metadata (a text or ICC chunk that
    inflates beyond Pillow's caps), the header is read again without those chunks; the PNG's own
    ``IHDR`` still gives the size for the pixel limit when Pillow cannot.
    """
    from io import BytesIO

    from PIL import Image

    orientation = 1
    try:
        Image.MAX_IMAGE_PIXELS = None  # we apply our own, configurable limit below
        try:
            im = Image.open(BytesIO(data))
        except Exception:
            slim, dropped = _png_without(data, lambda ctype, _n: ctype in _PNG_TEXT_CHUNKS)
            if not dropped:
                raise
            im = Image.open(BytesIO(slim))
        with im:
            width, height = im.size
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:  # a broken EXIF block must not stop the image
                orientation = 1
    except Exception:
        # Pillow cannot parse the header: let OpenCV try (and fail with a clear error).
        size = _png_header_size(data)
        if size is None:
            return 1
        width, height = size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {_pixels(width * height)} exceeds the limit of {_pixels(max_pixels)}",
            hint=_TOO_LARGE_HINT,
        )
    return orientation


def _pixels(n: int) -> str:
    """A pixel count for messages, exact (``400 pixels``, ``200,000,001 pixels``): rounded to MP, a
    limit of 300 pixels read "0.0 MP" and an image one pixel over 200 MP "200.0 MP"."""
    return f"{n:,} pixels"


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1-8) to an HxW[xC] array."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1, :]
    elif orientation == 5:
        arr = np.swapaxes(arr, 0, 1)
    elif orientation == 6:
        arr = np.swapaxes(arr, 0, 1)[:, ::-1]
    elif orientation == 7:
        arr = np.swapaxes(arr, 0, 1)[::-1, ::-1]
    elif orientation == 8:
        arr = np.swapaxes(arr, 0, 1)[::-1, :]
    return np.ascontiguousarray(arr)


def _decode(path: Path, max_pixels: int | None) -> np.ndarray:
    """Decode to the file's native layout: HxW or HxWxC (RGB/RGBA order), uint8/uint16/float."""
    limit = pixel_limit(max_pixels)
    data = _read_bytes(Path(path), limit)
    if not data:
        raise ImageReadError(f"{path}: file is empty")
    orientation = _probe(path, data, limit)
    unreadable = f"{path}: not a readable image (corrupt or unsupported format)"
    try:
        with _codec_chatter_held_back():
            arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:  # OpenCV's own size caps, or a decoder that throws
        if "CV_IO_MAX_IMAGE" in str(err):
            raise ImageTooLargeError(
                f"{path}: larger than OpenCV's decode cap of {constants.OPENCV_MAX_PIXELS} pixels",
                hint="raise OPENCV_IO_MAX_IMAGE_PIXELS if the file is trusted",
            ) from err
        raise ImageReadError(unreadable) from err
    if arr is None and data.startswith(_PNG_SIGNATURE):
        arr, orientation = _decode_png_without_metadata(path, data, limit, orientation)
    if arr is None or arr.size == 0:
        raise ImageReadError(unreadable)
    if arr.shape[0] * arr.shape[1] > limit:  # formats whose header Pillow could not read
        raise ImageTooLargeError(
            f"{path}: {arr.shape[1]}x{arr.shape[0]} exceeds the limit of {_pixels(limit)}",
            hint=_TOO_LARGE_HINT,
        )
    if arr.ndim == 3:
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        elif arr.shape[2] == 3:
            arr = arr[:, :, ::-1]
        elif arr.shape[2] == 4:
            arr = arr[:, :, [2, 1, 0, 3]]
        else:
            raise ImageReadError(f"{path}: unsupported channel count {arr.shape[2]}")
    return _apply_orientation(arr, orientation)


def _decode_png_without_metadata(
    path: Path, data: bytes, limit: int, orientation: int
) -> tuple[np.ndarray | None, int]:
    """A PNG OpenCV refused, decoded again without its oversized metadata chunks: ``(pixels, orientation)``.

    ``(None, orientation)`` when it has no such chunk (the caller reports it unreadable).

    Raises:
        ImageReadError: it has one, and the pixels do not decode without it either (the message names it).
    """
    slim, dropped = _png_without(data, lambda _ctype, n: n > PNG_METADATA_CHUNK_LIMIT)
    if not dropped:
        return None, orientation
    orientation = _probe(path, slim, limit)
    try:
        with _codec_chatter_held_back():
            arr = cv2.imdecode(np.frombuffer(slim, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageReadError(
            f"{path}: not a readable image: an oversized metadata chunk ({', '.join(dropped)}), and the "
            "pixels do not decode without it either (corrupt or unsupported format)"
        )
    return arr, orientation


def _to_float(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in (np.float32, np.float64):  # float TIFF: NaN -> 0, beyond [0, 1] clipped
        return np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    raise ImageReadError(f"{path}: unsupported sample type {arr.dtype}")


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as float32 ``HxWx3`` RGB in [0, 1].

    8- and 16-bit PNG/JPEG/TIFF/WebP/BMP, grayscale (replicated to RGB), RGB or RGBA
    (alpha dropped). EXIF orientation is applied; non-ASCII paths work.

    Raises:
        ImageReadError: unreadable or corrupt file.
        ImageTooLargeError: more pixels than ``max_pixels`` (default ``MATTECLI_MAX_PIXELS``).
    """
    path = Path(path)
    arr = _to_float(_decode(path, max_pixels), path)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def read_gray(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a single-channel map (alpha matte, mask) as float32 ``HxW`` in [0, 1].

    Colour files give their first (red) channel, as the Composition-1k evaluation
    does; an RGBA file whose alpha channel is not fully opaque gives that alpha
    (a cutout used as a mask).
    """
    path = Path(path)
    arr = _to_float(_decode(path, max_pixels), path)
    if arr.ndim == 3:
        if arr.shape[2] == 4 and float(arr[:, :, 3].min()) < 1.0:
            arr = arr[:, :, 3]
        else:
            arr = arr[:, :, 0]
    return np.ascontiguousarray(arr)


def normalize_trimap(values: np.ndarray) -> np.ndarray:
    """Map a float trimap in [0, 1] to uint8 {0, 128, 255}: exact 0 and 1 are known, the rest unknown."""
    out = np.full(values.shape, UNKNOWN, np.uint8)
    out[values <= 0.0] = 0
    out[values >= 1.0] = 255
    return out


def read_trimap(
    path: str | os.PathLike,
    *,
    shape: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read a trimap as uint8 ``HxW`` with values {0, 128, 255}.

    Any value strictly between black and white is unknown (e.g. pymatting's 102).
    If ``shape`` (H, W) is given, the trimap must have exactly that size.

    Raises:
        TrimapError: unreadable, or wrong size.
    """
    path = Path(path)
    try:
        gray = read_gray(path, max_pixels=max_pixels)
    except ImageReadError as err:
        raise TrimapError(f"trimap {err.message}", hint=err.hint) from err
    if shape is not None and gray.shape != tuple(shape):
        raise TrimapError(
            f"{path}: trimap is {gray.shape[1]}x{gray.shape[0]} but the image is {shape[1]}x{shape[0]}",
            hint="a trimap must have exactly the size of its image",
        )
    return normalize_trimap(gray)


# ----------------------------------------------------------------------------- writing
def to_uint(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Quantise [0, 1] floats to uint8 or uint16 with rounding (values are clipped first)."""
    if bit_depth not in (8, 16):
        raise BadOptionError(f"bit depth must be 8 or 16, not {bit_depth}")
    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(values, 0.0, 1.0) * top).astype(dtype)


#: largest side each format can store (WebP: 14-bit sizes; JPEG: 16-bit sizes)
_ENCODE_MAX_SIDE = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535}


def encode_png(arr: np.ndarray, *, ext: str = ".png") -> bytes:
    """Encode an HxW / HxWx3 (RGB) / HxWx4 (RGBA) uint array; returns the file bytes."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() in (".jpg", ".jpeg") else []
    limit = _ENCODE_MAX_SIDE.get(ext.lower())
    if limit is not None and max(arr.shape[:2]) > limit:
        raise OutputError(
            f"cannot encode a {arr.shape[1]}x{arr.shape[0]} image as {ext}: the format holds at most {limit} px a side",
            hint="name the output .png or .tif",
        )
    try:
        with _codec_chatter_held_back():
            ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"cannot encode image as {ext}")
    return buf.tobytes()


def _lock(fd: int) -> None:
    """Hold an exclusive ``flock`` on ``fd`` until it is closed (best effort: some file systems refuse)."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


#: longest file name most file systems allow (bytes)
_NAME_MAX = 255


def _part_stem(name: str) -> str:
    """``name`` shortened (whole UTF-8 characters) so that ``.<name>.<pid>.<8 random>.part`` fits a file name."""
    room = _NAME_MAX - len(f"..{os.getpid()}.12345678.part")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= room:
        return name
    return raw[:room].decode("utf-8", "ignore")


def not_regular_output(path: str | os.PathLike) -> str | None:
    """What an existing output path is when it is neither a regular file nor a folder (``"a
    device (character)"``, ``"a pipe (FIFO)"``, ``"a socket"``; symlinks followed), else None.

    Such a path is never written over (renaming a file over ``/dev/null`` would replace the device)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _kind(mode)


def _refuse_non_regular(path: Path) -> None:
    kind = not_regular_output(path)
    if kind is not None:
        raise OutputError(
            f"{path}: is {kind}, not a regular file; an output is never written over one",
            hint="remove it or choose another output name",
        )


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    The folder is created if needed. The temporary file is ``.<name>.<pid>.<random>.part``,
    locked while written; on any failure, an interruption included (``KeyboardInterrupt``, or
    the exception a CLI's SIGTERM / SIGHUP handler raises), it is removed and ``path`` is left
    as it was (absent or with its old content). One left behind by a killed process (SIGKILL,
    a power cut) is removed by the next run (:func:`remove_stale_parts`). An existing ``path``
    that is not a regular file (a device, a pipe, a socket; symlinks followed) is never
    replaced: it is refused before anything is written, and checked again before the rename.

    Raises:
        OutputError: the folder is not writable, the disk is full, ``path`` is a folder or not a
            regular file, etc.
    """
    path = Path(path)
    _refuse_non_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot create output folder ({err.strerror or err})") from err
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{_part_stem(path.name)}.{os.getpid()}.", suffix=".part", dir=path.parent)
    except OSError as err:
        raise OutputError(
            f"{path.parent}: cannot write here ({err.strerror or err})",
            hint="choose a writable output folder",
        ) from err
    _writing(tmp, True)
    try:
        _lock(fd)
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            _refuse_non_regular(path)
            os.replace(tmp, path)  # still locked: the temporary name never exists unlocked while we live
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OutputError) or not isinstance(err, Exception):  # an interruption stays one
            raise
        if isinstance(err, IsADirectoryError) or path.is_dir():
            raise OutputError(f"{path}: is a folder, cannot write the output there") from err
        if isinstance(err, OSError):
            raise OutputError(f"{path}: write failed ({err.strerror or err})") from err
        raise
    finally:
        _writing(tmp, False)


#: temporary files this process's :func:`atomic_write_bytes` calls are writing now
_IN_FLIGHT: set[str] = set()
_IN_FLIGHT_CHANGED = threading.Condition()


def _writing(tmp: str, started: bool) -> None:
    with _IN_FLIGHT_CHANGED:
        if started:
            _IN_FLIGHT.add(tmp)
        else:
            _IN_FLIGHT.discard(tmp)
        _IN_FLIGHT_CHANGED.notify_all()


def abandon_writes(timeout: float) -> list[Path]:
    """For a process that is stopping: let the atomic writes in flight in other threads end, then
    remove the temporary files of those that did not; returns the removed paths.

    Waits up to ``timeout`` seconds for every :func:`atomic_write_bytes` call of this process to
    finish (each completes its output or removes its temporary file). A write still running then
    (blocked on a hung disk or file system) is abandoned: its temporary file is removed here, its
    output stays as it was, and the caller should exit without waiting for that thread. An empty
    list means nothing was abandoned.
    """
    import time

    deadline = time.monotonic() + max(0.0, timeout)
    with _IN_FLIGHT_CHANGED:
        while _IN_FLIGHT:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            _IN_FLIGHT_CHANGED.wait(left)
        stuck = sorted(_IN_FLIGHT)
    removed = []
    for tmp in stuck:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
            removed.append(Path(tmp))
    return removed


#: ``.<name>.<pid>.<random>.part``: a temporary file of :func:`atomic_write_bytes` (tempfile's 8 random chars)
_PART = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]{8}\.part$")
#: the names written before the pid was part of them: ``.<name>.<random>.part``
_OLD_PART = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.part$")


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists here (when unsure: yes)."""
    if pid <= 0:
        return True  # never ours; os.kill(0, ...) would mean the process group
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: someone else's live process
        return True
    return True


def _remove_if_unlocked(path: str) -> bool:
    """Unlink ``path`` unless a live writer holds its lock (or it was swapped meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a writer (on this or another host) still has it open
            except OSError:
                pass  # no locks on this file system: the dead pid is the evidence
        st, now = os.fstat(fd), os.lstat(path)
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino) or not stat.S_ISREG(now.st_mode):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_parts(folder: str | os.PathLike, names: Iterable[str] = ()) -> list[Path]:
    """Remove temporary files that killed writers left in ``folder``; returns the removed paths.

    Only regular files named as :func:`atomic_write_bytes` names them are candidates, and only
    when their owner is gone: the pid in the name is not a live process here *and* nobody holds
    the file's lock (a writer on another host sharing the folder keeps its lock; the pid alone
    would not tell). Names from before the pid was recorded (``.<name>.<random>.part``) carry no
    owner, so they are removed only for ``names``, the outputs the caller is about to write
    itself. Best effort: anything that cannot be listed or removed is left alone.
    """
    folder = Path(folder)
    wanted = set(names)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".part")):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        match = _PART.match(name)
        if match:
            if _pid_alive(int(match["pid"])):
                continue
        else:
            match = _OLD_PART.match(name)
            if not match or match["name"] not in wanted:
                continue
        if _remove_if_unlocked(entry.path):
            removed.append(Path(entry.path))
    return removed


def _ext_of(path: Path) -> str:
    ext = path.suffix.lower()
    return ext if ext in constants.IMAGE_EXTENSIONS else ".png"


def write_alpha(path: str | os.PathLike, alpha: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an ``HxW`` alpha in [0, 1] as a grayscale PNG (8 or 16 bit), atomically."""
    atomic_write_bytes(path, encode_png(to_uint(alpha, bit_depth)))


def write_rgba(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an RGBA PNG (straight, not premultiplied alpha) from ``HxWx3`` RGB and ``HxW`` alpha."""
    rgba = np.concatenate([rgb, alpha[:, :, None]], axis=2)
    atomic_write_bytes(path, encode_png(to_uint(rgba, bit_depth)))


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an opaque ``HxWx3`` RGB image; the format follows the suffix (PNG when unknown)."""
    path = Path(path)
    ext = _ext_of(path)
    if ext in (".jpg", ".jpeg", ".webp", ".bmp") and bit_depth != 8:
        bit_depth = 8
    atomic_write_bytes(path, encode_png(to_uint(rgb, bit_depth), ext=ext))


def canonical_safetensors(raw: bytes) -> bytes:
    """``safetensors`` bytes with a canonical header (keys sorted): the same tensors and metadata
    always give the same bytes (safetensors writes its metadata in hash-map order, which varies
    from one process to the next)."""
    import json

    n = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + raw[8 + n :]
