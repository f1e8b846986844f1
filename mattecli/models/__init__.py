"""The method registry: name -> :class:`MethodSpec`.

Every matting method, classical or deep, is one ``MethodSpec`` registered here; the
CLI, the batch runner and ``bench`` only read spec fields, never test method names.
Adding a method is adding one module and one ``register(...)`` call at its bottom,
plus its import below.
"""

from __future__ import annotations

from mattecli.errors import UnknownMethodError
from mattecli.models._spec import Matter, MethodConfig, MethodSpec

__all__ = ["Matter", "MethodConfig", "MethodSpec", "register", "get", "list_methods"]

_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add ``spec`` to the registry; a duplicate name is a programming error."""
    if spec.name in _REGISTRY:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


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
    """Registered method names, in registration order."""
    return list(_REGISTRY)


# Explicit imports, in the order methods are listed to users (so not sorted).
# isort: off
from mattecli.models import aim as _aim  # noqa: E402,F401
from mattecli.models import classical as _classical  # noqa: E402,F401
from mattecli.models import sim as _sim  # noqa: E402,F401
from mattecli.models import shm as _shm  # noqa: E402,F401
from mattecli.models import msia as _msia  # noqa: E402,F401
# isort: on
