"""Registry entries for the classical, weight-free methods (``cf``, ``knn``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mattecli.classical import estimate_alpha
from mattecli.errors import TrimapError
from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec

__all__ = ["ClassicalMatter"]


@dataclass(frozen=True)
class ClassicalMatter:
    """A :class:`~mattecli.models.Matter` backed by a pymatting solver."""

    method: str

    def predict(self, image: np.ndarray, trimap: np.ndarray | None) -> np.ndarray:
        if trimap is None:
            raise TrimapError(f"method {self.method} needs a trimap", hint="pass --trimap FILE_OR_FOLDER")
        return estimate_alpha(image, trimap, self.method)


def _factory(method: str):
    def create(config: MethodConfig) -> ClassicalMatter:
        return ClassicalMatter(method)

    return create


register(
    MethodSpec(
        name="cf",
        summary="closed-form matting (classical, no weights, CPU)",
        paper="Levin, Lischinski, Weiss: A Closed-Form Solution to Natural Image Matting, TPAMI 2008",
        needs_trimap=True,
        create=_factory("cf"),
    )
)
register(
    MethodSpec(
        name="knn",
        summary="KNN matting (classical, no weights, CPU)",
        paper="Chen, Li, Tang: KNN Matting, TPAMI 2013",
        needs_trimap=True,
        create=_factory("knn"),
    )
)
