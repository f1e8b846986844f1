"""Memory of a run: ``--max-memory`` budgets, what is in use, and measured memory per pixel.

The budget bounds the run's peak: weights, decoded images and full-size maps count against it, and
planned tiles take what is left (see :class:`mattecli.runtime.executor.TilePolicy`). On the CPU
memory is the process's resident set (with the C heap trimmed first, so freed pages are not
counted), on CUDA torch's allocated memory.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from mattecli.errors import BadOptionError

if TYPE_CHECKING:
    import torch

__all__ = [
    "parse_memory",
    "memory_budget",
    "RAM_SHARE",
    "WHOLE_RAM_SHARE",
    "memory_in_use",
    "memory_headroom",
    "activation_bytes_per_pixel",
    "measure_bytes_per_pixel",
]

# ----------------------------------------------------------------------------- memory
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_memory(text: str) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"``, ``"2000000"`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not match:
        raise BadOptionError(f"cannot read memory size {text!r}", hint="use e.g. 8G or 512M")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def memory_in_use(device: torch.device) -> int:
    """Bytes this run holds now on ``device``: CUDA memory allocated by torch, or on the CPU the
    process's resident memory (0 where it cannot be read)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    _trim_heap()
    return _proc_status("VmRSS") or 0


#: share of the available RAM a run without ``--max-memory`` may add: ``auto`` leaves half to the
#: pipeline and the OS; an explicit ``--strategy whole`` asks for the whole pass, and is refused
#: (tiled, with a warning) only where it would not fit in memory at all
RAM_SHARE = 0.5
WHOLE_RAM_SHARE = 0.9


def memory_budget(device: torch.device, max_memory: str | int | None = None, *, ram_share: float = RAM_SHARE) -> int:
    """The most memory a run may hold on ``device`` (``--max-memory``): a bound on the peak, what is
    already in use (weights, decoded images, full-size maps) included.

    Default: what is in use now plus 80% of the free memory of a CUDA device, or plus
    ``ram_share`` of the available RAM on the CPU (half: the rest is left for the pipeline and
    the OS; :data:`WHOLE_RAM_SHARE` for an explicit ``--strategy whole``).
    """
    import torch

    if max_memory is not None:
        return max_memory if isinstance(max_memory, int) else parse_memory(max_memory)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return memory_in_use(device) + int(free * 0.8)
    return memory_in_use(device) + int(_available_ram() * ram_share)


def memory_headroom(device: torch.device, budget: int) -> int:
    """Bytes still free under ``budget`` (see :func:`memory_budget`): ``budget`` minus what is in use now."""
    return budget - memory_in_use(device)


def activation_bytes_per_pixel(
    net: torch.nn.Module, in_channels: int, *, size: int = 64, stride: int = 32, forward=None
) -> float:
    """An upper bound of a network's activation memory per input pixel, from one small probe forward.

    Sums the bytes of every module's output (as if none were freed) on a
    ``size x size`` input and divides by its pixel count. Convolutional nets scale
    linearly with the pixel count, so this bounds the memory of larger inputs.
    """
    import torch

    size = max(stride, size - size % stride)
    total = 0
    device = next(iter(net.parameters()), torch.zeros(0)).device

    def hook(_module, _inputs, output):
        nonlocal total
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.inference_mode():
            x = torch.zeros(1, in_channels, size, size, device=device)
            (forward or net)(x)
    finally:
        for h in handles:
            h.remove()
    return total / (size * size)


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``), so that RSS counts live data:
    freed-but-resident memory would let a probe reuse it unseen and measure too little."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(run, device: torch.device) -> int | None:
    """Peak memory ``run()`` adds on ``device``: CUDA allocator peak, or the process's peak RSS on the CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    _trim_heap()
    if not _reset_peak_rss():
        return None
    base = _proc_status("VmRSS")
    run()
    peak = _proc_status("VmHWM")
    return None if base is None or peak is None else peak - base


def measure_bytes_per_pixel(forward, make_input, device: torch.device, *, sizes=(256, 512)) -> float | None:
    """Measured peak memory per input pixel of ``forward(make_input(side))``, or None if it cannot be measured.

    Runs square probes of the two ``sizes`` and takes the slope of peak memory against the
    pixel count, so fixed costs (weights, allocator pools) drop out. On CUDA the allocator's
    peak is exact; on the CPU the process's peak RSS is reset (Linux ``clear_refs``) before
    each probe (after returning the C heap's free pages), and the larger of two slopes is
    kept. The larger probe is also run first once, untimed, to warm allocator caches.
    """
    import torch

    from mattecli.runtime.winograd import single_row_bands

    small, large = sizes

    def run(side: int):
        # Winograd's bands: as on a large image (runtime/winograd.py), not the whole small map at once
        with torch.inference_mode(), single_row_bands():
            forward(make_input(side))

    slopes = []
    try:
        run(large)
        for _ in range(1 if device.type == "cuda" else 2):  # RSS is noisy: the larger of two slopes
            p_small = _peak_bytes(lambda: run(small), device)
            p_large = _peak_bytes(lambda: run(large), device)
            if p_small is not None and p_large is not None and p_large > p_small:
                slopes.append((p_large - p_small) / (large * large - small * small))
    except Exception as err:  # a probe that does not fit says nothing useful
        from mattecli.runtime.device import is_oom

        if is_oom(err):
            return None
        raise
    return max(slopes) if slopes else None
