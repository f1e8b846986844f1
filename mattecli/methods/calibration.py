"""Data-dependent rescaling of batch norms (LSUV-style) for networks with random weights.

Random weights make deep networks grow their activations layer after layer until sigmoids
saturate and float rounding alone moves outputs by 1e-3. Benchmarks and tests that compare two
ways of computing the same thing (tiled vs whole, CPU vs CUDA) need networks that behave
numerically like trained ones: :func:`calibrating` rescales every batch norm on its first
forward so that its output has unit spread on the data seen.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["calibrating", "calibrate"]


@contextlib.contextmanager
def calibrating(*nets: torch.nn.Module):
    """Inside the block, each ``BatchNorm2d`` of ``nets`` rescales itself once, on its first forward.

    Scaling a batch norm's weight and bias by ``1/s`` scales its output by ``1/s``; the hook
    also returns the rescaled output, so later layers already see calibrated values and one
    pass calibrates the whole network. Run anything inside (a method's ``predict`` included).
    """
    done: set[int] = set()

    def hook(bn, _inputs, out):
        if id(bn) in done:
            return out
        done.add(id(bn))
        s = float(out.float().std())
        if not s > 0:
            return out
        with torch.no_grad():
            bn.weight.div_(s)
            bn.bias.div_(s)
        return out / s

    handles = [
        m.register_forward_hook(hook) for net in nets for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def calibrate(net: torch.nn.Module, *inputs: torch.Tensor) -> torch.nn.Module:
    """Calibrate ``net`` in place on one forward of ``inputs``; returns it."""
    with calibrating(net), torch.no_grad():
        net(*inputs)
    return net
