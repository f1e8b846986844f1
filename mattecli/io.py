"""Finding inputs, reading images/trimaps, and writing outputs atomically.

Conventions at this boundary (see DESIGN.md):

* images come out as float32 ``HxWx3`` RGB in [0, 1], EXIF orientation applied;
* single-channel maps (alphas, masks) come out as float32 ``HxW`` in [0, 1];
* trimaps come out as uint8 ``HxW`` with values exactly {0, 128, 255}
  (anything strictly between 0 and 255 is unknown);
* OpenCV's BGR order never leaves this module;
* every write goes to a temporary file in the destination folder and is renamed
  over the target only when complete, so an interrupted run leaves no partial file.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from mattecli import constants
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
    "discover",
    "parse_shard",
    "in_shard",
    "read_image",
    "read_gray",
    "read_trimap",
    "normalize_trimap",
    "find_by_stem",
    "is_image_path",
    "atomic_write_bytes",
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


def _scan_folder(folder: Path, recursive: bool) -> list[InputItem]:
    pattern = "**/*" if recursive else "*"
    items = [
        InputItem(p, p.relative_to(folder))
        for p in folder.glob(pattern)
        if p.is_file() and is_image_path(p) and not p.name.startswith(".")
    ]
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
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % n == k - 1


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

    Raises:
        NoInputsError: nothing matched at all, or a named path does not exist.
    """
    items: list[InputItem] = []
    for raw in inputs:
        text = os.fspath(raw)
        if text == "-":
            stream = stdin if stdin is not None else sys.stdin
            for line in stream:
                line = line.strip()
                if line:
                    p = Path(line)
                    items.extend(_scan_folder(p, recursive) if p.is_dir() else [InputItem(p, Path(p.name))])
            continue
        path = Path(text)
        if path.is_dir():
            found = _scan_folder(path, recursive)
            if not found:
                raise NoInputsError(
                    f"no images in folder {path}",
                    hint="supported: "
                    + ", ".join(sorted(constants.IMAGE_EXTENSIONS))
                    + ("" if recursive else "; use --recursive for subfolders"),
                )
            items.extend(found)
        elif path.exists():
            items.append(InputItem(path, Path(path.name)))
        elif _has_glob_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            matches = [m for m in matches if m.is_file()]
            if not matches:
                raise NoInputsError(f"no files match {text!r}")
            items.extend(InputItem(m, Path(m.name)) for m in matches)
        else:
            raise NoInputsError(f"no such file or folder: {text}")
    seen: set[Path] = set()
    unique = []
    for it in items:
        key = it.path.resolve() if it.path.exists() else it.path
        if key not in seen:
            seen.add(key)
            unique.append(it)
    if not unique:
        raise NoInputsError("no input images given", hint="pass files, folders, globs, or - for stdin")
    if shard is not None:
        unique = [it for it in unique if in_shard(it.rel.as_posix(), shard)]
    return unique


def find_by_stem(item: InputItem, folder: Path, *, role: str = "trimap") -> Path:
    """The file in ``folder`` that belongs to ``item``: same relative path and stem.

    Tries ``folder/<rel parent>/<stem>.*`` first, then ``folder/<stem>.*`` (a flat
    folder of trimaps for a recursive run). Any image extension matches.

    Raises:
        TrimapError: no such file (the message names the folder and the stem).
    """
    stem = item.rel.stem
    candidates = [folder / item.rel.parent, folder]
    for base in candidates:
        if not base.is_dir():
            continue
        exact = [p for p in sorted(base.glob(glob.escape(stem) + ".*")) if p.is_file() and is_image_path(p)]
        if exact:
            return exact[0]
    raise TrimapError(
        f"{item.path}: no {role} named {stem}.* in {folder}",
        hint=f"{role}s are matched to images by file stem",
    )


# ----------------------------------------------------------------------------- reading
def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except IsADirectoryError as err:
        raise ImageReadError(f"{path}: is a folder, not an image") from err
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: no such file") from err
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from err


def _probe(path: Path, data: bytes, max_pixels: int) -> int:
    """Check the pixel count from the header (before decoding) and return the EXIF orientation."""
    from io import BytesIO

    from PIL import Image

    orientation = 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Image.MAX_IMAGE_PIXELS = None  # we apply our own, configurable limit below
            with Image.open(BytesIO(data)) as im:
                width, height = im.size
                try:
                    orientation = int(im.getexif().get(0x0112, 1) or 1)
                except Exception:  # a broken EXIF block must not stop the image
                    orientation = 1
    except Exception:
        # Pillow cannot parse the header: let OpenCV try (and fail with a clear error).
        return 1
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{path}: {width}x{height} = {width * height / 1e6:.1f} MP exceeds the limit of {max_pixels / 1e6:.1f} MP",
            hint="raise it with --max-pixels or MATTECLI_MAX_PIXELS if the file is trusted",
        )
    return orientation


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
    limit = constants.MAX_PIXELS if max_pixels is None else max_pixels
    data = _read_bytes(Path(path))
    if not data:
        raise ImageReadError(f"{path}: file is empty")
    orientation = _probe(path, data, limit)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise ImageReadError(f"{path}: not a readable image (corrupt or unsupported format)")
    if arr.shape[0] * arr.shape[1] > limit:  # formats whose header Pillow could not read
        raise ImageTooLargeError(
            f"{path}: {arr.shape[1]}x{arr.shape[0]} exceeds the limit of {limit / 1e6:.1f} MP",
            hint="raise it with --max-pixels or MATTECLI_MAX_PIXELS if the file is trusted",
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


def _to_float(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in (np.float32, np.float64):
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
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


def encode_png(arr: np.ndarray, *, ext: str = ".png") -> bytes:
    """Encode an HxW / HxWx3 (RGB) / HxWx4 (RGBA) uint array; returns the file bytes."""
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params)
    if not ok:
        raise OutputError(f"cannot encode image as {ext}")
    return buf.tobytes()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    The folder is created if needed. On any failure the temporary file is removed
    and ``path`` is left as it was (absent or with its old content).

    Raises:
        OutputError: the folder is not writable, the disk is full, etc.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot create output folder ({err.strerror or err})") from err
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as err:
        raise OutputError(
            f"{path.parent}: cannot write here ({err.strerror or err})",
            hint="choose a writable output folder",
        ) from err
    try:
        os.chmod(tmp, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise OutputError(f"{path}: write failed ({err.strerror or err})") from err
        raise


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
