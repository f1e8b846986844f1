"""Fitting checkpoints to a method's network: architectures, layouts, conversion.

* :func:`register_architecture` records a variant's :class:`Architecture` (network builder,
  official key mapping, optional detector); :mod:`mattecli.methods` registers every declared
  variant's when it is imported, and this package imports no method.
* Files are read by :func:`mattecli.weights.reading.read_checkpoint` (PyTorch, safetensors and
  MindSpore; nothing in a file can run code); :func:`checkpoint_limit` sizes the most a module's
  checkpoint archive may inflate to.
* :func:`convert_file` unwraps ``state_dict``/``model`` containers, strips ``module.``, remaps
  official keys and checks every key and shape against the module (:func:`conform`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mattecli.errors import CheckpointMismatchError, UnknownCheckpointError, WeightsUnavailableError
from mattecli.weights.manifest import CheckpointEntry, get_entry
from mattecli.weights.reading import MAX_CHECKPOINT_BYTES, read_checkpoint

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "Architecture",
    "register_architecture",
    "get_architecture",
    "checkpoint_limit",
    "META",
    "Layout",
    "layout_of",
    "conform",
    "convert_file",
    "load_into",
]

#: Prefix of our keys in safetensors metadata.
META = "mattecli."


# ----------------------------------------------------------------------------- architectures
@dataclass(frozen=True)
class Architecture:
    """How to build the module for a variant and read the authors' checkpoints into it.

    Attributes:
        variant: the manifest variant this module serves.
        build: ``build() -> nn.Module`` with the parameter names of our converted files.
        remap: ``remap(state_dict) -> state_dict`` from the official layout (after unwrapping and
            ``module.`` stripping) to ours; ``None`` when the official names are already ours.
        detect: ``detect(state_dict) -> bool``: whether a state dict is in the official layout;
            used to refuse (and name) a wrong file before remapping it.
    """

    variant: str
    build: Callable[[], nn.Module]
    remap: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
    detect: Callable[[Mapping[str, torch.Tensor]], bool] | None = None


_ARCHITECTURES: dict[str, Architecture] = {}


def register_architecture(
    variant: str,
    *,
    build: Callable[[], nn.Module],
    remap: Callable[[dict], dict] | None = None,
    detect: Callable[[Mapping], bool] | None = None,
    replace: bool = False,
) -> Architecture:
    """Record ``variant``'s network (and its official key mapping) for import and loading; returns it.

    :mod:`mattecli.methods` calls it for every variant its specs declare, with ``replace=True``.

    Raises:
        ValueError: ``variant`` is registered already and ``replace`` is false.
    """
    if variant in _ARCHITECTURES and not replace:
        raise ValueError(f"an architecture for {variant!r} is already registered")
    arch = Architecture(variant, build, remap, detect)
    _ARCHITECTURES[variant] = arch
    return arch


def get_architecture(variant: str) -> Architecture:
    """The architecture registered for ``variant`` (``mattecli.methods`` registers every method's when
    it is imported; this package imports no method), or :class:`WeightsUnavailableError`.
    """
    try:
        return _ARCHITECTURES[variant]
    except KeyError:
        import sys

        method = get_entry(variant).method
        if "mattecli.methods" not in sys.modules:  # a Python caller of mattecli.weights alone
            raise WeightsUnavailableError(
                f"no network is registered for {variant}: `import mattecli.methods` first (it gives "
                "mattecli.weights every method's networks)"
            ) from None
        raise WeightsUnavailableError(
            f"method {method} is not implemented yet, so weights for {variant} cannot be imported or loaded",
            hint="`mattecli weights list` shows which methods are available",
        ) from None


# ----------------------------------------------------------------------------- state dicts
_WRAPPERS = ("state_dict", "model", "model_state_dict")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside ``{'state_dict': ...}`` / ``{'model': ...}`` wrappers, ``module.``
    prefixes stripped."""
    import torch

    for _ in range(4):
        if not isinstance(obj, Mapping):
            raise UnknownCheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((k for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            keys = ", ".join(map(str, list(obj)[:8]))
            raise UnknownCheckpointError(f"{path} has no state dict (top-level keys: {keys or 'none'})")
        obj = obj[inner]
    else:
        raise UnknownCheckpointError(f"{path}: state dict nested too deeply")
    sd = {str(k): v for k, v in obj.items()}
    while sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


@dataclass(frozen=True)
class Layout:
    """What a module expects: shape and dtype per key, and alias key -> canonical key."""

    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    aliases: dict[str, str]

    @property
    def canonical(self) -> list[str]:
        return [k for k in self.shapes if k not in self.aliases]


def layout_of(model: nn.Module) -> Layout:
    sd = model.state_dict(keep_vars=True)
    first: dict[int, str] = {}
    aliases = {}
    for key, value in sd.items():
        owner = first.setdefault(id(value), key)
        if owner != key:
            aliases[key] = owner
    return Layout({k: tuple(v.shape) for k, v in sd.items()}, {k: v.dtype for k, v in sd.items()}, aliases)


def expected_bytes(layout: Layout) -> int:
    """The bytes of a module's tensors (parameters and buffers, each once): what its checkpoint holds."""
    total = 0
    for key in layout.canonical:
        count = 1
        for d in layout.shapes[key]:
            count *= d
        total += count * layout.dtypes[key].itemsize
    return total


def checkpoint_limit(layout: Layout | None = None, entry: CheckpointEntry | None = None) -> int:
    """The most a checkpoint archive may inflate to.

    Twice the manifest's size of the official file plus 64 MiB where the manifest knows it; else four
    times the module's tensors (room for optimizer state and an EMA copy beside the weights) plus
    256 MiB; else
    :data:`~mattecli.weights.reading.MAX_CHECKPOINT_BYTES`.
    """
    official = entry.official_file if entry is not None else None
    if official is not None and official.size:
        return 2 * official.size + (64 << 20)
    if layout is not None:
        return 4 * expected_bytes(layout) + (256 << 20)
    return MAX_CHECKPOINT_BYTES


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(map(str, shape)) + "]"


def _listing(label: str, items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
    return f"{label} ({len(items)}): {shown}"


def conform(sd: dict[str, torch.Tensor], layout: Layout, variant: str, source: Path) -> dict[str, torch.Tensor]:
    """Check ``sd`` against the module key by key; return it in canonical form (aliases dropped,
    floats cast to the module's dtype, contiguous) or raise :class:`CheckpointMismatchError`."""
    import torch

    sd = dict(sd)
    conflicts: list[str] = []
    for alias, owner in layout.aliases.items():
        if alias not in sd:
            continue
        value = sd.pop(alias)
        if owner not in sd:
            sd[owner] = value
        elif sd[owner].shape != value.shape or not torch.equal(sd[owner], value):
            conflicts.append(f"{alias} != {owner}")
    for key in layout.canonical:  # buffers not saved by very old PyTorch
        if key not in sd and key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros((), dtype=torch.long)
    missing = [k for k in layout.canonical if k not in sd]
    unexpected = [k for k in sd if k not in layout.shapes]
    wrong = []
    for key in layout.canonical:
        if key in sd:
            got, want = tuple(sd[key].shape), layout.shapes[key]
            if got != want:
                wrong.append(f"{key} {_fmt_shape(got)} expected {_fmt_shape(want)}")
            elif sd[key].is_floating_point() != layout.dtypes[key].is_floating_point:
                wrong.append(
                    f"{key} dtype {str(sd[key].dtype).removeprefix('torch.')} expected "
                    f"{str(layout.dtypes[key]).removeprefix('torch.')}"
                )
    if missing or unexpected or wrong or conflicts:
        parts = [
            _listing(label, items)
            for label, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
                ("aliases that disagree", conflicts),
            )
            if items
        ]
        err = CheckpointMismatchError(
            f"{source.name} does not match the {variant} network: " + "; ".join(parts),
            hint=f"is this a {variant} checkpoint? `mattecli weights list` shows the official files",
        )
        err.missing, err.unexpected, err.wrong_shape, err.conflicts = missing, unexpected, wrong, conflicts
        raise err
    out = {}
    for key in layout.canonical:
        t = sd[key].detach()
        if t.is_floating_point() and t.dtype != layout.dtypes[key]:
            t = t.to(layout.dtypes[key])
        out[key] = t.contiguous()
    return out


@dataclass(frozen=True)
class Converted:
    tensors: dict[str, torch.Tensor]
    source_format: str
    metadata: dict[str, str]
    verbatim: bool  # a safetensors input already in canonical form: its bytes can be kept as they are


def convert_file(path: Path, entry: CheckpointEntry, arch: Architecture, layout: Layout) -> Converted:
    """Any supported file -> canonical tensors for ``entry.variant`` (checked key by key).

    A zip archive larger than the module's tensors could explain is refused before it is inflated
    (:func:`checkpoint_limit`)."""
    fmt, obj, meta = read_checkpoint(path, max_bytes=checkpoint_limit(layout, entry))
    named = meta.get(f"{META}variant")
    if named is not None and named != entry.variant:
        raise CheckpointMismatchError(
            f"{path.name} holds weights for {named}, not {entry.variant}",
            hint=f"import it as {named}, or pick the file made for {entry.variant}",
        )
    sd = _unwrap(obj, path)
    ours = set(sd) <= set(layout.shapes)
    if fmt == "safetensors" and (named or ours):
        official = False  # a converted file
    elif arch.detect is not None:
        official = arch.detect(sd)
        if not official and not ours:
            others = [
                v for v, a in _ARCHITECTURES.items() if v != entry.variant and a.detect is not None and a.detect(sd)
            ]
            raise UnknownCheckpointError(
                f"{path.name} is not an official {entry.variant} checkpoint"
                + (f" (it looks like {', '.join(others)})" if others else ""),
                hint=entry.where_to_get(),
            )
    else:
        official = fmt != "safetensors" or not ours
    if official:
        if arch.remap is not None:
            try:
                sd = arch.remap(sd)
            except KeyError as err:
                raise UnknownCheckpointError(
                    f"{path.name} is not an official {entry.variant} checkpoint (no key {err})",
                    hint=entry.where_to_get(),
                ) from err
    tensors = conform(sd, layout, entry.variant, path)
    verbatim = (
        fmt == "safetensors"
        and named is not None
        and set(obj) == set(tensors)
        and all(obj[k].dtype == tensors[k].dtype for k in tensors)
    )
    return Converted(tensors, fmt, meta, verbatim)


def load_into(model: nn.Module, tensors: dict[str, torch.Tensor], layout: Layout, variant: str, source: Path) -> None:
    full = dict(tensors)
    for alias, owner in layout.aliases.items():
        full[alias] = tensors[owner]
    try:
        model.load_state_dict(full, strict=True)
    except RuntimeError as err:
        raise CheckpointMismatchError(
            f"{source.name} does not load into the {variant} network: {str(err).splitlines()[0]}"
        ) from err
