"""Benchmark datasets by name: find the test samples of a dataset folder, and export a composed set.

:func:`load_dataset` returns a :class:`~mattecli.benchmark.samples.Dataset`: the samples in name order
(name, image path or composition recipe, GT alpha path, trimap path, groups such as category or
type) plus the metric conventions of that benchmark:

========  ===============================================  ===========  =================
name      layout(s)                                        metric mode  groups
========  ===============================================  ===========  =================
comp1k    ``merged/ alpha_copy/ trimaps/`` (prebuilt), or  unknown      -
          the official ``fg/ alpha/ trimaps/`` +
          ``test_fg_names.txt`` / ``test_bg_names.txt`` +
          a background folder, composed on the fly
dist646   ``merged|image/ alpha_copy|alpha|GT/             unknown      -
          trimaps|trimap/`` (optionally under ``Test/``)
simd      ``<class>/{merged,trimap,alpha}/`` (SIM's        unknown      class (20)
          ``generate_testset.py`` output) or a flat
          comp1k-style folder
aim500    ``original/ mask/ [trimap/]`` +                  whole        type, category
          ``aim_category_type.json``
am2k      ``original/ mask/ [trimap/]`` (optionally        whole        -
          under ``validation/``)
folder    images + alphas [+ trimaps] matched by stem      unknown      -
          (whole without trimaps)
========  ===============================================  ===========  =================

"unknown" datasets are scored DIM-style over ``trimap == 128`` exactly (:mod:`mattecli.benchmark.metrics`),
so their trimaps are kept as stored (``exact_trimap``); ``folder`` trimaps are normalised (anything
strictly between 0 and 255 is unknown) because arbitrary data use other grey levels. A missing or
incomplete layout raises :class:`~mattecli.errors.DatasetError` whose message says what was expected
and what was found (the loaders: :mod:`mattecli.benchmark.layouts`).

Loaders take a folder. Which folder a named dataset lives in by default (``$MATTECLI_DATASETS/<name>``),
whether it holds the whole published test set, and fetching the public ones from the Hugging Face
Hub are :mod:`mattecli.benchmark.store`'s job (sizes, licences and sources: ``datasets_manifest.json``,
:mod:`mattecli.benchmark.manifest`). Composition-1k's composed images follow Adobe's recipe bit for
bit (:mod:`mattecli.benchmark.composition`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mattecli.benchmark import layouts
from mattecli.benchmark.composition import compose_files
from mattecli.benchmark.samples import Dataset
from mattecli.errors import DatasetError

__all__ = ["DATASETS", "DatasetInfo", "load_dataset", "export_prebuilt"]


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset kind: its name, title, metric conventions and loader.

    ``loader(root, **options)`` returns ``(layout, samples)`` (:mod:`mattecli.benchmark.layouts`).
    """

    name: str
    title: str
    metric_mode: str
    exact_trimap: bool
    group_keys: tuple[str, ...]
    loader: Callable[..., tuple[str, list]]


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("comp1k", "Composition-1k", "unknown", True, (), layouts.load_comp1k),
        DatasetInfo("dist646", "Distinctions-646", "unknown", True, (), layouts.load_dist646),
        DatasetInfo("aim500", "AIM-500", "whole", True, ("type", "category"), layouts.load_aim500),
        DatasetInfo("am2k", "AM-2k", "whole", True, (), layouts.load_am2k),
        DatasetInfo("simd", "SIMD", "unknown", True, ("class",), layouts.load_simd),
        DatasetInfo("folder", "folder", "unknown", False, (), layouts.load_folder),
    )
}


def load_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    limit: int | None = None,
    layout: str | None = None,
    bg_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    alpha_dir: str | os.PathLike | None = None,
    trimap_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Find the test samples of dataset ``name`` under ``root``.

    Args:
        name: one of :data:`DATASETS` (``comp1k``, ``dist646``, ``aim500``, ``am2k``,
            ``simd``, ``folder``).
        root: the dataset folder.
        limit: keep only the first ``limit`` samples (in name order).
        layout: comp1k only: force ``"merged"`` (prebuilt) or ``"compose"`` (official lists).
        bg_dir: comp1k ``compose`` layout: the background folder (auto-detected otherwise).
        image_dir, alpha_dir, trimap_dir: ``folder`` layout: explicit folders (relative to
            ``root`` or absolute); auto-detected from common names otherwise.

    Raises:
        DatasetError: unknown dataset, or a wrong/incomplete layout (the message lists
            what was expected and what was found).
    """
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if layout is not None and (name != "comp1k" or layout not in ("merged", "compose")):
        raise DatasetError(f"layout {layout!r} is not available for {name}")
    root = layouts.check_root(Path(root), info.title)
    found_layout, samples = info.loader(
        root,
        bg_dir=None if bg_dir is None else Path(bg_dir),
        layout=layout,
        image_dir=image_dir,
        alpha_dir=alpha_dir,
        trimap_dir=trimap_dir,
    )
    if not samples:
        raise DatasetError(f"{info.title}: no samples found under {root}", hint=layouts.listing(root))
    samples = sorted(samples, key=lambda s: s.name)
    metric_mode = info.metric_mode
    if name == "folder" and all(s.trimap is None for s in samples):
        metric_mode = "whole"  # no trimaps: nothing marks an unknown region
    ds = Dataset(
        name=info.name,
        title=info.title,
        root=root,
        layout=found_layout,
        metric_mode=metric_mode,
        exact_trimap=info.exact_trimap,
        group_keys=info.group_keys,
        samples=tuple(samples),
    )
    return ds.limited(limit)


def export_prebuilt(dataset: Dataset, out: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Write a dataset as the prebuilt ``merged/ alpha_copy/ trimaps/`` layout; returns files written.

    Composed images are written as PNG (lossless, so reading them back gives the
    same pixels); GT alphas and trimaps are copied byte for byte, renamed to the
    sample name (GCA-Matting's ``copy_testing_alpha.sh``). Existing files are kept unless
    ``overwrite``.

    Raises:
        ImageReadError, DatasetError: a composition input cannot be read.
        OutputError: ``out`` cannot be written.
    """
    from mattecli import io

    out = Path(out)
    written = 0
    for s in dataset:
        targets = [(out / "merged" / f"{s.name}.png", None)]
        targets.append((out / "alpha_copy" / f"{s.name}{s.alpha.suffix}", s.alpha))
        if s.trimap is not None:
            targets.append((out / "trimaps" / f"{s.name}{s.trimap.suffix}", s.trimap))
        for target, source in targets:
            if target.exists() and not overwrite:
                continue
            if source is not None:
                io.atomic_write_bytes(target, Path(source).read_bytes())
            elif s.composition is not None:
                c = s.composition
                io.atomic_write_bytes(target, io.encode_png(compose_files(c.fg, c.alpha, c.bg)))
            else:
                io.atomic_write_bytes(target, Path(s.image).read_bytes())
            written += 1
    return written
