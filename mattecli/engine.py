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

import numpy as np
import torch
import torch.nn.functional as F

from mattecli.errors import BadOptionError, DeviceError

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
    "tile_starts",
    "blend_window",
    "tiled_apply",
    "tiled_apply_safe",
    "parse_memory",
    "memory_budget",
    "activation_bytes_per_pixel",
    "plan_tiles",
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
    ys = (torch.arange(oh, device=x.device, dtype=torch.float32) + 0.5) * (h / oh) - 0.5
    xs = (torch.arange(ow, device=x.device, dtype=torch.float32) + 0.5) * (w / ow) - 0.5
    # grid_sample's normalised coordinates with align_corners=False: -1 and 1 are the outer pixel edges
    gy = (ys + 0.5) / h * 2 - 1
    gx = (xs + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].expand(n, oh, ow, 2)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# ----------------------------------------------------------------------------- tiling
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` px shared.

    The last tile is aligned to the end, so every tile lies fully inside (when ``length >= tile``).
    """
    if length <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def blend_window(height: int, width: int, overlap: int) -> torch.Tensor:
    """A separable ``(height, width)`` weight: 1 inside, raised-cosine ramps over ``overlap`` px at each edge.

    Weights stay strictly positive, so dividing the weighted sum of overlapping
    tiles by the summed weights is always defined and seams fade smoothly.
    """

    def ramp(n: int) -> torch.Tensor:
        w = torch.ones(n, dtype=torch.float32)
        r = min(overlap, n // 2)
        if r > 0:
            t = (torch.arange(r, dtype=torch.float32) + 0.5) / r
            edge = 0.5 - 0.5 * torch.cos(torch.pi * t)
            w[:r] = edge
            w[n - r :] = edge.flip(0)
        return w

    return ramp(height)[:, None] * ramp(width)[None, :]


def tiled_apply(
    fn,
    x: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    out_channels: int = 1,
    batch_size: int = 4,
    skip=None,
) -> torch.Tensor:
    """Apply ``fn`` to overlapping tiles of ``x`` ``(1,C,H,W)`` and blend the results into ``(1,out_channels,H,W)``.

    ``fn`` maps ``(N,C,t,t)`` to ``(N,out_channels,t,t)``; tiles are batched by
    ``batch_size``. ``skip(y0, y1, x0, x1) -> bool`` may exclude tiles (their area
    stays 0 unless another tile covers it). Overlaps are blended with
    :func:`blend_window`.
    """
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)
    boxes = [
        (y0, y0 + th, x0, x0 + tw)
        for y0 in tile_starts(h, th, overlap)
        for x0 in tile_starts(w, tw, overlap)
        if skip is None or not skip(y0, y0 + th, x0, x0 + tw)
    ]
    out = torch.zeros(1, out_channels, h, w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=x.device)
    window = blend_window(th, tw, overlap).to(x.device)
    for i in range(0, len(boxes), batch_size):
        chunk = boxes[i : i + batch_size]
        batch = torch.cat([x[:, :, y0:y1, x0:x1] for y0, y1, x0, x1 in chunk], dim=0)
        result = fn(batch).float()
        for k, (y0, y1, x0, x1) in enumerate(chunk):
            out[:, :, y0:y1, x0:x1] += result[k : k + 1] * window
            weight[:, :, y0:y1, x0:x1] += window
    return out / weight.clamp_min(1e-12)


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


def memory_budget(device: torch.device, max_memory: str | int | None = None) -> int:
    """Bytes that tiles and batches may use on ``device``.

    Default: 80% of the free memory of a CUDA device, or half of the available RAM
    on the CPU (the rest is left for the decoded images, the pipeline and the OS).
    """
    if max_memory is not None:
        return max_memory if isinstance(max_memory, int) else parse_memory(max_memory)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    return _available_ram() // 2


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
    device = next(net.parameters()).device

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


def is_oom(err: BaseException) -> bool:
    """Whether ``err`` is an out-of-memory error from torch (CUDA or CPU allocator)."""
    if isinstance(err, torch.OutOfMemoryError):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


def tiled_apply_safe(
    fn,
    x: torch.Tensor,
    *,
    tile: int,
    overlap: int,
    stride: int = 1,
    out_channels: int = 1,
    batch_size: int = 4,
    skip=None,
    min_tile: int | None = None,
) -> torch.Tensor:
    """:func:`tiled_apply` that survives running out of memory.

    On an out-of-memory error the batch is halved and the same tiles are run
    again; at batch 1 the tile is halved (kept a multiple of ``stride`` and above
    ``min_tile``, default ``2 * overlap`` or one stride). Only when no smaller tile
    is possible does it give up with a :class:`DeviceError`. Each fallback warns.
    """
    min_tile = max(stride, min_tile or 2 * overlap or stride)
    while True:
        try:
            return tiled_apply(
                fn, x, tile=tile, overlap=overlap, out_channels=out_channels, batch_size=batch_size, skip=skip
            )
        except Exception as err:
            if not is_oom(err):
                raise
            if x.device.type == "cuda":
                torch.cuda.empty_cache()
            if batch_size > 1:
                batch_size //= 2
                warnings.warn(f"out of memory: retrying with batch size {batch_size}", RuntimeWarning, stacklevel=2)
                continue
            smaller = (tile // 2) - (tile // 2) % stride
            if smaller < min_tile:
                raise DeviceError(
                    f"out of memory even with one {tile}x{tile} tile per batch",
                    hint="lower --max-memory / --tile-size, use --precision fp16/bf16, or free the GPU",
                ) from err
            tile = smaller
            overlap = min(overlap, tile // 4)
            warnings.warn(f"out of memory: retrying with {tile}x{tile} tiles", RuntimeWarning, stacklevel=2)


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
