"""One picture per matted image (``matte --preview``): input | trimap | alpha | cut-out over a checkerboard.

The panels sit side by side, each the image scaled by the same factor, so that the whole picture is
at most :data:`MAX_WIDTH` pixels wide (``GAP`` px of dark grey between panels). Images smaller than
:data:`MIN_HEIGHT` are enlarged by a whole factor (nearest neighbour) so that a tiny image still shows;
larger ones are reduced by area averaging. The trimap panel is left out when there is no trimap
(a trimap-free method that predicts none). The cut-out is the estimated foreground
(:func:`mattecli.composite.estimate_foreground`, as ``--cutout`` writes it) over a light checkerboard
of :data:`CHECKER` px squares, composited at the panel's size so the squares stay sharp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "MAX_WIDTH",
    "GAP",
    "MIN_HEIGHT",
    "CHECKER",
    "Layout",
    "layout",
    "resize_panel",
    "checkerboard",
    "render_preview",
]

MAX_WIDTH = 2048
GAP = 4
MIN_HEIGHT = 96
CHECKER = 8
GAP_COLOR = 40
CHECKER_COLORS = (204, 153)  # light, dark (8-bit grey)


@dataclass(frozen=True)
class Layout:
    """Where the panels go: each ``height x width``, the ``n`` panels' left edges ``x``, the picture's size."""

    height: int
    width: int
    x: tuple[int, ...]

    @property
    def total_width(self) -> int:
        return self.x[-1] + self.width


def layout(
    h: int, w: int, n: int, *, max_width: int = MAX_WIDTH, gap: int = GAP, min_height: int = MIN_HEIGHT
) -> Layout:
    """The panel size for an ``h x w`` image shown ``n`` times side by side in at most ``max_width`` px."""
    room = max_width - gap * (n - 1)
    fit = room / (n * w)  # the scale at which the panels fill the width
    if fit >= 1 and h < min_height:  # tiny: enlarge by a whole factor, still within the width
        scale = float(max(1, min(int(fit), -(-min_height // h))))
    else:
        scale = min(1.0, fit)
    pw = max(1, min(room // n, round(w * scale)))
    ph = max(1, round(h * scale))
    return Layout(ph, pw, tuple(i * (pw + gap) for i in range(n)))


def resize_panel(values: np.ndarray, size: tuple[int, int], *, nearest: bool = False) -> np.ndarray:
    """``values`` (HxW or HxWxC) resized to ``size`` = (height, width): area averaging when reducing,
    nearest neighbour when enlarging (or when ``nearest``: a trimap keeps its three levels)."""
    h, w = values.shape[:2]
    if (h, w) == tuple(size):
        return values
    enlarge = size[0] >= h and size[1] >= w
    interp = cv2.INTER_NEAREST if (nearest or enlarge) else cv2.INTER_AREA
    return cv2.resize(np.ascontiguousarray(values), (size[1], size[0]), interpolation=interp)


def checkerboard(h: int, w: int, square: int = CHECKER) -> np.ndarray:
    """float32 ``HxWx3`` light/dark grey squares in [0, 1], the top-left square light."""
    yy, xx = np.indices((h, w))
    light = ((yy // square + xx // square) % 2 == 0)[:, :, None]
    a, b = (c / 255.0 for c in CHECKER_COLORS)
    return np.where(light, np.float32(a), np.float32(b)).repeat(3, axis=2).astype(np.float32)


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def render_preview(
    image: np.ndarray,
    alpha: np.ndarray,
    trimap: np.ndarray | None = None,
    *,
    foreground: np.ndarray | None = None,
    max_width: int = MAX_WIDTH,
) -> np.ndarray:
    """The preview picture: uint8 ``HxWx3`` RGB.

    Args:
        image: float32 ``HxWx3`` RGB in [0, 1].
        alpha: float ``HxW`` in [0, 1].
        trimap: uint8 ``HxW`` (0 / 128 / 255) given or predicted; None leaves its panel out.
        foreground: the estimated foreground at full size (``--cutout`` computed it already); None:
            estimated here at the panel's size (cheap).
        max_width: the picture's widest.
    """
    from mattecli.composite import estimate_foreground

    h, w = alpha.shape
    n = 4 if trimap is not None else 3
    lay = layout(h, w, n, max_width=max_width)
    size = (lay.height, lay.width)
    small_image = resize_panel(np.asarray(image, np.float32), size)
    small_alpha = np.clip(resize_panel(np.asarray(alpha, np.float32), size), 0.0, 1.0)
    if foreground is not None:
        fg = resize_panel(np.asarray(foreground, np.float32), size)
    else:
        fg = estimate_foreground(small_image, small_alpha)
    a = small_alpha[:, :, None]
    cutout = fg * a + checkerboard(*size) * (1.0 - a)
    panels = [_to_u8(small_image)]
    if trimap is not None:
        panels.append(np.repeat(resize_panel(np.asarray(trimap, np.uint8), size, nearest=True)[:, :, None], 3, axis=2))
    panels += [np.repeat(_to_u8(small_alpha)[:, :, None], 3, axis=2), _to_u8(cutout)]
    out = np.full((lay.height, lay.total_width, 3), GAP_COLOR, np.uint8)
    for x0, panel in zip(lay.x, panels, strict=True):
        out[:, x0 : x0 + lay.width] = panel
    return out
