"""The matting methods: name -> :class:`~mattecli.methods.base.MethodSpec`, each declared once.

Every method lives in its own folder (``aim/``, ``vitmatte/``, ``sim/``, ``shm/``, ``msia/``, ``classical/``) whose
``spec.py`` is its one declaration (see :mod:`mattecli.methods.base`). Importing this package
imports the specs only (networks load when a method is created) and plugs every weights variant's
architecture into :mod:`mattecli.weights`, which itself imports no method.

Nothing outside this package tests a method's name: the CLI, the pipelines and bench read specs.
Adding a method is adding its folder and one line to :data:`_SPECS`.
"""

from __future__ import annotations

from mattecli.errors import UnknownMethodError
from mattecli.methods.aim.spec import SPEC as _AIM
from mattecli.methods.base import (
    Capabilities,
    EngineOptions,
    Matter,
    MatteResult,
    MethodOptions,
    MethodSpec,
    Provenance,
    Published,
    Resolved,
    Variant,
)
from mattecli.methods.classical.spec import CF as _CF
from mattecli.methods.classical.spec import KNN as _KNN
from mattecli.methods.msia.spec import SPEC as _MSIA
from mattecli.methods.shm.spec import SPEC as _SHM
from mattecli.methods.sim.spec import SPEC as _SIM
from mattecli.methods.vitmatte.spec import SPEC as _VITMATTE

__all__ = [
    "Capabilities",
    "EngineOptions",
    "Matter",
    "MatteResult",
    "MethodOptions",
    "MethodSpec",
    "Provenance",
    "Published",
    "Resolved",
    "Variant",
    "DEFAULT_METHOD",
    "DEFAULT_TRIMAP_METHOD",
    "get",
    "list_methods",
    "specs",
    "variant",
    "published_for",
    "create",
]

#: In the order methods are listed to users.
_SPECS: tuple[MethodSpec, ...] = (_AIM, _VITMATTE, _CF, _KNN, _SIM, _SHM, _MSIA)
_REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}

#: ``matte`` and ``bench`` without ``--method``: automatic matting of any photo.
DEFAULT_METHOD = "aim"
#: ``--trimap auto`` (and a trimap-based method run without ``--trimap``) without ``--trimap-method``.
DEFAULT_TRIMAP_METHOD = "aim"


def get(name: str) -> MethodSpec:
    """The spec registered as ``name``.

    Raises:
        UnknownMethodError: the message lists the known methods.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(list_methods())}") from None


def list_methods() -> list[str]:
    """Registered method names, in the order they are listed to users."""
    return list(_REGISTRY)


def specs() -> tuple[MethodSpec, ...]:
    return _SPECS


def variant(name: str) -> tuple[MethodSpec, Variant]:
    """The method and the declaration of a weights variant (``sim-classifier`` -> SIM, its classifier).

    Raises:
        KeyError: no method declares it.
    """
    for spec in _SPECS:
        for v in spec.all_variants():
            if v.name == name:
                return spec, v
    raise KeyError(name)


def published_for(method: str | None, dataset: str, variant: str | None = None) -> list[Published]:
    """The numbers published for ``method`` (its ``variant``, default the method's default) on ``dataset``
    (empty if none)."""
    if method not in _REGISTRY:
        return []
    spec = _REGISTRY[method]
    variant = variant or (spec.variants[0].name if spec.variants else None)
    return [p for p in spec.published if p.dataset == dataset and p.variant in (None, variant)]


def create(name: str, options: MethodOptions | None = None) -> Matter:
    """Resolve ``options`` against method ``name`` and build it (weights loaded once)."""
    return get(name).create(options)


def _plug_architectures() -> None:
    """Give :mod:`mattecli.weights` every variant's architecture (it never imports methods)."""
    from mattecli.weights.checkpoints import register_architecture

    for spec in _SPECS:
        for v in spec.all_variants():
            register_architecture(v.name, build=v.build, remap=v.remap, detect=v.detect, replace=True)


_plug_architectures()
