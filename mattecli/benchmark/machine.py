"""The machine a benchmark ran on, and its peak memory, for the report's ``runs``.

Nothing here imports torch: CUDA is asked about only when the run has already imported torch and
initialised CUDA, so a CPU run never pays for it. Memory figures are bytes; ``None`` where the
platform does not say (no ``resource`` module on Windows, no CUDA).
"""

from __future__ import annotations

import os
import platform
import sys

import numpy as np

__all__ = ["peak_rss_bytes", "cuda_in_use", "reset_cuda_peak", "cuda_peak_bytes", "machine_info"]


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process so far (``getrusage``), in bytes; None if unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def cuda_in_use() -> bool:
    """Whether this process has imported torch and initialised CUDA (a broken CUDA install: False)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return bool(torch.cuda.is_available() and torch.cuda.is_initialized())
    except Exception:  # a broken CUDA install must not break the report
        return False


def reset_cuda_peak() -> None:
    """Start CUDA's peak-memory count again (nothing when CUDA is not in use)."""
    if cuda_in_use():
        sys.modules["torch"].cuda.reset_peak_memory_stats()


def cuda_peak_bytes() -> int | None:
    """CUDA's ``max_memory_allocated`` since the last reset, in bytes; None when CUDA is not in use."""
    if not cuda_in_use():
        return None
    try:
        return int(sys.modules["torch"].cuda.max_memory_allocated())
    except Exception:
        return None


def machine_info() -> dict:
    """Platform, Python, processor, CPU count, numpy and (when imported) torch versions and the CUDA device."""
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = getattr(torch, "__version__", None)
        if cuda_in_use():
            try:
                info["cuda_device"] = torch.cuda.get_device_name()
            except Exception:
                pass
    return info
