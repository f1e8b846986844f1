"""ViTMatte's input encoding and output crop, as transformers' ``VitMatteImageProcessor`` makes them.

Source: Hugging Face transformers 5.25, ``models/vitmatte/image_processing_vitmatte.py`` (torchvision
backend) and ``image_processing_pil_vitmatte.py`` (the fallback without torchvision), configured by
the hub repositories' ``preprocessor_config.json`` (``hustvl/vitmatte-{small,base}-{composition-1k,
distinctions-646}``: rescale 1/255, mean 0.5, std 0.5, ``size_divisibility`` 32).

What the processor does with uint8 images: RGB / 255 normalised as ``(x - 0.5) / 0.5``; the trimap / 255
(0, 0.502, 1 for 0, 128, 255; not normalised) appended as a fourth channel; then -- after the
normalisation -- zeros appended at the bottom and on the right of each side that is not a multiple
of 32, up to the next multiple (a side that already is one is left alone). A padded pixel is thus 0
in all four channels: mid-grey RGB with a background trimap.

Where the authors' code differs (github.com/hustvl/ViTMatte at 8cd7ef0, ``configs/common/model.py`` and
``modeling/meta_arch/vitmatte.py``): it normalises the RGB with the ImageNet statistics (mean 0.485,
0.456, 0.406; std 0.229, 0.224, 0.225), not 0.5 / 0.5, and when either side is not a multiple of 32
it pads *both* sides by ``32 - side % 32`` (a side that is a multiple gets 32 more). The trimap
(``/ 255``), the zero padding after the normalisation and the crop are the same. ``mean`` / ``std``
select the authors' normalisation; the padding here is always the processor's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["SIZE_DIVISOR", "HUB_MEAN", "HUB_STD", "encode", "crop"]

#: the processor pads height and width to multiples of this
SIZE_DIVISOR = 32
#: the hub's preprocessor_config.json normalisation (transformers' IMAGENET_STANDARD_MEAN / _STD)
HUB_MEAN = (0.5, 0.5, 0.5)
HUB_STD = (0.5, 0.5, 0.5)


def encode(
    image: np.ndarray,
    trimap: np.ndarray,
    device: torch.device | str | None = None,
    *,
    mean: Sequence[float] = HUB_MEAN,
    std: Sequence[float] = HUB_STD,
) -> torch.Tensor:
    """``(1, 4, Hp, Wp)`` float32 network input: ``(image - mean) / std`` and ``trimap / 255``, zero-padded.

    Args:
        image: ``(H, W, 3)`` float RGB in [0, 1] (a uint8 image / 255).
        trimap: ``(H, W)`` uint8, 0 background, 128 unknown, 255 foreground (any value is taken / 255).
        device: where the tensor is made (default: the CPU).
        mean, std: per-channel RGB normalisation (default: the hub's 0.5 / 0.5, as transformers).

    Returns ``Hp = ceil(H / 32) * 32`` and likewise ``Wp``, the padding at the bottom and right, 0 in all
    four channels (added after the normalisation, as the processor does). With the defaults it equals
    ``VitMatteImageProcessor``'s ``pixel_values`` for the uint8 image to float32 rounding (1e-6).
    Raises ValueError on other shapes or mismatched sizes.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got {image.shape}")
    if trimap.shape != image.shape[:2]:
        raise ValueError(f"the trimap is {trimap.shape}, the image {image.shape[:2]}")
    h, w = trimap.shape
    hp, wp = -(-h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-w // SIZE_DIVISOR) * SIZE_DIVISOR
    out = torch.zeros((1, 4, hp, wp), dtype=torch.float32, device=device)
    rgb = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device).permute(2, 0, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=out.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=out.device).view(3, 1, 1)
    out[0, :3, :h, :w] = (rgb - m) / s
    tri = torch.from_numpy(np.ascontiguousarray(trimap)).to(device=device, dtype=torch.float32)
    out[0, 3, :h, :w] = tri / 255.0
    return out


def crop(alpha: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The ``(..., h, w)`` top-left corner of a padded ``(..., Hp, Wp)`` network output (a view).

    Raises ValueError when the output is smaller than ``h x w``."""
    if alpha.shape[-2] < h or alpha.shape[-1] < w:
        raise ValueError(f"cannot crop {tuple(alpha.shape[-2:])} to {h}x{w}")
    return alpha[..., :h, :w]
