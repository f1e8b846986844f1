"""The classical methods, declared once each: closed-form matting (``cf``) and KNN matting (``knn``).

Both are pymatting's solvers on the CPU in float64: no weights, no device, no precision, nothing to
compile or batch, so the spec refuses those options instead of ignoring them.
"""

from __future__ import annotations

from mattecli.methods.base import Capabilities, MethodSpec, Published
from mattecli.runtime.memory import Footprint

__all__ = ["CF", "KNN"]

_MSIA_PAPER = "MSIA paper (Qiao et al.: Multi-scale Information Assembly for Image Matting, 2020)"
_SIM_PAPER = "SIM paper (Sun, Tang, Tai: Semantic Image Matting, CVPR 2021)"
#: see mattecli.methods.classical.processor.DEFAULT_TILE_OVERLAP and MIN_CORE (kept import-free here)
_HALO = 128


def _spec(name: str, summary: str, paper: str, published: tuple[Published, ...], footprint: Footprint) -> MethodSpec:
    return MethodSpec(
        name=name,
        summary=summary,
        paper=paper,
        capabilities=Capabilities(needs_trimap=True),
        load="mattecli.methods.classical.processor:load",
        strategies=("auto", "whole", "tiled"),
        default_strategy="auto",
        stride=1,
        margin=_HALO,
        min_tile_size=16,
        min_core=32,
        devices=("cpu",),
        precisions=("fp32",),
        compiles=False,
        batches=False,
        published=published,
        footprint=footprint,
    )


#: Declared memory of one pymatting solve (pymatting 1.1 / scipy, x86-64 Linux; bench/memory_figures.md):
#: ``solve`` bytes per pixel of the solved image (cf_laplacian keeps 25 float64 values and int64
#: indices per pixel; knn's neighbour search and CG run over every pixel) and ``unknown`` bytes per
#: unknown pixel (cf's incomplete-Cholesky factor and CG vectors); ``image`` the full-size planes
#: of the tiled solve (blend sum and weight, masks, output) and the decoded image.
CF_FOOTPRINT = Footprint(fixed=448 << 20, image=32, passes={"solve": 440, "unknown": 2600})
KNN_FOOTPRINT = Footprint(fixed=448 << 20, image=32, passes={"solve": 3700, "unknown": 0})

CF = _spec(
    "cf",
    "closed-form matting (classical, no weights, CPU)",
    "Levin, Lischinski, Weiss: A Closed-Form Solution to Natural Image Matting, TPAMI 2008",
    (
        Published(
            "cf", "comp1k", f"{_MSIA_PAPER}, Table 1", {"sad": 124.68, "mse": 0.025, "grad": 115.31, "conn": 106.06}
        ),
        Published(
            "cf", "comp1k", f"{_SIM_PAPER}, Table 2", {"sad": 168.1, "mse": 91.0e-3, "grad": 126.9, "conn": 167.9}
        ),
        Published(
            "cf", "dist646", f"{_MSIA_PAPER}, Table 2", {"sad": 105.73, "mse": 0.023, "grad": 91.76, "conn": 114.55}
        ),
    ),
    CF_FOOTPRINT,
)
KNN = _spec(
    "knn",
    "KNN matting (classical, no weights, CPU)",
    "Chen, Li, Tang: KNN Matting, TPAMI 2013",
    (
        Published(
            "knn", "comp1k", f"{_MSIA_PAPER}, Table 1", {"sad": 126.24, "mse": 0.025, "grad": 117.17, "conn": 131.05}
        ),
        Published(
            "knn", "comp1k", f"{_SIM_PAPER}, Table 2", {"sad": 175.4, "mse": 103.0e-3, "grad": 124.1, "conn": 176.4}
        ),
        Published(
            "knn", "dist646", f"{_MSIA_PAPER}, Table 2", {"sad": 116.68, "mse": 0.025, "grad": 103.15, "conn": 121.45}
        ),
    ),
    KNN_FOOTPRINT,
)
