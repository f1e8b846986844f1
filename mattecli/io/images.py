"""Reading images, single-channel maps and trimaps as float arrays; writing them as image files.

Conventions at this boundary:

* images come out as float32 ``HxWx3`` RGB in [0, 1] (EXIF orientation applied);
* single-channel maps (alphas, masks) come out as float32 ``HxW`` in [0, 1];
* trimaps come out as uint8 ``HxW`` with values exactly {0, 128, 255} (anything strictly
  between black and white is unknown);
* OpenCV's BGR order never leaves this package;
* every file is written by :func:`mattecli.io.files.atomic_write_bytes` (a temporary file, then a
  rename), so an interrupted run leaves no partial file under the target's name.

Decoding (the pixel limit, safe reads, EXIF, quiet codecs) is :mod:`mattecli.io.decode`'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mattecli import constants
from mattecli.errors import BadOptionError, ImageReadError, OutputError, TrimapError
from mattecli.io.decode import codec_chatter_held_back, decode
from mattecli.io.files import atomic_write_bytes

__all__ = [
    "UNKNOWN",
    "encode_png",
    "read_gray",
    "read_image",
    "read_trimap",
    "to_uint",
    "trimap_from_gray",
    "write_alpha",
    "write_image",
    "write_rgba",
]

#: The trimap value of the unknown region.
UNKNOWN = 128


# ----------------------------------------------------------------------------- reading
def _to_float(arr: np.ndarray, path: Path) -> np.ndarray:
    """uint8 / uint16 samples scaled to float32 [0, 1]; float samples clipped to it (NaN -> 0).

    Raises:
        ImageReadError: any other sample type.
    """
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in (np.float32, np.float64):  # float TIFF: NaN -> 0, beyond [0, 1] clipped
        return np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
    raise ImageReadError(f"{path}: unsupported sample type {arr.dtype}")


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read an image as float32 ``HxWx3`` RGB in [0, 1], C-contiguous.

    8- and 16-bit PNG/JPEG/TIFF/WebP/BMP (and float TIFF, clipped to [0, 1]), grayscale
    (replicated to RGB), RGB or RGBA (alpha dropped). EXIF orientation is applied; non-ASCII
    paths work. Only regular files are read.

    Raises:
        ImageReadError: unreadable or corrupt file, not a regular file.
        ImageTooLargeError: more pixels than ``max_pixels`` (default ``MATTECLI_MAX_PIXELS``, else 200 MP).
        BadOptionError: a bad ``max_pixels`` or ``MATTECLI_MAX_PIXELS``.
    """
    path = Path(path)
    arr = _to_float(decode(path, max_pixels), path)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def read_gray(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a single-channel map (alpha matte, mask) as float32 ``HxW`` in [0, 1], C-contiguous.

    Colour files give their first (red) channel, as the Composition-1k evaluation
    does; an RGBA file whose alpha channel is not fully opaque gives that alpha
    (a cutout used as a mask).

    Raises:
        ImageReadError, ImageTooLargeError, BadOptionError: as :func:`read_image`.
    """
    path = Path(path)
    arr = _to_float(decode(path, max_pixels), path)
    if arr.ndim == 3:
        if arr.shape[2] == 4 and float(arr[:, :, 3].min()) < 1.0:
            arr = arr[:, :, 3]
        else:
            arr = arr[:, :, 0]
    return np.ascontiguousarray(arr)


def trimap_from_gray(values: np.ndarray) -> np.ndarray:
    """A float map in [0, 1] (any shape, e.g. :func:`read_gray`'s ``HxW``) as trimap codes: uint8 of the
    same shape, 0 where ``values <= 0``, 255 where ``values >= 1``, :data:`UNKNOWN` (128) elsewhere (NaN too)."""
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
    return trimap_from_gray(gray)


# ----------------------------------------------------------------------------- writing
def to_uint(values: np.ndarray, bit_depth: int) -> np.ndarray:
    """Quantise floats in [0, 1] (clipped first) to uint8 (``bit_depth`` 8) or uint16 (16), rounding
    to nearest (``round(v * 255)`` / ``round(v * 65535)``); same shape.

    Raises:
        BadOptionError: ``bit_depth`` is not 8 or 16.
    """
    if bit_depth not in (8, 16):
        raise BadOptionError(f"bit depth must be 8 or 16, not {bit_depth}")
    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.round(np.clip(values, 0.0, 1.0) * top).astype(dtype)


#: largest side each format can store (WebP: 14-bit sizes; JPEG: 16-bit sizes)
_ENCODE_MAX_SIDE = {".webp": 16383, ".jpg": 65535, ".jpeg": 65535}


def encode_png(arr: np.ndarray, *, ext: str = ".png") -> bytes:
    """The file bytes of an ``HxW`` (gray), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA) uint8 / uint16 array,
    encoded by OpenCV as ``ext`` (default PNG; ``.jpg`` at quality 95).

    Raises:
        OutputError: the format cannot hold the size (WebP: 16383 px a side, JPEG: 65535), or
            OpenCV cannot encode it.
    """
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
        with codec_chatter_held_back():
            ok, buf = cv2.imencode(ext, np.ascontiguousarray(arr), params)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"cannot encode image as {ext}")
    return buf.tobytes()


def _ext_of(path: Path) -> str:
    ext = path.suffix.lower()
    return ext if ext in constants.IMAGE_EXTENSIONS else ".png"


def write_alpha(path: str | os.PathLike, alpha: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an ``HxW`` alpha in [0, 1] as a grayscale PNG (8 or 16 bit), atomically.

    Raises:
        OutputError, BadOptionError: as :func:`atomic_write_bytes` and :func:`to_uint`.
    """
    atomic_write_bytes(path, encode_png(to_uint(alpha, bit_depth)))


def write_rgba(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an RGBA PNG (straight, not premultiplied alpha) from ``HxWx3`` RGB and ``HxW`` alpha in
    [0, 1], atomically.

    Raises:
        OutputError, BadOptionError: as :func:`write_alpha`.
    """
    rgba = np.concatenate([rgb, alpha[:, :, None]], axis=2)
    atomic_write_bytes(path, encode_png(to_uint(rgba, bit_depth)))


def write_image(path: str | os.PathLike, rgb: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an opaque ``HxWx3`` RGB image in [0, 1], atomically; the format follows the suffix (PNG
    when it is not an image suffix), and JPEG, WebP and BMP are written at 8 bits whatever ``bit_depth``.

    Raises:
        OutputError, BadOptionError: as :func:`write_alpha`.
    """
    path = Path(path)
    ext = _ext_of(path)
    if ext in (".jpg", ".jpeg", ".webp", ".bmp") and bit_depth != 8:
        bit_depth = 8
    atomic_write_bytes(path, encode_png(to_uint(rgb, bit_depth), ext=ext))
