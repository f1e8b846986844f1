"""``MethodSpec``: everything the runner and engine need to know about one method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

__all__ = ["Matter", "MethodConfig", "MethodSpec"]


class Matter(Protocol):
    """A ready-to-run matting method (model built, weights loaded once).

    ``predict`` takes a float32 ``HxWx3`` RGB image in [0, 1] and, for trimap-based
    methods, a uint8 ``HxW`` trimap in {0, 128, 255}; it returns a float32 ``HxW``
    alpha in [0, 1] of the image's size.
    """

    def predict(self, image: np.ndarray, trimap: np.ndarray | None) -> np.ndarray: ...


@dataclass(frozen=True)
class MethodConfig:
    """Run-wide settings handed to ``MethodSpec.create``.

    Fields a method does not use are ignored by it (classical methods ignore the
    device and weights).
    """

    device: str = "auto"
    precision: str = "fp32"
    weights: Path | None = None
    variant: str | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """One matting method.

    Attributes:
        name: what users type after ``--method``.
        summary: one line for ``--help`` and the README table.
        paper: citation (authors, venue, year).
        needs_trimap: whether ``predict`` requires a trimap.
        accepts_trimap: a trimap-free method that still takes an optional trimap (its known
            regions are then clamped); methods that need one accept one anyway.
        create: ``create(config) -> Matter``; builds the model and loads weights once.
        weights: manifest variants usable with this method, the first is the default.
        stride: input sizes must be multiples of this (tiling respects it).
        margin: receptive-field margin in pixels (tile overlap).
        scales: default inference scales.
    """

    name: str
    summary: str
    paper: str
    needs_trimap: bool
    create: Callable[[MethodConfig], Matter]
    weights: tuple[str, ...] = ()
    accepts_trimap: bool = False
    stride: int = 1
    margin: int = 0
    scales: tuple[float, ...] = (1.0,)
