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
    #: fetch missing weights (``weights pull``) on first use; ``False`` is ``--no-download``
    download: bool = True


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
        companions: variants loaded beside the chosen one, whatever it is (SIM's patch classifier).
        weights_for: ``weights_for(config) -> variants`` when the default rule (the chosen variant
            unless ``--weights FILE`` replaces it, plus ``companions``) does not fit.
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
    companions: tuple[str, ...] = ()
    weights_for: Callable[[MethodConfig], tuple[str, ...]] | None = None

    @property
    def variants(self) -> tuple[str, ...]:
        """The weights variants a user picks with ``--variant`` (the first is the default)."""
        return tuple(v for v in self.weights if v not in self.companions)

    def required_weights(self, config: MethodConfig) -> tuple[str, ...]:
        """Manifest variants a run with ``config`` loads, for fetching them before the first image.

        Raises:
            BadOptionError: ``config.variant`` is not one of this method's variants.
        """
        from mattecli.errors import BadOptionError

        if not self.weights:
            if config.variant is not None:
                raise BadOptionError(f"method {self.name} uses no weights; drop --variant {config.variant}")
            return ()
        choices = self.variants
        variant = config.variant or choices[0]
        if variant not in choices:
            raise BadOptionError(
                f"--variant of method {self.name} must be one of {', '.join(choices)}, not {variant!r}"
            )
        if self.weights_for is not None:
            return tuple(self.weights_for(config))
        return (() if config.weights is not None else (variant,)) + self.companions
