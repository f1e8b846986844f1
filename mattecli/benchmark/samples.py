"""One benchmark test image (:class:`Sample`) and a loaded test set (:class:`Dataset`).

A :class:`Sample` names its files (input image or the Composition-1k recipe that makes it, ground-truth
alpha, optional trimap) and reads them on demand: the image as float32 ``HxWx3`` RGB in [0, 1], the
alpha as exact ``uint8`` / ``uint16`` when the file is 8 / 16 bit (:func:`exact_uint`), the trimap as
uint8 ``HxW``. A :class:`Dataset` is the samples in name order plus how the benchmark scores them
(metric mode, exact trimaps, group keys). :func:`mattecli.benchmark.datasets.load_dataset` makes one.

Errors: unreadable files raise :class:`~mattecli.errors.ImageReadError` (a trimap's becomes
:class:`~mattecli.errors.TrimapError`), a bad ``limit`` :class:`~mattecli.errors.DatasetError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mattecli.benchmark.composition import compose_files
from mattecli.errors import DatasetError, ImageReadError, TrimapError

__all__ = ["Composition", "Sample", "Dataset", "exact_uint"]


@dataclass(frozen=True)
class Composition:
    """How to make one Composition-1k test image: foreground, its alpha, a background."""

    fg: Path
    alpha: Path
    bg: Path


def exact_uint(values: np.ndarray) -> np.ndarray:
    """Return ``values`` (float in [0, 1] from :func:`mattecli.io.read_gray`) as uint8 or uint16 when exact.

    ``read_gray`` stores an 8-bit file as ``float32(v / 255)``; this recovers ``v``
    (and likewise 16-bit files) so that metrics convert it exactly in float64.
    Values that are neither 8- nor 16-bit quantised are returned unchanged.
    """
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.floating):
        return arr
    for top, dtype in ((255, np.uint8), (65535, np.uint16)):
        q = np.round(arr.astype(np.float64) * top)
        if np.array_equal((q / top).astype(arr.dtype), arr):
            return q.astype(dtype)
    return arr


@dataclass(frozen=True)
class Sample:
    """One test image.

    Attributes:
        name: unique key within the dataset (a file stem, or ``class/stem`` for SIMD);
            predictions are saved and matched under this name.
        alpha: ground-truth alpha file (channel 0 is used).
        image: the input image file, or None when it is composed (``composition``).
        composition: the recipe inputs for a composed Composition-1k image.
        trimap: trimap file, if the dataset has one.
        groups: grouping of the sample, e.g. ``{"class": "fur"}`` (SIMD) or
            ``{"type": "SO", "category": "animal"}`` (AIM-500).
    """

    name: str
    alpha: Path
    image: Path | None = None
    composition: Composition | None = None
    trimap: Path | None = None
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        """The first group's value (the class / type), or None."""
        return next(iter(self.groups.values()), None)

    def load_image(self) -> np.ndarray:
        """The input image as float32 ``HxWx3`` RGB in [0, 1] (composed if need be)."""
        from mattecli import io

        if self.composition is not None:
            c = self.composition
            return compose_files(c.fg, c.alpha, c.bg).astype(np.float32) / 255.0
        assert self.image is not None
        return io.read_image(self.image)

    def load_alpha(self) -> np.ndarray:
        """The GT alpha, ``HxW``: uint8 / uint16 when the file is 8 / 16 bit (exact), else float32."""
        from mattecli import io

        return exact_uint(io.read_gray(self.alpha))

    def load_trimap(self, *, exact: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """``(metric_trimap, model_trimap)`` as uint8 ``HxW``, or None without a trimap.

        ``model_trimap`` is normalised to {0, 128, 255} (strictly between = unknown).
        ``metric_trimap`` is the stored 8-bit values when ``exact`` (DIM: only 128
        counts as unknown) and the normalised trimap otherwise.

        Raises:
            TrimapError: unreadable trimap.
        """
        from mattecli import io

        if self.trimap is None:
            return None
        try:
            gray = io.read_gray(self.trimap)
        except ImageReadError as err:
            raise TrimapError(f"trimap {err.message}", hint=err.hint) from err
        normalised = io.trimap_from_gray(gray)
        if not exact:
            return normalised, normalised
        raw = np.round(gray.astype(np.float64) * 255.0).astype(np.uint8)
        return raw, normalised

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "image": None if self.image is None else str(self.image),
            "alpha": str(self.alpha),
            "trimap": None if self.trimap is None else str(self.trimap),
            "groups": dict(self.groups),
        }


@dataclass(frozen=True)
class Dataset:
    """A loaded benchmark: samples in a fixed order plus how to score them.

    Attributes:
        name: ``comp1k``, ``dist646``, ``aim500``, ``am2k``, ``simd`` or ``folder``.
        title: human name ("Composition-1k").
        root: the folder given by the user.
        layout: which layout was found (``"merged"``, ``"compose"``, ``"classes"``...).
        metric_mode: ``"unknown"`` or ``"whole"`` (see :func:`mattecli.benchmark.metrics.evaluate`).
        exact_trimap: score with the stored trimap values (only 128 is unknown).
        group_keys: the group names samples carry (``("type", "category")``...).
        samples: the samples, sorted by name.
    """

    name: str
    title: str
    root: Path
    layout: str
    metric_mode: str
    exact_trimap: bool
    group_keys: tuple[str, ...]
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def limited(self, limit: int | None) -> Dataset:
        """The first ``limit`` samples (all when None)."""
        if limit is None:
            return self
        if limit < 0:
            raise DatasetError(f"limit must be >= 0, not {limit}")
        return replace(self, samples=self.samples[:limit])

    def describe(self) -> dict:
        """JSON-ready description for reports."""
        return {
            "name": self.name,
            "title": self.title,
            "root": str(self.root),
            "layout": self.layout,
            "metric_mode": self.metric_mode,
            "exact_trimap": self.exact_trimap,
            "group_keys": list(self.group_keys),
            "size": len(self.samples),
        }
