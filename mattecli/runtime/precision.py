"""Numeric precision of a run: fp32, or autocast to fp16 / bf16 (bf16 also on the CPU)."""

from __future__ import annotations

import contextlib

import torch

from mattecli.errors import BadOptionError

__all__ = ["PRECISIONS", "check_precision", "autocast"]

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(device: torch.device, precision: str) -> None:
    """Raise :class:`BadOptionError` unless ``precision`` can run on ``device``."""
    if precision not in PRECISIONS:
        raise BadOptionError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cpu" and precision == "fp16":
        raise BadOptionError("fp16 is not supported on the CPU", hint="use --precision bf16 or fp32")


def autocast(device: torch.device, precision: str = "fp32"):
    """Autocast context for ``precision`` (fp32 = none). On CPU only bf16 autocast is offered."""
    check_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])
