"""The base of a deep method's processor: its network, its runtime, and whole / tiled / context wiring.

A processor (``methods/<name>/processor.py``) holds its method's official pre- and
post-processing and test rules. How a pass runs -- whole or on tiles, with the global context of
a reduced pass replayed on the tiles, halved when it does not fit, retried on tiles after a CUDA
out-of-memory error -- is the runtime's (:class:`~mattecli.runtime.executor.Executor`, planned
from the variant's declared memory figures), wired here once for every method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mattecli.methods.base import Provenance

__all__ = ["NetworkProcessor"]


class NetworkProcessor:
    """A loaded network with its run context (``ctx``: device, precision, executor).

    Subclasses implement ``process`` (the method's rules) and may override :meth:`call` (how the
    network is called on one prepared input). :meth:`forward` runs it under inference mode and
    the run's autocast, with the recorded global context replayed when asked; :meth:`whole_or_tiled`
    runs one dense pass whole or on tiles as the executor decides.
    """

    def __init__(self, net, ctx, *, provenance: Provenance | None = None):
        from mattecli.runtime.context import GlobalContext

        self.net = net
        self.ctx = ctx
        self.provenance = provenance
        self.context = GlobalContext(net)

    @property
    def device(self):
        return self.ctx.device

    @property
    def executor(self):
        return self.ctx.executor

    def call(self, x):
        """The network on one prepared input ``x`` (override for networks with several outputs)."""
        return self.net(x)

    def forward(self, x, *, replay: bool = False):
        """float32 output of :meth:`call` on ``x`` (channels-last), without autograd, in the run's
        precision, with the global context recorded on an earlier pass replayed when ``replay``."""
        import torch

        from mattecli.runtime.device import channels_last

        with torch.inference_mode(), self.ctx.autocast(), self.context.replaying(replay):
            return self.call(channels_last(x)).float()

    def record_context(self, run: Callable[[tuple[int, int]], Any], size: tuple[int, int], stride: int, what: str):
        """``run(size)`` as the global pass whose pooled statistics tiles replay (halved while it
        does not fit the plan: :meth:`~mattecli.runtime.executor.Executor.run_global`)."""

        def recorded(s: tuple[int, int]):
            with self.context.record():
                return run(s)

        return self.executor.run_global("whole", recorded, size, stride, what)

    def whole_or_tiled(
        self,
        x,
        *,
        stride: int,
        skip: Callable[[int, int, int, int], bool] | None = None,
        what: str,
        context: bool = True,
        name: str = "whole",
    ):
        """One dense pass of :meth:`forward` over ``x`` (``(1, C, H, W)``, H and W multiples of
        ``stride``): whole when the plan says so, else on blended tiles (``skip(y0, y1, x0, x1)``
        leaves a tile out) that replay the global context of a pass over ``x`` reduced to
        :func:`~mattecli.runtime.context.context_size` (``context``, when the network pools globally)."""
        from mattecli.runtime.context import context_size
        from mattecli.runtime.tensors import resize

        h, w = x.shape[-2:]

        def tiled():
            replay = context and bool(self.context)
            if replay:
                self.record_context(
                    lambda size: self.forward(resize(x, size)), context_size(h, w, stride), stride, what
                )
            return self.executor.tiles(name, lambda b: self.forward(b, replay=replay), x, skip=skip, what=what)

        return self.executor.run(name, whole=lambda: self.forward(x), tiled=tiled, pixels=h * w, what=what)
