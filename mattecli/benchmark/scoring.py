"""Score one benchmark sample: predict (or read a prediction), prepare it as the evaluation does, measure.

:func:`open_scorer` turns :class:`~mattecli.benchmark.settings.BenchSettings` into a :class:`Scorer`:
a method resolved against its spec, its weights fetched and loaded once (or a
:class:`PredictionIndex` of a predictions folder). :meth:`Scorer.score` returns one JSON-ready row:

* ``name``, ``status`` (``"ok"``), ``groups``, ``height``, ``width``, ``megapixels``;
* ``metrics``: :func:`mattecli.benchmark.metrics.evaluate` in the dataset's metric mode;
* ``model_seconds``, ``io_seconds`` (reading the sample and the prediction, saving it),
  ``metric_seconds``, ``total_seconds``;
* ``plan`` (what ran: strategy, tile, tiles, passes, fallback) for a method's rows, and ``thumbs``
  (data URIs, :mod:`mattecli.benchmark.thumbnails`, not timed) when asked for.

Before scoring, a method's float alpha is clipped to [0, 1]; with ``clamp`` it is set to 0 / 1 where
the trimap is known (:func:`mattecli.trimap.clamp_known`), then rounded to ``quantize`` bits as a
saved PNG would be, which is what the official evaluations score.

Errors: per-image problems (an unreadable file, sizes that differ, a missing prediction, NaN from the
method) raise :class:`~mattecli.errors.InputError` or :class:`~mattecli.errors.DatasetError`, which
the run records as that image's failure; a trimap-based method on a dataset without trimaps raises
:class:`~mattecli.errors.DatasetError` from :func:`open_scorer`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mattecli.benchmark import machine, metrics
from mattecli.benchmark.samples import Dataset, Sample, exact_uint
from mattecli.benchmark.settings import BenchSettings
from mattecli.errors import DatasetError, InputError, UsageError
from mattecli.trimap import clamp_known

__all__ = ["PredictionIndex", "Scorer", "open_scorer"]


class PredictionIndex:
    """The image files under a predictions folder (recursive), for matching by sample name.

    A sample ``name`` (``stem`` or ``class/stem``) matches, in order: the file at that
    relative path (any image extension); a file whose stem is the name with ``/``
    replaced by ``_`` (SIM saves ``<class>_<name>``); a file anywhere whose stem is the
    name's last part, if exactly one has it.

    Raises:
        UsageError: the folder does not exist or holds no image file.
    """

    def __init__(self, folder: str | os.PathLike):
        from mattecli import constants

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UsageError(f"predictions folder {self.folder} does not exist")
        self.by_rel: dict[str, Path] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for p in sorted(self.folder.rglob("*")):
            if p.is_file() and p.suffix.lower() in constants.IMAGE_EXTENSIONS and not p.name.startswith("."):
                rel = p.relative_to(self.folder).with_suffix("").as_posix()
                self.by_rel.setdefault(rel, p)
                self.by_stem.setdefault(p.stem, []).append(p)
        if not self.by_rel:
            raise UsageError(f"no image files in the predictions folder {self.folder}")

    def find(self, name: str) -> Path:
        """The prediction for sample ``name``.

        Raises:
            InputError: none, or several equally good candidates.
        """
        if name in self.by_rel:
            return self.by_rel[name]
        flat = name.replace("/", "_")
        if flat in self.by_rel:
            return self.by_rel[flat]
        stem = name.rsplit("/", 1)[-1]
        hits = self.by_stem.get(stem, [])
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise InputError(
                f"{name}: several predictions named {stem}.* in {self.folder}: "
                + ", ".join(str(h.relative_to(self.folder)) for h in hits[:4])
            )
        raise InputError(f"{name}: no prediction named {name}.* in {self.folder}")


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


@dataclass(frozen=True)
class Scorer:
    """How the samples of one run are scored, and what the report records about it.

    ``matter`` (a method's :class:`~mattecli.methods.base.Matter`) or ``index`` (a predictions
    folder) makes the predictions; ``clamp``: known trimap regions forced to 0 / 1; ``source``:
    ``"model"`` or ``"predictions"``; ``weights_sha256``, ``device`` and ``budget`` (the memory plan's,
    as JSON) come from the loaded method (None for predictions).
    """

    dataset: Dataset
    settings: BenchSettings
    source: str
    clamp: bool
    matter: object | None = None
    index: PredictionIndex | None = None
    needs_trimap: bool = False
    weights_sha256: str | None = None
    device: str | None = None
    budget: dict | None = None

    def score(self, sample: Sample) -> dict:
        """One sample's row (see the module docstring).

        Raises:
            InputError, DatasetError, TrimapError, ImageReadError: this image cannot be scored.
        """
        from mattecli import io

        t_start = time.perf_counter()
        gt, trimaps = self._truth(sample)
        image, plan, model_seconds = None, None, 0.0
        if self.index is not None:
            pred = exact_uint(io.read_gray(self.index.find(sample.name)))
            io_seconds = time.perf_counter() - t_start
        else:
            image = sample.load_image()
            io_seconds = time.perf_counter() - t_start
            if image.shape[:2] != gt.shape:
                raise InputError(f"{sample.name}: image is {_size(image)} but the alpha is {_size(gt)}")
            t0 = time.perf_counter()
            pred, plan = self._predict(sample, image, trimaps)
            model_seconds = time.perf_counter() - t0
        pred = self._prepared(sample, pred, gt, trimaps)
        io_seconds += self._save(sample, pred)
        t0 = time.perf_counter()
        values = metrics.evaluate(
            pred, gt, None if trimaps is None else trimaps[0], mode=self.dataset.metric_mode,
            grad_norm=self.settings.grad_norm,
        )  # fmt: skip
        metric_seconds = time.perf_counter() - t0
        h, w = gt.shape
        row = {
            "name": sample.name,
            "status": "ok",
            "groups": dict(sample.groups),
            "metrics": values,
            "height": h,
            "width": w,
            "megapixels": h * w / 1e6,
            "model_seconds": model_seconds,
            "io_seconds": io_seconds,
            "metric_seconds": metric_seconds,
            "total_seconds": time.perf_counter() - t_start,
        }
        if plan is not None:  # what ran on this image: strategy, tiles, reduced passes, fallbacks
            row["plan"] = {k: plan.get(k) for k in ("strategy", "tile", "tiles", "passes", "fallback")}
        if self.settings.thumbnails:  # for bench --html; not timed
            row["thumbs"] = self._thumbnails(sample, image, gt, pred, trimaps)
        return row

    def _truth(self, sample: Sample) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """The GT alpha and ``(metric trimap, model trimap)`` (None without a trimap), checked."""
        gt = sample.load_alpha()
        trimaps = sample.load_trimap(exact=self.dataset.exact_trimap)
        if trimaps is not None and trimaps[0].shape != gt.shape:
            raise InputError(f"{sample.name}: trimap is {_size(trimaps[0])} but the alpha is {_size(gt)}")
        if self.dataset.metric_mode == "unknown" and trimaps is None:
            raise InputError(f"{sample.name}: no trimap, but {self.dataset.title} is scored over the unknown region")
        return gt, trimaps

    def _predict(self, sample: Sample, image: np.ndarray, trimaps) -> tuple[np.ndarray, dict]:
        """The method's alpha (NaN refused, floats clipped to [0, 1]) and its plan."""
        model_trimap = trimaps[1] if (self.needs_trimap and trimaps is not None) else None
        result = self.matter.predict(image, model_trimap)  # type: ignore[union-attr]
        pred = np.asarray(result.alpha)
        if np.issubdtype(pred.dtype, np.floating):
            if np.isnan(pred).any():
                raise InputError(f"{sample.name}: the method returned NaN alpha values")
            pred = np.clip(pred, 0.0, 1.0)  # the Matter contract is [0, 1]; trim float overshoot
        return pred, dict(result.plan)

    def _prepared(self, sample: Sample, pred: np.ndarray, gt: np.ndarray, trimaps) -> np.ndarray:
        """``pred`` as it is scored: channel 0, the GT's size checked, clamped, quantised."""
        from mattecli import io

        pred = np.asarray(pred)
        if pred.ndim == 3:
            pred = pred[:, :, 0]
        if pred.shape != gt.shape:
            raise InputError(f"{sample.name}: prediction is {_size(pred)} but the alpha is {_size(gt)}")
        if self.clamp and trimaps is not None:
            pred = clamp_known(np.array(metrics.to_alpha(pred, name="prediction"), np.float32), trimaps[1])
        if self.settings.quantize is not None and np.issubdtype(pred.dtype, np.floating):
            pred = io.to_uint(pred, self.settings.quantize)
        return pred

    def _save(self, sample: Sample, pred: np.ndarray) -> float:
        """Write ``pred`` to ``save_predictions/<name>.png`` (16-bit when float); returns the seconds it took."""
        from mattecli import io

        if self.settings.save_predictions is None:
            return 0.0
        t0 = time.perf_counter()
        target = Path(self.settings.save_predictions) / f"{sample.name}.png"
        if np.issubdtype(pred.dtype, np.floating):
            io.write_alpha(target, pred, bit_depth=16)
        else:
            io.atomic_write_bytes(target, io.encode_png(pred))
        return time.perf_counter() - t0

    def _thumbnails(self, sample: Sample, image, gt: np.ndarray, pred: np.ndarray, trimaps) -> dict[str, str]:
        from mattecli.benchmark.thumbnails import sample_thumbnails

        region = None if self.dataset.metric_mode != "unknown" or trimaps is None else trimaps[0] == 128
        shown = image if image is not None else sample.load_image()
        return sample_thumbnails(shown, gt, pred, region, side=self.settings.thumbnails)


def open_scorer(settings: BenchSettings, dataset: Dataset, *, download_progress: type | None = None) -> Scorer:
    """The scorer of a run: the predictions folder indexed, or the method resolved, its weights fetched
    (``settings.options.download``; offline settings are honoured either way) and loaded once.

    Raises:
        UsageError: the predictions folder is missing or empty; an option the method cannot honour.
        DatasetError: a trimap-based method on a dataset without trimaps.
        WeightsError, DeviceError: the weights cannot be fetched or loaded, the device is not there.
    """
    if settings.predictions is not None:
        index = PredictionIndex(settings.predictions)
        return Scorer(dataset, settings, source="predictions", clamp=bool(settings.clamp_known), index=index)
    from mattecli import methods
    from mattecli.weights import prefetch

    spec = methods.get(settings.method)  # type: ignore[arg-type]
    if spec.needs_trimap and any(s.trimap is None for s in dataset):
        raise DatasetError(
            f"method {spec.name} needs trimaps but {dataset.title} under {dataset.root} has none",
            hint="use a trimap-free method, or give the dataset a trimap folder",
        )
    if settings.options.device.startswith("cuda"):
        machine.reset_cuda_peak()
    resolved = spec.resolve(settings.options)
    prefetch(resolved.weights_to_fetch(), download=settings.options.download, progress=download_progress)
    matter = spec.create(resolved)
    return Scorer(
        dataset,
        settings,
        source="model",
        clamp=spec.needs_trimap if settings.clamp_known is None else settings.clamp_known,
        matter=matter,
        needs_trimap=spec.needs_trimap,
        weights_sha256=matter.provenance.weights_sha256,
        device=matter.provenance.device,
        budget=resolved.budget.to_json() if resolved.budget is not None else None,
    )
