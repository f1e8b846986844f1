"""Time every metric on a synthetic 2000x2000 matte (run: python bench/metrics_speed.py [SIZE]).

The ground truth is a soft-edged disc with a noisy, hairy border; the prediction is
the GT blurred and perturbed, quantised to 8 bit like a saved PNG; the trimap is
the GT's transition band dilated/eroded by 25 px. A second, adversarial case uses
white noise (hundreds of thousands of connected components per threshold), the
worst case for Conn. Prints the median of several runs per metric.
"""

from __future__ import annotations

import platform
import sys
import time

import cv2
import numpy as np

from mattecli.benchmark import metrics


def make_case(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(yy - size / 2, xx - size / 2)
    angle = np.arctan2(yy - size / 2, xx - size / 2)
    edge = size * 0.3 + size * 0.02 * np.sin(40 * angle)
    gt = np.clip((edge - r) / (size * 0.01) + 0.5, 0, 1)
    gt = np.clip(gt + (gt > 0) * (gt < 1) * rng.normal(0, 0.1, gt.shape), 0, 1)
    gt_u8 = np.round(gt * 255).astype(np.uint8)
    pred = cv2.GaussianBlur(gt, (0, 0), 3) + rng.normal(0, 0.02, gt.shape)
    pred_u8 = np.round(np.clip(pred, 0, 1) * 255).astype(np.uint8)
    fg = (gt_u8 == 255).astype(np.uint8)
    bg = (gt_u8 == 0).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (51, 51))
    trimap = np.full(gt.shape, 128, np.uint8)
    trimap[cv2.erode(fg, kernel) > 0] = 255
    trimap[cv2.erode(bg, kernel) > 0] = 0
    return pred_u8, gt_u8, trimap


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(size: int) -> None:
    print(
        f"# metrics speed, {size}x{size}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, "
        f"cv2 threads {cv2.getNumThreads()}"
    )
    pred, gt, trimap = make_case(size)
    rng = np.random.default_rng(1)
    noise_p = rng.integers(0, 256, (size, size), dtype=np.uint8)
    noise_g = rng.integers(0, 256, (size, size), dtype=np.uint8)
    cases = {"matte": (pred, gt, trimap), "noise": (noise_p, noise_g, np.full((size, size), 128, np.uint8))}
    for label, (p, g, t) in cases.items():
        unknown = int((t == 128).sum())
        print(f"\n## case {label}: unknown pixels {unknown} ({unknown / t.size:.1%})")
        rows = rows_for(p, g, t)
        for name, fn in rows:
            print(f"{name:26s} {timed(fn) * 1000:8.1f} ms")


def rows_for(p: np.ndarray, g: np.ndarray, t: np.ndarray) -> list:
    return [
        ("sad", lambda: metrics.sad(p, g, t)),
        ("mse", lambda: metrics.mse(p, g, t)),
        ("mad", lambda: metrics.mad(p, g, t)),
        ("grad minmax", lambda: metrics.grad(p, g, t, norm="minmax")),
        ("grad 255", lambda: metrics.grad(p, g, t, norm="255")),
        ("conn", lambda: metrics.conn(p, g, t)),
        ("evaluate unknown (all)", lambda: metrics.evaluate(p, g, t, mode="unknown")),
        ("grad_aim whole", lambda: metrics.grad_aim(p, g)),
        ("conn whole", lambda: metrics.conn(p, g, None, empty="skip")),
        ("evaluate whole (all)", lambda: metrics.evaluate(p, g, t, mode="whole")),
    ]


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
