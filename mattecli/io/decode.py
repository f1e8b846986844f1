"""File bytes to pixels: the pixel limit, safe reads, EXIF orientation, and decoders kept quiet.

:func:`decode` is the one way a file becomes an array here: the file must be a regular file no
larger than an image within the pixel limit can be (:func:`max_file_bytes`; a device or a pipe is
never read), its header is checked against the limit before any pixel is decoded (Pillow reads it,
with the EXIF orientation), OpenCV decodes it, and the orientation is applied. What the C codecs
print on file descriptor 2 meanwhile (libpng's ``libpng error: ...``, OpenCV's ``[ WARN:0@...]``)
is held back (:func:`codec_chatter_held_back`): a failure becomes one typed error, and
``MATTECLI_DEBUG=1`` lets the chatter through. A PNG that OpenCV refuses for an oversized metadata
chunk is decoded again without that chunk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np

from mattecli import constants
from mattecli.errors import BadOptionError, ImageReadError, ImageTooLargeError
from mattecli.io.inputs import file_kind
from mattecli.units import format_bytes

if not constants.MATTECLI_DEBUG:  # failures become typed errors; OpenCV's log lines would only repeat them
    with contextlib.suppress(Exception):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

__all__ = [
    "FILE_SLACK_BYTES",
    "MAX_BYTES_PER_PIXEL",
    "PNG_METADATA_CHUNK_LIMIT",
    "codec_chatter_held_back",
    "decode",
    "max_file_bytes",
    "pixel_limit",
]

# ----------------------------------------------------------------------------- the pixel limit
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


def _pixels(n: int) -> str:
    """A pixel count for messages, exact (``400 pixels``, ``200,000,001 pixels``): rounded to MP, a
    limit of 300 pixels would read "0.0 MP" and an image one pixel over 200 MP "200.0 MP"."""
    return f"{n:,} pixels"


# ----------------------------------------------------------------------------- reading the bytes
def _not_regular(path: Path, mode: int) -> ImageReadError:
    return ImageReadError(f"{path}: is {file_kind(mode)}, not an image file", hint="inputs must be regular files")


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

    Raises:
        ImageReadError: missing, a folder, not a regular file, a link loop, unreadable.
        ImageTooLargeError: larger than an image within the limit can be.
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
                f"{path}: the file is {format_bytes(st.st_size)}, more than an image of at most "
                f"{max_pixels / 1e6:.1f} MP can take ({format_bytes(limit)})",
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
                f"{path}: the file grew past {format_bytes(limit)} while read", hint=_TOO_LARGE_HINT
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


# ----------------------------------------------------------------------------- codec noise on fd 2
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
def codec_chatter_held_back() -> Iterator[None]:
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


# ----------------------------------------------------------------------------- PNG chunks
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: An ancillary PNG chunk (metadata: text, XMP, an ICC profile, EXIF) larger than this is dropped
#: when OpenCV refuses the file: OpenCV refuses any non-pixel chunk over 8 MB (libpng's default cap).
PNG_METADATA_CHUNK_LIMIT = 1 << 20
#: Text and ICC chunks, which Pillow inflates and refuses beyond its own (process-wide) caps.
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt", b"iCCP")


def _png_without(data: bytes, drop: Callable[[bytes, int], bool]) -> tuple[bytes, list[str]]:
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
            dropped.append(f"{ctype.decode('latin-1')} ({format_bytes(length)})")
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


# ----------------------------------------------------------------------------- header and orientation
def _probe(path: Path, data: bytes, max_pixels: int) -> int:
    """Check the pixel count from the header (before decoding) and return the EXIF orientation (1-8).

    Pillow reads the header. Where it refuses a PNG for its metadata (a text or ICC chunk that
    inflates beyond Pillow's caps), the header is read again without those chunks; the PNG's own
    ``IHDR`` still gives the size for the pixel limit when Pillow cannot.

    Raises:
        ImageTooLargeError: the header gives more than ``max_pixels`` pixels.
    """
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


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """An ``HxW[xC]`` array turned and mirrored as EXIF orientation tag ``orientation`` (1-8) says,
    contiguous; any other value leaves it as it is."""
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


# ----------------------------------------------------------------------------- decoding
def decode(path: Path, max_pixels: int | None) -> np.ndarray:
    """Decode ``path`` to its native layout: ``HxW`` or ``HxWxC`` (C = 3: RGB, 4: RGBA; never BGR),
    uint8, uint16 or float as stored, EXIF orientation applied.

    ``max_pixels``: the limit (``None``: :func:`pixel_limit`'s default).

    Raises:
        BadOptionError: a bad ``max_pixels`` or ``MATTECLI_MAX_PIXELS``.
        ImageReadError: unreadable, empty, corrupt, an unsupported format or channel count.
        ImageTooLargeError: more pixels than the limit, or above OpenCV's own cap.
    """
    limit = pixel_limit(max_pixels)
    data = _read_bytes(Path(path), limit)
    if not data:
        raise ImageReadError(f"{path}: file is empty")
    orientation = _probe(path, data, limit)
    unreadable = f"{path}: not a readable image (corrupt or unsupported format)"
    try:
        with codec_chatter_held_back():
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
        with codec_chatter_held_back():
            arr = cv2.imdecode(np.frombuffer(slim, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        arr = None
    if arr is None or arr.size == 0:
        raise ImageReadError(
            f"{path}: not a readable image: an oversized metadata chunk ({', '.join(dropped)}), and the "
            "pixels do not decode without it either (corrupt or unsupported format)"
        )
    return arr, orientation
