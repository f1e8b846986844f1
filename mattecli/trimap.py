"""Trimaps from alpha mattes or binary masks, and trimap helpers shared by methods.

A trimap here is uint8 ``HxW`` with 0 = background, 128 = unknown, 255 = foreground.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mattecli import batch, io
from mattecli.errors import BadOptionError

__all__ = ["TrimapSettings", "make_trimap", "clamp_known", "structuring_element", "trimap_files"]

_SHAPES = {"ellipse": cv2.MORPH_ELLIPSE, "square": cv2.MORPH_RECT, "cross": cv2.MORPH_CROSS}


@dataclass(frozen=True)
class TrimapSettings:
    """How a trimap is cut from an alpha matte or mask.

    Attributes:
        erode: radius (px) by which the certain foreground shrinks.
        dilate: radius (px) by which the possible foreground grows; outside is background.
        iterations: how many times each morphology pass is applied.
        threshold: if set, the input is binarised at this value in [0, 1] first (for
            soft masks); otherwise certain foreground is alpha == 1 and possible
            foreground is alpha > 0, so a matte's own soft edge stays unknown.
        shape: structuring element, ``ellipse`` (default), ``square`` or ``cross``.
    """

    erode: int = 10
    dilate: int = 10
    iterations: int = 1
    threshold: float | None = None
    shape: str = "ellipse"

    @classmethod
    def from_width(cls, width: int, **kw) -> TrimapSettings:
        """An unknown band ``width`` px wide centred on the edge (erode = width // 2, dilate = the rest)."""
        return cls(erode=width // 2, dilate=width - width // 2, **kw)

    def validate(self) -> TrimapSettings:
        if self.erode < 0 or self.dilate < 0:
            raise BadOptionError("--erode and --dilate must be >= 0")
        if self.iterations < 1:
            raise BadOptionError("--iterations must be >= 1")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise BadOptionError("--threshold must be in (0, 1]")
        if self.shape not in _SHAPES:
            raise BadOptionError(f"--shape must be one of {', '.join(_SHAPES)}")
        return self


def structuring_element(radius: int, shape: str = "ellipse") -> np.ndarray:
    """A (2r+1)x(2r+1) uint8 kernel (OpenCV's ellipse, rectangle or cross)."""
    return cv2.getStructuringElement(_SHAPES[shape], (2 * radius + 1, 2 * radius + 1))


def make_trimap(alpha: np.ndarray, settings: TrimapSettings | None = None) -> np.ndarray:
    """Cut a trimap from an alpha matte or mask.

    Args:
        alpha: float ``HxW`` in [0, 1] (or uint8, read as /255).
        settings: see :class:`TrimapSettings`.

    Returns:
        uint8 ``HxW`` in {0, 128, 255}: foreground = certain foreground eroded,
        background = outside the dilated possible foreground, unknown in between.
    """
    s = (settings or TrimapSettings()).validate()
    a = alpha.astype(np.float32) / 255.0 if alpha.dtype == np.uint8 else alpha.astype(np.float32)
    if s.threshold is not None:
        sure = possible = a >= s.threshold
    else:
        sure, possible = a >= 1.0, a > 0.0
    sure = sure.astype(np.uint8)
    possible = possible.astype(np.uint8)
    # Beyond the frame the edge pixels repeat: the frame border is not an object edge.
    if s.erode > 0:
        sure = cv2.erode(
            sure,
            structuring_element(s.erode, s.shape),
            iterations=s.iterations,
            borderType=cv2.BORDER_REPLICATE,
        )
    if s.dilate > 0:
        possible = cv2.dilate(
            possible,
            structuring_element(s.dilate, s.shape),
            iterations=s.iterations,
            borderType=cv2.BORDER_REPLICATE,
        )
    trimap = np.zeros(a.shape, np.uint8)
    trimap[possible > 0] = 128
    trimap[sure > 0] = 255
    return trimap


def clamp_known(alpha: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """Force alpha to 0 / 1 where the trimap is certain background / foreground (in place)."""
    alpha[trimap == 0] = 0.0
    alpha[trimap == 255] = 1.0
    return alpha


def trimap_files(
    inputs: Sequence[str | os.PathLike],
    out: Path,
    settings: TrimapSettings,
    *,
    recursive: bool = False,
    overwrite: bool = False,
    stdin=None,
    shard: tuple[int, int] | None = None,
    max_pixels: int | None = None,
) -> tuple[list[batch.Job], object]:
    """Plan trimaps for alpha/mask files; returns (jobs, iterator of result dicts).

    Raises (before any work):
        BadOptionError (bad settings or --max-pixels, an output that is an input), NoInputsError.
    """
    settings.validate()
    io.pixel_limit(max_pixels)
    jobs = batch.plan_jobs(io.discover(inputs, recursive=recursive, stdin=stdin, shard=shard), Path(out))
    batch.check_inputs_kept(jobs)

    def work(job: batch.Job) -> dict:
        trimap = make_trimap(io.read_gray(job.item.path, max_pixels=max_pixels), settings)
        io.atomic_write_bytes(job.output, io.encode_png(trimap))
        return {"unknown_fraction": round(float((trimap == 128).mean()), 4)}

    return jobs, batch.run_jobs(jobs, work, overwrite=overwrite, method="trimap")
