"""Images as network inputs: normalised NCHW tensors, bilinear resizing, padding to a stride."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["image_to_tensor", "resize", "pad_to_multiple"]


def image_to_tensor(image: np.ndarray, device: torch.device, mean, std) -> torch.Tensor:
    """float ``HxWx3`` RGB in [0, 1] -> ``(1,3,H,W)`` float32 tensor on ``device``, ``(x - mean) / std``
    per channel (a method's :class:`~mattecli.methods.base.Normalization`)."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None].to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32, device=device)[None, :, None, None]
    return (t - m) / s


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N,C,H,W)`` with half-pixel centres and no anti-aliasing (edges replicated)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(N,C,H,W)`` bottom/right to multiples of ``multiple``; returns ``(padded, (H, W))``.

    ``reflect`` (default; edge replication for inputs too small to reflect) or ``replicate``;
    crop back with ``[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode == "reflect" and not (ph < h and pw < w):
        mode = "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)
