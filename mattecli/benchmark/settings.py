"""What defines one benchmark run: :class:`BenchSettings`, checked once by :meth:`BenchSettings.validate`.

The settings are typed: the method's options are the :class:`~mattecli.methods.base.MethodOptions`
every command uses (variant, weights file, device, precision, downloads, engine options), checked
against the method's spec when the run opens it. :meth:`BenchSettings.recorded` is the ``settings``
block a report carries, and :func:`settings_key` the hash that keys the cached per-image rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from mattecli.benchmark.datasets import DATASETS
from mattecli.benchmark.gradient_error import GRAD_NORMS
from mattecli.errors import UsageError
from mattecli.methods.base import MethodOptions

__all__ = ["QUANTIZE", "BenchSettings", "settings_key"]

#: Bit depths a prediction may be rounded to before scoring (None: the raw float).
QUANTIZE = (8, 16, None)


@dataclass(frozen=True)
class BenchSettings:
    """Everything that defines a benchmark run.

    Attributes:
        dataset: dataset name (:data:`mattecli.benchmark.datasets.DATASETS`).
        root: dataset folder; None: the dataset's default folder (:func:`mattecli.benchmark.run.default_folder`,
            which fetches a missing public test set first).
        method: registered method name; with ``predictions`` it only labels the report.
        predictions: score the mattes in this folder (matched by name/stem) instead of running a method.
        options: how the method is built and run (variant, weights file, device, precision, whether
            missing weights are downloaded, engine options); ignored with ``predictions``.
        shard: ``(K, N)``: score only the samples of shard K of N (by sample name); the partial
            reports combine with :func:`mattecli.benchmark.reports.merge_reports` into the full one.
        limit: first N samples only.
        grad_norm: ``minmax`` (MATLAB mat2gray) or ``255``.
        quantize: 8 or 16 to score the prediction rounded to that bit depth (what a saved PNG holds;
            8 is what the official evaluations see), None for the raw float.
        clamp_known: force 0/1 in known trimap regions before scoring; None means "yes for
            trimap-based methods, no for a predictions folder".
        save_predictions: folder to write the scored predictions to (PNG, ``<name>.png``).
        dataset_options: extra :func:`mattecli.benchmark.datasets.load_dataset` arguments
            (``layout``, ``bg_dir``, ``image_dir``, ``alpha_dir``, ``trimap_dir``).
        dataset_source: where the dataset came from (default folder, Hub repository and commit,
            licence; :meth:`mattecli.benchmark.store.DatasetStatus.source_json`), recorded in the
            report; the Hub commit also keys the row cache.
        allow_incomplete: a default-folder dataset with fewer images than the published test set is
            scored instead of refused.
        thumbnails: keep per-sample thumbnails of this longer side (image, GT, prediction, error map;
            :func:`mattecli.benchmark.thumbnails.sample_thumbnails`) in each row's ``thumbs`` as data
            URIs, for ``bench --html``; None: none. Not part of the row cache's key: a cached row
            without thumbnails is computed again when they are asked for.
    """

    dataset: str
    root: str | None = None
    method: str | None = None
    predictions: str | None = None
    options: MethodOptions = field(default_factory=MethodOptions)
    shard: tuple[int, int] | None = None
    limit: int | None = None
    grad_norm: str = "minmax"
    quantize: int | None = 8
    clamp_known: bool | None = None
    save_predictions: str | None = None
    dataset_options: dict[str, str] = field(default_factory=dict)
    dataset_source: dict | None = None
    allow_incomplete: bool = False
    thumbnails: int | None = None

    def validate(self) -> None:
        """Check everything that needs no file, before any download or image.

        Raises:
            UsageError: naming the flag: an unknown dataset, ``folder`` without a root, neither a
                method nor a predictions folder, an unknown method, a bad ``grad_norm``,
                ``quantize`` or ``limit``, or ``save_predictions`` with ``predictions``.
        """
        if self.dataset not in DATASETS:
            raise UsageError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.root is None and self.dataset == "folder":
            raise UsageError("--dataset folder needs --root DIR (a folder of images and alphas)")
        if self.method is None and self.predictions is None:
            raise UsageError("give --method to run, or --predictions DIR to score existing mattes")
        if self.predictions is None:
            from mattecli import methods

            methods.get(self.method)  # type: ignore[arg-type]  # an unknown method fails before any download
        if self.grad_norm not in GRAD_NORMS:
            raise UsageError(f"--grad-norm must be {' or '.join(GRAD_NORMS)}, not {self.grad_norm!r}")
        if self.quantize not in QUANTIZE:
            raise UsageError(f"--quantize must be 8, 16 or float, not {self.quantize!r}")
        if self.limit is not None and self.limit < 0:
            raise UsageError(f"--limit must be >= 0, not {self.limit}")
        if self.predictions is not None and self.save_predictions is not None:
            raise UsageError("--save-predictions makes no sense when scoring existing predictions (--predictions)")

    @property
    def engine_fields(self) -> dict:
        """The engine options that are set (``strategy``, ``tile_size``, ``max_memory`` in bytes...), as
        recorded in reports and in the row cache's key."""
        return {k: v for k, v in asdict(self.options.engine).items() if v}

    def recorded(self, clamp: bool) -> dict:
        """The report's ``settings`` block (``clamp``: whether known trimap regions were clamped)."""
        weights = self.options.weights
        return {
            "grad_norm": self.grad_norm,
            "quantize": self.quantize,
            "clamp_known": clamp,
            "limit": self.limit,
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            "requested_device": self.options.device,
            "precision": self.options.precision,
            "weights": None if weights is None else str(weights),
            "variant": self.options.variant,
            "save_predictions": self.save_predictions,
            "dataset_options": {k: str(v) for k, v in self.dataset_options.items()},
            "method_options": self.engine_fields,
            "thumbnails": self.thumbnails,
        }


def settings_key(identity: dict) -> str:
    """A short stable hash (16 hex digits of a sha256) of the settings that determine the per-image rows."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
