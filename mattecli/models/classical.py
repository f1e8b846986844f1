"""Registry entries for the classical, weight-free methods (``cf``, ``knn``).

``MethodConfig.options`` used here (None means "not given"): ``strategy``
(``auto``, the default: whole when its estimated peak memory fits ``max_memory``,
else tiled; ``whole``; ``tiled``), ``tile_size`` and ``tile_overlap`` (px) and
``max_memory`` (bytes). See :mod:`mattecli.classical`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mattecli.classical import DEFAULT_TILE_OVERLAP, STRATEGIES, estimate_alpha
from mattecli.errors import BadOptionError, TrimapError
from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec

__all__ = ["ClassicalMatter"]


@dataclass(frozen=True)
class ClassicalMatter:
    """A :class:`~mattecli.models.Matter` backed by a pymatting solver."""

    method: str
    strategy: str = "auto"
    tile_size: int | None = None
    tile_overlap: int | None = None
    max_memory: int | None = None

    def predict(self, image: np.ndarray, trimap: np.ndarray | None) -> np.ndarray:
        if trimap is None:
            raise TrimapError(f"method {self.method} needs a trimap", hint="pass --trimap FILE_OR_FOLDER")
        return estimate_alpha(
            image,
            trimap,
            self.method,
            strategy=self.strategy,
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            max_memory=self.max_memory,
        )


def _factory(method: str):
    def create(config: MethodConfig) -> ClassicalMatter:
        opts = config.options
        strategy = opts.get("strategy") or "auto"
        if strategy not in STRATEGIES:
            raise BadOptionError(f"{method} strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        sizes = {}
        for name, low in (("tile_size", 16), ("tile_overlap", 0)):
            if opts.get(name) is not None:
                sizes[name] = int(opts[name])
                if sizes[name] < low:
                    raise BadOptionError(f"--{name.replace('_', '-')} must be >= {low}")
        max_memory = opts.get("max_memory")
        return ClassicalMatter(
            method,
            strategy,
            tile_size=sizes.get("tile_size"),
            tile_overlap=sizes.get("tile_overlap"),
            max_memory=int(max_memory) if max_memory is not None else None,
        )

    return create


register(
    MethodSpec(
        name="cf",
        summary="closed-form matting (classical, no weights, CPU)",
        paper="Levin, Lischinski, Weiss: A Closed-Form Solution to Natural Image Matting, TPAMI 2008",
        needs_trimap=True,
        create=_factory("cf"),
        stride=1,
        margin=DEFAULT_TILE_OVERLAP,
    )
)
register(
    MethodSpec(
        name="knn",
        summary="KNN matting (classical, no weights, CPU)",
        paper="Chen, Li, Tang: KNN Matting, TPAMI 2013",
        needs_trimap=True,
        create=_factory("knn"),
        stride=1,
        margin=DEFAULT_TILE_OVERLAP,
    )
)
