"""Running networks: device and precision selection, tensor conversion, resizing.

Every deep method goes through these helpers, so device rules live in one place:
``auto`` picks CUDA when available; asking for CUDA on a machine without it is a
clear :class:`~mattecli.errors.DeviceError`, never a silent CPU fallback.
"""

from __future__ import annotations

import contextlib

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
    "PRECISIONS",
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
