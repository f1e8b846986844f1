"""Running networks: device and precision selection, tensor conversion, resizing.

Every deep method goes through these helpers, so device rules live in one place:
``auto`` picks CUDA when available; asking for CUDA on a machine without it is a
clear :class:`~mattecli.errors.DeviceError`, never a silent CPU fallback.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mattecli.errors import BadOptionError, DeviceError
from mattecli.tiling import is_oom

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "select_device",
    "autocast",
    "image_to_tensor",
    "resize",
    "resize_zero_border",
    "pad_to_multiple",
    "PRECISIONS",
    "parse_memory",
    "memory_budget",
    "memory_in_use",
    "memory_headroom",
    "activation_bytes_per_pixel",
    "plan_tiles",
    "measure_bytes_per_pixel",
    "TilePolicy",
    "tile_policy",
    "CONTEXT_PIXELS",
    "context_size",
    "choose_strategy",
    "run_shrinking",
    "prepare_model",
    "channels_last",
    "is_oom",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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


def autocast(device: torch.device, precision: str = "fp32"):
    """Autocast context for ``precision`` (fp32 = none). On CPU only bf16 autocast is offered."""
    if precision not in PRECISIONS:
        raise BadOptionError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if device.type == "cpu" and precision == "fp16":
        raise BadOptionError("fp16 is not supported on the CPU", hint="use --precision bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def image_to_tensor(image: np.ndarray, device: torch.device, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """float ``HxWx3`` RGB in [0, 1] -> normalised ``(1,3,H,W)`` float32 tensor on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32, device=device)[None, :, None, None]
    return (t - m) / s


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N,C,H,W)`` with half-pixel centres and no anti-aliasing (edges replicated)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(N,C,H,W)`` bottom/right to multiples of ``multiple``; returns ``(padded, (H, W))``.

    Reflection padding, or edge replication for inputs too small to reflect; crop back
    with ``[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


def resize_zero_border(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize that treats samples outside the input as 0.

    This is ``skimage.transform.resize(order=1, mode='constant', cval=0,
    anti_aliasing=False)`` (scikit-image 0.14, which official AIM code pins): the
    same half-pixel sampling as :func:`resize`, except that output pixels whose
    bilinear support reaches past the input's edge blend with zero.
    """
    n, _, h, w = x.shape
    oh, ow = size
    if (h, w) == (oh, ow):  # every sample lands on a pixel centre: the identity
        return x.float()
    ys = (torch.arange(oh, device=x.device, dtype=torch.float32) + 0.5) * (h / oh) - 0.5
    xs = (torch.arange(ow, device=x.device, dtype=torch.float32) + 0.5) * (w / ow) - 0.5
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges
    gy = (ys + 0.5) / h * 2 - 1
    gx = (xs + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].expand(n, oh, ow, 2)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


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
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    _trim_heap()
    return _proc_status("VmRSS") or 0


def memory_budget(device: torch.device, max_memory: str | int | None = None) -> int:
    """The most memory a run may hold on ``device`` (``--max-memory``): a bound on the peak, what is
    already in use (weights, decoded images, full-size maps) included.

    Default: what is in use now plus 80% of the free memory of a CUDA device, or plus half of
    the available RAM on the CPU (the rest is left for the pipeline and the OS).
    """
    if max_memory is not None:
        return max_memory if isinstance(max_memory, int) else parse_memory(max_memory)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return memory_in_use(device) + int(free * 0.8)
    return memory_in_use(device) + _available_ram() // 2


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


def plan_tiles(
    budget: int,
    bytes_per_pixel: float,
    *,
    stride: int,
    max_tile: int = 1024,
    min_tile: int | None = None,
    max_batch: int = 8,
) -> tuple[int, int]:
    """The largest tile (a multiple of ``stride``) and then the largest batch that fit ``budget``."""
    min_tile = min_tile or stride
    tile = max_tile - max_tile % stride
    while tile > min_tile and tile * tile * bytes_per_pixel > budget:
        tile -= stride
    batch = max(1, min(max_batch, int(budget // max(1.0, tile * tile * bytes_per_pixel))))
    return max(tile, min_tile), batch


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
    small, large = sizes

    def run(side: int):
        with torch.inference_mode():
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
        if is_oom(err):
            return None
        raise
    return max(slopes) if slopes else None


#: Share of the free budget that planned tiles' measured activations may fill; the rest absorbs
#: allocator fragmentation and per-batch buffers (33 MP MSIA under 3G peaked 3.1-3.4 GiB at 100%).
PLAN_MARGIN = 0.85


@dataclass
class TilePolicy:
    """How one method tiles: tile side, halo, blend and batch, from options or from a memory budget.

    ``halo`` defaults to the method's receptive-field margin (``MethodSpec.margin``); tile
    and batch sizes come from ``budget`` and the network's measured memory per pixel
    (:func:`measure_bytes_per_pixel`, falling back to the upper bound of
    :func:`activation_bytes_per_pixel`) unless ``tile_size`` / ``batch_size`` are given.
    Tiles never shrink below ``2 * halo + blend`` plus one stride (with a warning when the
    budget asked for less).
    """

    stride: int
    halo: int
    blend: int = 32
    tile_size: int | None = None
    batch_size: int | None = None
    budget: int | None = None
    max_tile: int = 2048  # planned tiles hold at most max_tile^2 pixels (fewer where the layout gains)
    max_batch: int = 8
    bytes_per_pixel: float | None = None
    device: torch.device | None = None  # when set, memory already in use there counts against the budget

    @property
    def min_tile(self) -> int:
        need = 2 * self.halo + self.blend + self.stride
        return need + (-need) % self.stride

    def probe(self, net, forward, in_channels: int, device: torch.device) -> float:
        """Bytes per input pixel of ``forward`` (measured once, then cached; not needed with explicit sizes)."""
        if self.bytes_per_pixel is None and not (self.tile_size and self.batch_size):
            s = self.stride

            def make_input(side: int):
                side -= side % s
                return torch.zeros(1, in_channels, side, side, device=device)

            bpp = measure_bytes_per_pixel(forward, make_input, device, sizes=(max(s, 128 - 128 % s), 384 - 384 % s))
            if bpp is None:
                bpp = activation_bytes_per_pixel(net, in_channels, stride=s, forward=forward)
            self.bytes_per_pixel = bpp
        return self.bytes_per_pixel

    def headroom(self, reserve: int = 0) -> int | None:
        """Bytes the network's activations may take: the budget less what ``device`` holds now and
        ``reserve`` (full-size maps still to come); the whole budget without a ``device``."""
        if self.budget is None:
            return None
        if self.device is None:
            return self.budget
        return memory_headroom(self.device, self.budget) - reserve

    def fits(self, pixels: int) -> bool:
        """Whether a whole-image pass of ``pixels`` fits the budget (needs :meth:`probe` first)."""
        if self.budget is None or self.bytes_per_pixel is None:
            return True
        return pixels * self.bytes_per_pixel <= self.headroom()

    def plan(self, reserve: int = 0) -> tuple[int, int]:
        """``(tile, batch)``: explicit sizes, else the largest that fit the budget's headroom
        (see :meth:`headroom`; ``reserve``: bytes of full-size outputs still to be allocated)."""
        if self.tile_size and self.batch_size:
            tile, batch = self.tile_size, self.batch_size
        elif self.budget is None or self.bytes_per_pixel is None:
            tile, batch = self.tile_size or self.max_tile, self.batch_size or 1
        else:
            room = self.headroom(reserve)
            if room < self.min_tile**2 * self.bytes_per_pixel:
                warnings.warn(
                    f"--max-memory {self.budget / 2**30:.2f} GiB leaves {max(room, 0) / 2**30:.2f} GiB for the "
                    "network after what this run already holds; using the smallest tiles",
                    RuntimeWarning,
                    stacklevel=2,
                )
            tile, batch = plan_tiles(
                max(int(room * PLAN_MARGIN), 0),
                self.bytes_per_pixel,
                stride=self.stride,
                max_tile=self.tile_size or self.max_tile,
                min_tile=self.min_tile,
                max_batch=self.max_batch,
            )
            tile = self.tile_size or tile
            batch = self.batch_size or batch
        tile = max(self.stride, tile - tile % self.stride)
        if tile < self.min_tile:
            warnings.warn(f"tile {tile} is below 2 x halo + blend; using {self.min_tile}", RuntimeWarning, stacklevel=2)
            tile = self.min_tile
        return tile, batch

    def run(self, fn, source, *, size=None, skip=None, out_channels: int = 1) -> torch.Tensor:
        """:func:`mattecli.tiling.tiled_apply_safe` with this policy's sizes."""
        from mattecli.tiling import tiled_apply_safe

        h, w = size if size is not None else source.shape[-2:]
        # the blend accumulators (output + weight) and the caller's full-size result are still to come
        tile, batch = self.plan(reserve=(out_channels + 2) * 4 * int(h) * int(w))
        return tiled_apply_safe(
            fn,
            source,
            tile=tile,
            halo=self.halo,
            blend=self.blend,
            stride=self.stride,
            batch_size=batch,
            skip=skip,
            size=size,
            out_channels=out_channels,
            by_area=not self.tile_size,
            max_batch=self.max_batch,
        )


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


def run_shrinking(run, size: tuple[int, int], stride: int, what: str):
    """``run(size)``, halving ``size`` (multiples of ``stride``) after each out-of-memory error.

    For global passes (context, glance) whose size only trades precision of global
    statistics for memory; each retry warns.

    Raises:
        DeviceError: out of memory even at one stride.
    """
    while True:
        try:
            return run(size)
        except Exception as err:
            if not is_oom(err):
                raise
            del err
            device_cache_clear()
            if max(size) <= stride:
                raise DeviceError(f"out of memory even for a {stride}x{stride} {what}") from None
            size = tuple(max(stride, (s // 2) - (s // 2) % stride) for s in size)
            warnings.warn(f"{what} out of memory: retrying at {size[1]}x{size[0]}", RuntimeWarning, stacklevel=2)


def device_cache_clear() -> bool:
    """Return cached CUDA blocks to the driver after an out-of-memory error (no-op without CUDA)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        return True
    return False


def choose_strategy(strategy: str | None, policy: TilePolicy, pixels: int, net, forward, in_channels: int) -> str:
    """``whole`` or ``tiled`` for ``auto`` (None): whole when the image's pass fits the memory budget.

    A cheap upper bound (:func:`activation_bytes_per_pixel` on a 64 px probe) settles most
    images; only when the bound does not fit is the real peak measured
    (:meth:`TilePolicy.probe`).
    """
    if strategy not in (None, "auto"):
        return strategy
    if policy.budget is None:
        return "whole"
    if policy.bytes_per_pixel is None:
        bound = activation_bytes_per_pixel(net, in_channels, stride=policy.stride, forward=forward)
        if pixels * bound <= policy.budget:
            return "whole"
        policy.probe(net, forward, in_channels, next(iter(net.parameters()), torch.zeros(0)).device)
    return "whole" if policy.fits(pixels) else "tiled"


def tile_policy(spec, options: dict, device: torch.device, *, margin: int | None = None, **defaults) -> TilePolicy:
    """A :class:`TilePolicy` for ``spec`` from run options (``tile_size``, ``tile_overlap``, ``batch_size``,
    ``max_memory``); ``tile_overlap`` is the halo (default ``spec.margin``).

    Raises:
        BadOptionError: sizes below their minimum.
    """
    for name, low in (("tile_size", spec.stride), ("tile_overlap", 0), ("batch_size", 1)):
        if options.get(name) is not None and int(options[name]) < low:
            raise BadOptionError(f"--{name.replace('_', '-')} must be >= {low}")
    halo = options.get("tile_overlap")
    return TilePolicy(
        stride=spec.stride,
        halo=int((spec.margin if margin is None else margin) if halo is None else halo),
        tile_size=int(options["tile_size"]) if options.get("tile_size") else None,
        batch_size=int(options["batch_size"]) if options.get("batch_size") else None,
        budget=memory_budget(device, options.get("max_memory")),
        device=device,
        **defaults,
    )


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
