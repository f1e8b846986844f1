"""What every deep method's ``load`` does first: its device, precision and executor, and its weights.

:func:`run_context` turns :class:`~mattecli.methods.base.Resolved` options into the runtime a
processor uses (one :class:`~mattecli.runtime.executor.Executor` with its tile policy), and
:func:`load_network` builds a variant's network with its weights (the cache's, or the ``--weights``
file) and says which file that was (:class:`~mattecli.methods.base.WeightsFile`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mattecli.methods.base import Provenance, Resolved, Variant, WeightsFile

__all__ = ["RunContext", "run_context", "make_context", "load_network"]


@dataclass
class RunContext:
    """The runtime of one loaded method: ``device``, ``precision`` and the ``executor`` of its passes."""

    device: Any  # torch.device
    precision: str
    executor: Any  # mattecli.runtime.executor.Executor
    compile: bool = False

    @property
    def tiles(self):
        """The executor's :class:`~mattecli.runtime.executor.TilePolicy`."""
        return self.executor.tiles_policy

    def autocast(self):
        from mattecli.runtime.precision import autocast

        return autocast(self.device, self.precision)


def run_context(resolved: Resolved, *, strategy: str | None = None, **policy: Any) -> RunContext:
    """The device, precision and executor for ``resolved``: tiles from its engine options, memory plan
    from the variant's declared :class:`~mattecli.runtime.memory.Footprint` and the run's budget
    (``strategy``: the executor's default mode, for methods whose own strategies are not
    ``auto``/``whole``/``tiled``; ``policy``: :class:`~mattecli.runtime.executor.TilePolicy` fields).
    Has no effect outside the objects it returns."""
    from mattecli.runtime.device import select_device
    from mattecli.runtime.executor import Executor, TilePolicy
    from mattecli.runtime.memory import MemoryPlan, resolve_budget

    spec, e = resolved.spec, resolved.engine
    device = select_device(resolved.options.device)
    tiles = TilePolicy(stride=spec.stride, halo=resolved.halo, tile_size=e.tile_size, batch_size=e.batch_size, **policy)
    footprint = resolved.footprint
    budget = resolved.budget or resolve_budget(e.max_memory, device.type, device.index)
    memory = MemoryPlan(footprint, budget, strategy=resolved.strategy) if footprint is not None else None
    return RunContext(
        device, resolved.options.precision, Executor(device, strategy or resolved.strategy, tiles, memory), e.compile
    )


def make_context(
    device: Any = "cpu",
    precision: str = "fp32",
    strategy: str = "auto",
    tiles: Any = None,
    *,
    compile: bool = False,
    memory: Any = None,
) -> RunContext:
    """A :class:`RunContext` by hand (Python callers with a network of their own, tests): ``tiles`` a
    :class:`~mattecli.runtime.executor.TilePolicy` (default: stride 1, halo 64), ``memory`` a
    :class:`~mattecli.runtime.memory.MemoryPlan` (default: none, nothing is tiled for memory)."""
    import torch

    from mattecli.runtime.device import select_device
    from mattecli.runtime.executor import Executor

    dev = device if isinstance(device, torch.device) else select_device(device)
    return RunContext(dev, precision, Executor(dev, strategy, tiles, memory), compile)


def load_network(
    resolved: Resolved,
    variant: Variant,
    device: Any,
    *,
    file: str | Path | None = None,
    fold: bool = True,
):
    """``(network in eval mode on device, WeightsFile)`` for ``variant``: weights from ``file`` (a
    ``--weights`` override, checked key by key) or from the cache (downloaded first unless
    ``download`` is off).

    With ``fold`` (default) the network's batch norms are then folded into their convolutions
    (:func:`mattecli.runtime.fold.fold_batchnorm`: the same outputs to float rounding, one pass less
    per normalised feature map). The returned network's parameter names are no longer the
    checkpoint's, so nothing may load a state dict into it. (Winograd's path for the large 3x3
    convolutions, :func:`mattecli.runtime.winograd.use_winograd`, comes after the network is
    placed, in the methods that use it.)"""
    from mattecli.runtime.fold import fold_batchnorm
    from mattecli.weights import load_model, local_path, sha256_file

    source = Path(file).expanduser() if file is not None else None
    net = load_model(
        variant.name, device, source, download=resolved.options.download, architecture=variant.architecture
    )
    if fold:
        fold_batchnorm(net.eval())
    used = source if source is not None else local_path(variant.name)
    return net, WeightsFile(variant.name, used, sha256_file(used))


def load_one_network(resolved: Resolved, method: str) -> tuple[Any, RunContext, Provenance]:
    """``(network, run context, provenance)`` of a method that runs one network whole or on tiles
    (MSIA, ViTMatte): the run context of ``resolved``, the variant's network with its weights
    (:func:`load_network`, batch norms folded), placed on the device and compiled where
    ``--compile`` asks, and the provenance naming ``method``, the variant, its weights file, the
    device and the memory budget."""
    from mattecli.runtime.device import prepare_model

    ctx = run_context(resolved)
    variant = resolved.variant
    net, weights = load_network(resolved, variant, ctx.device, file=resolved.options.weights)
    net = prepare_model(net, ctx.device, compile=ctx.compile)
    provenance = Provenance(method, variant.name, (weights,), str(ctx.device), resolved.budget.to_json())
    return net, ctx, provenance
