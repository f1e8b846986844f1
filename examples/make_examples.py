"""Regenerate the example images in this folder (deterministic; numpy + OpenCV only).

Each example is a procedurally drawn foreground with thin hair-like strands and soft
edges, composited over a textured background, with its exact ground-truth alpha and
a trimap cut from that alpha. Run from the repository root:

    python examples/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 320
SS = 4  # supersampling factor: strands thinner than a pixel get fractional alpha


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A colourful, busy background: blurred noise at two scales plus diagonal stripes."""
    coarse = cv2.resize(rng.random((8, 8, 3)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    fine = cv2.GaussianBlur(rng.random((size, size, 3)).astype(np.float32), (0, 0), 2.0)
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = (0.5 + 0.5 * np.sin((xx + yy) / 7.0))[:, :, None] * np.array([0.2, 0.5, 0.3], np.float32)
    bg = 0.55 * coarse + 0.25 * fine + 0.35 * stripes
    return np.clip(bg, 0, 1).astype(np.float32)


def _strands(rng: np.random.Generator, canvas: np.ndarray, center, radius, count, length, width) -> None:
    """Draw curved strands radiating from a body outline onto a supersampled uint8 canvas."""
    cx, cy = center
    for _ in range(count):
        theta = rng.uniform(0, 2 * np.pi)
        r0 = radius * rng.uniform(0.8, 1.0)
        pts = []
        x, y = cx + r0 * np.cos(theta), cy + r0 * np.sin(theta)
        ang = theta + rng.normal(0, 0.3)
        seg = length * rng.uniform(0.5, 1.0) / 12
        for _ in range(12):
            pts.append((x, y))
            ang += rng.normal(0, 0.15)
            x, y = x + seg * np.cos(ang), y + seg * np.sin(ang)
        pts = (np.array(pts) * SS).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 255, thickness=max(1, int(width * SS)), lineType=cv2.LINE_AA)


def _make_fluffy(rng: np.random.Generator):
    """An opaque fuzzy ball with a hairy rim: fractional alpha only in thin strands and the edge."""
    big = np.zeros((SIZE * SS, SIZE * SS), np.uint8)
    center, radius = (SIZE * 0.5, SIZE * 0.52), SIZE * 0.27
    cv2.ellipse(
        big,
        (int(center[0] * SS), int(center[1] * SS)),
        (int(radius * SS), int(radius * 0.9 * SS)),
        0,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
    )
    _strands(rng, big, center, radius, count=260, length=SIZE * 0.16, width=0.35)
    alpha = cv2.resize(big, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    shade = 0.75 + 0.25 * np.cos((xx - center[0]) / 40.0) * np.cos((yy - center[1]) / 33.0)
    fg = np.stack([0.85 * shade, 0.55 * shade, 0.25 * shade + 0.05], axis=2)
    return np.clip(fg, 0, 1).astype(np.float32), alpha


def _make_veil(rng: np.random.Generator):
    """A translucent veil (alpha 0.35-0.7) with a wispy, strand-covered edge and an opaque core."""
    big = np.zeros((SIZE * SS, SIZE * SS), np.uint8)
    center, radius = (SIZE * 0.48, SIZE * 0.5), SIZE * 0.3
    cv2.circle(big, (int(center[0] * SS), int(center[1] * SS)), int(radius * SS), 255, -1, cv2.LINE_AA)
    _strands(rng, big, center, radius, count=140, length=SIZE * 0.13, width=0.5)
    shape = cv2.resize(big, (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    dist = np.hypot(xx - center[0], yy - center[1]) / radius
    transparency = np.where(dist < 0.45, 1.0, 0.35 + 0.35 * (0.5 + 0.5 * np.sin(xx / 9.0)))
    alpha = shape * transparency.astype(np.float32)
    fg = np.stack([0.2 + 0.6 * (yy / SIZE), 0.75 * np.ones_like(xx), 0.95 - 0.3 * (xx / SIZE)], axis=2)
    return np.clip(fg, 0, 1).astype(np.float32), alpha


def _trimap(alpha: np.ndarray, radius: int = 6) -> np.ndarray:
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    sure = cv2.erode((alpha >= 1.0).astype(np.uint8), k)
    possible = cv2.dilate((alpha > 0.0).astype(np.uint8), k)
    tri = np.where(possible > 0, 128, 0).astype(np.uint8)
    tri[sure > 0] = 255
    return tri


def main() -> None:
    rng = np.random.default_rng(20261125)
    for name, maker in (("fluffy", _make_fluffy), ("veil", _make_veil)):
        fg, alpha = maker(rng)
        bg = _texture(rng, SIZE)
        alpha8 = np.round(alpha * 255).astype(np.uint8)
        a = alpha8.astype(np.float32)[:, :, None] / 255
        image = np.round((fg * a + bg * (1 - a)) * 255).astype(np.uint8)
        for sub, arr in (
            ("images", image[:, :, ::-1]),
            ("alpha", alpha8),
            ("trimaps", _trimap(alpha8 / 255.0)),
        ):
            (HERE / sub).mkdir(exist_ok=True)
            cv2.imwrite(str(HERE / sub / f"{name}.png"), arr)


if __name__ == "__main__":
    main()
