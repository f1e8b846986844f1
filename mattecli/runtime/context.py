"""Global context for tiles: pooled statistics of the whole image, recorded once and replayed.

Pooled statistics over the whole image (ASPP image pooling, squeeze-and-excitation, PSP's 1x1
bin) cannot come from a tile. :class:`GlobalContext` records them on one pass over the whole
image (at a reduced scale when it is large: :func:`context_size`) and makes every tile use the
recorded values.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["GlobalAvgPool", "GlobalContext", "CONTEXT_PIXELS", "context_size"]


# ----------------------------------------------------------------------------- global context
class GlobalAvgPool(nn.Module):
    """Mean over H and W, keeping dims: ``(N,C,H,W) -> (N,C,1,1)``; a hook point for :class:`GlobalContext`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def _is_global_pool(module: nn.Module) -> bool:
    if isinstance(module, GlobalAvgPool):
        return True
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        return size in (1, (1, 1))
    return False


class GlobalContext:
    """Whole-image pooled statistics of a network, recorded once and replayed on tiles.

    ``with ctx.record(): net(x_whole)`` stores the output of every global pooling module
    (``nn.AdaptiveAvgPool2d(1)`` and :class:`GlobalAvgPool`) in call order; inside
    ``with ctx.replay(): net(tiles)`` each of those modules returns its recorded value
    (broadcast over the batch) instead of pooling the tile. Modules called several times
    per forward replay their calls in the same order.

    The pooling modules' ``forward`` is wrapped once (not hooked per pass) and excluded
    from ``torch.compile``: a compiled network keeps one graph break per global pool
    there, and recording / replaying works in it. (Forward hooks added after compilation
    are not seen by a compiled graph: replay would silently pool the tile.)
    """

    def __init__(self, net: nn.Module):
        self.modules = [m for m in net.modules() if _is_global_pool(m)]
        self.saved: dict[int, list[torch.Tensor]] = {}
        self._calls: dict[int, int] = {}
        for module in self.modules:
            _wrap_pool(module)

    def __bool__(self) -> bool:
        return bool(self.modules)

    @property
    def recorded(self) -> bool:
        return bool(self.saved)

    @contextlib.contextmanager
    def _active(self, mode: str):
        previous = [m.__dict__.get("_global_context") for m in self.modules]
        for module in self.modules:
            module._global_context = (self, mode)
        try:
            yield self
        finally:
            for module, prev in zip(self.modules, previous, strict=True):
                module._global_context = prev

    def record(self):
        """Context manager: the passes inside it (one image, batch 1) become the recorded context."""
        self.saved = {}
        return self._active("record")

    def replaying(self, enabled: bool = True):
        """:meth:`replay` when ``enabled`` and something was recorded, else a context that does nothing."""
        return self.replay() if enabled and self.recorded else contextlib.nullcontext()

    def replay(self):
        """Context manager: global pools inside it return the recorded values."""
        if not self.saved and self.modules:
            raise RuntimeError("GlobalContext.replay() before anything was recorded")
        self._calls = {}
        return self._active("replay")

    def _pool(self, module: nn.Module, mode: str, original, x: torch.Tensor) -> torch.Tensor:
        key = id(module)
        if mode == "replay" and self.saved.get(key):
            k = self._calls.get(key, 0)
            self._calls[key] = k + 1
            value = self.saved[key][k % len(self.saved[key])]
            return value.to(x.dtype).expand(x.shape[0], *value.shape[1:]).contiguous()
        out = original(x)
        if mode == "record":
            self.saved.setdefault(key, []).append(out.detach()[:1].clone())
        return out


def _wrap_pool(module: nn.Module) -> None:
    """Route ``module``'s forward through the active :class:`GlobalContext` (once per module)."""
    if "_global_context" in module.__dict__:
        return
    original = module.forward
    module._global_context = None

    @torch.compiler.disable
    def forward(x: torch.Tensor) -> torch.Tensor:
        active = module.__dict__.get("_global_context")
        if active is None:
            return original(x)
        ctx, mode = active
        return ctx._pool(module, mode, original, x)

    module.forward = forward


#: Pixels of the reduced-scale pass that gives tiled methods their global context (512 x 512).
CONTEXT_PIXELS = 1 << 18


def context_size(h: int, w: int, stride: int, max_pixels: int = CONTEXT_PIXELS) -> tuple[int, int]:
    """The size of a global (context) pass over an ``h x w`` image: the image's own size when it has at
    most ``max_pixels`` pixels, else scaled down (aspect kept) to about that many, sides rounded to
    multiples of ``stride``."""
    if h * w <= max_pixels:
        return h, w
    s = (max_pixels / (h * w)) ** 0.5

    def side(n: int) -> int:
        return max(stride, round(n * s / stride) * stride)

    return side(h), side(w)
