"""Where networks run: device selection, model preparation, out-of-memory detection.

``auto`` picks CUDA when available; asking for CUDA on a machine without it is a clear
:class:`~mattecli.errors.DeviceError`, never a silent CPU fallback.
"""

from __future__ import annotations

import torch

from mattecli.errors import BadOptionError, DeviceError

__all__ = ["select_device", "check_device", "prepare_model", "channels_last", "is_oom", "empty_cache"]


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> a usable ``torch.device``.

    Raises:
        DeviceError: CUDA asked for but not available, or no such GPU index.
    """
    text = (spec or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise BadOptionError(f"unknown device {spec!r}", hint="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {spec} requested but CUDA is not available here", hint="use --device cpu (or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    elif device.type != "cpu":
        raise BadOptionError(f"unsupported device {spec!r}", hint="use auto, cpu, cuda or cuda:N")
    return device


def check_device(spec: str) -> None:
    """Raise the error :func:`select_device` would, without keeping the device (a usage check)."""
    select_device(spec)


# ----------------------------------------------------------------------------- model preparation
def prepare_model(
    net: torch.nn.Module, device: torch.device, *, channels_last: bool | None = None, compile: bool = False
) -> torch.nn.Module:
    """Move ``net`` to ``device`` in eval mode, with the fast paths that help there.

    ``channels_last`` (default: on for CUDA, where cuDNN's NHWC kernels are faster
    for these conv nets) and cuDNN autotuning on CUDA; ``torch.compile`` only when
    asked (it pays off on long runs, not on a handful of images).
    """
    net = net.to(device).eval()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if channels_last if channels_last is not None else device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    if compile:
        net = torch.compile(net)
    return net


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """An ``(N,C,H,W)`` tensor in NHWC memory order (a no-op if it already is)."""
    return x.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- running tiles
def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error from torch (CUDA or CPU allocator)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def empty_cache() -> bool:
    """Return cached CUDA blocks to the driver after an out-of-memory error (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        return True
    return False
