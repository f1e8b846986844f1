"""The Composition-1k test images, composed from foreground, alpha and background as Adobe's recipe does.

Ported from ``Composition_code.py``, the script Adobe distributes with the Deep Image Matting
dataset (Xu, Price, Cohen, Huang, "Deep Image Matting", CVPR 2017); it is not published in a
repository, so there is no commit to cite. The script's rules, kept here bit for bit:

* inputs are decoded by Pillow (no EXIF rotation); the foreground as RGB (RGBA drops its alpha),
  the alpha as channel 0 (8-bit), the background as RGB;
* a background smaller than the foreground in either direction is upscaled by
  ``ratio = max(w / bw, h / bh)`` to ``(ceil(bw * ratio), ceil(bh * ratio))`` with Pillow's bicubic
  filter (never downscaled), then cropped at the top-left;
* with ``a = alpha / 255``: ``a >= 1`` copies the foreground, ``0 < a < 1`` gives
  ``int(a * F + (1 - a) * B)`` per channel (float64, truncated), ``a == 0`` keeps the background.

So the composites are bit-identical to a ``merged/`` folder the script made with the same Pillow.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np

from mattecli import constants
from mattecli.errors import DatasetError, ImageReadError, ImageTooLargeError

__all__ = ["compose", "compose_files"]


def compose(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Composite one test image with Adobe's ``Composition_code.py`` recipe, bit-exactly.

    Args:
        fg: uint8 ``HxWx3`` foreground (RGB).
        alpha: uint8 ``HxW`` alpha (channel 0 of the alpha file).
        bg: uint8 ``hxwx3`` background (RGB), already at its final size, i.e. at
            least ``HxW`` (see :func:`compose_files` for the resize rule).

    Returns:
        uint8 ``HxWx3``: with ``a = alpha / 255``, pixels with ``a >= 1`` copy the
        foreground, pixels with ``a > 0`` get ``int(a * F + (1 - a) * B)`` per channel
        (truncation, computed in float64 in the script's operation order), pixels with
        ``a == 0`` keep the background. The background is cropped at the top-left.
    """
    h, w = alpha.shape
    if fg.shape[:2] != (h, w):
        raise DatasetError(f"foreground is {fg.shape[1]}x{fg.shape[0]} but its alpha is {w}x{h}")
    if bg.shape[0] < h or bg.shape[1] < w:
        raise DatasetError(f"background {bg.shape[1]}x{bg.shape[0]} is smaller than the foreground {w}x{h}")
    out = np.array(bg[:h, :w, :3], dtype=np.uint8, copy=True)
    a = alpha.astype(np.float64) / 255.0
    partial = (a > 0) & (a < 1)
    ap = a[partial][:, None]
    mixed = ap * fg[partial].astype(np.float64) + (1.0 - ap) * out[partial].astype(np.float64)
    out[partial] = mixed.astype(np.uint8)  # values are >= 0, so the cast truncates like int()
    full = a >= 1
    out[full] = fg[full][:, :3]
    return out


def _pil_open(path: Path):
    """``path`` decoded by Pillow, as ``Composition_code.py`` reads it.

    Only a regular file is opened (a pipe would block, a device never end); Pillow's refusals
    (its caps on PNG text and ICC chunks included) become one :class:`ImageReadError`.
    """
    from PIL import Image

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        if os.path.islink(path):
            raise ImageReadError(f"{path}: broken symbolic link (its target does not exist)") from err
        raise DatasetError(f"{path}: no such file") from err
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from err
    if not stat.S_ISREG(mode):
        raise ImageReadError(f"{path}: not a regular file, not an image", hint="inputs must be regular files")
    try:
        img = Image.open(path)
        if img.width * img.height > constants.MAX_PIXELS:
            raise ImageTooLargeError(f"{path}: {img.width}x{img.height} exceeds the pixel limit")
        img.load()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from err
    return img


def compose_files(fg_path: Path, alpha_path: Path, bg_path: Path) -> np.ndarray:
    """Read a foreground, its alpha and a background as ``Composition_code.py`` does, and compose.

    Decoding is Pillow's (no EXIF rotation). The foreground is taken as RGB (RGBA
    drops its alpha), the alpha as channel 0 (8-bit), the background as RGB. If the
    background is smaller than the foreground in either direction it is upscaled by
    ``ratio = max(w / bw, h / bh)`` to ``(ceil(bw * ratio), ceil(bh * ratio))`` with
    Pillow's bicubic filter; it is never downscaled. Then :func:`compose`.

    Returns:
        uint8 ``HxWx3`` RGB.
    """
    from PIL import Image

    fg_img = _pil_open(Path(fg_path))
    if fg_img.mode not in ("RGB", "RGBA"):
        fg_img = fg_img.convert("RGB")
    fg = np.asarray(fg_img)[:, :, :3]
    a_img = _pil_open(Path(alpha_path))
    alpha = np.asarray(a_img)
    if alpha.ndim == 3:
        alpha = alpha[:, :, 0]
    if alpha.dtype != np.uint8:
        raise DatasetError(f"{alpha_path}: the composition recipe needs an 8-bit alpha, found {alpha.dtype}")
    bg_img = _pil_open(Path(bg_path))
    if bg_img.mode != "RGB":
        bg_img = bg_img.convert("RGB")
    h, w = alpha.shape
    bw, bh = bg_img.size
    ratio = max(w / bw, h / bh)
    if ratio > 1:
        bg_img = bg_img.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)), Image.BICUBIC)
    return compose(fg, alpha, np.asarray(bg_img))
