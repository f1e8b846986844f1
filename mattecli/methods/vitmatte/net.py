"""The ViTMatte network (VitMatteNet): a ViTDet backbone and the detail-capture decoder.

Paper: Yao, Wang, Yang, Wang, "ViTMatte: Boosting Image Matting with Pretrained Plain Vision
Transformers", Information Fusion 2024 (arXiv 2305.15272).
Official code: github.com/hustvl/ViTMatte (MIT), ``modeling/backbone/vit.py``, ``modeling/backbone/utils.py``,
``modeling/decoder/detail_capture.py`` and ``configs/common/model.py`` at 8cd7ef0 (read for facts, not
copied; the network is unchanged since the first commit 5194861 but for list-aliasing fixes in the
decoder's constructor). Its input encoding differs from transformers': see
:mod:`mattecli.methods.vitmatte.encode`.
Reference for equality: Hugging Face transformers 5.25, ``models/vitmatte/modeling_vitmatte.py``
(``VitMatteForImageMatting``) and ``models/vitdet/modeling_vitdet.py`` (``VitDetBackbone``), which
compute the same function as the official code. ``tests/test_vitmatte_net.py`` checks that a
transformers model's ``state_dict()`` loads here with ``strict=True`` and gives the same alpha.

**Parameter names** are the Hugging Face hub checkpoints' keys (``hustvl/vitmatte-small-composition-1k``,
``-small-distinctions-646``, ``-base-composition-1k``, ``-base-distinctions-646``):
``backbone.embeddings.{projection.*, position_embeddings}``, ``backbone.encoder.layer.{i}.{norm1,
attention.{qkv, proj, rel_pos_h, rel_pos_w}, norm2, mlp.{fc1, fc2}, residual.{conv1..3, norm1..3}}``,
``decoder.convstream.convs.{i}.{conv, batch_norm}``, ``decoder.fusion_blocks.{i}.conv.{conv, batch_norm}``,
``decoder.matting_head.matting_convs.{0, 1, 3}``.

**Configurations** (:func:`vitmatte_small`, :func:`vitmatte_base`): the hub repositories' ``config.json``
(written by transformers' ``convert_vitmatte_to_hf.py``; the Composition-1k and Distinctions-646
checkpoints of one size share it): 12 blocks, patch 16, 4 input channels, absolute position
embeddings for a 224 x 224 pretraining grid (14 x 14 plus a class token, dropped),
decomposed relative position embeddings sized for 512 x 512 inputs (32 x 32 tokens; 14 x 14 in
windows), window 14 in blocks 0, 1, 3, 4, 6, 7, 9, 10 (blocks 2, 5, 8, 11 attend globally and are
followed by a residual bottleneck block), MLP ratio 4, exact (erf) GELU, LayerNorm eps 1e-6,
ConvStream 48/96/192, fusion 256/128/64/32, batch-norm eps 1e-5; ViTMatte-S: width 384, 6 heads;
ViTMatte-B: width 768, 12 heads.

**The function** (the official code's, every detail kept):

* patch embedding: a 16 x 16 / 16 convolution of the 4-channel input; plus the absolute position
  embedding, the class token's row dropped and the 14 x 14 grid resized to the token grid by
  bicubic interpolation (``align_corners=False``; not resized when the grid already matches);
* windowed blocks pad the *normalised* tokens with zeros at the bottom/right to a multiple of 14
  and attend within each window, padding included (no mask: padded tokens are keys whose key and
  value are the projections' biases), then crop;
* attention logits ``scale * q.k + (q . Rh[qy - ky]) + (q . Rw[qx - kx])`` with ``Rh`` / ``Rw`` the
  relative tables linearly resized (``align_corners=False``) to ``2 * size - 1`` rows when the
  token grid differs from the one they were made for (unscaled ``q`` in the relative terms);
* the residual bottleneck block: 1x1 (no bias), channel LayerNorm, GELU, 3x3, LayerNorm, GELU, 1x1,
  LayerNorm, added to its input;
* the decoder: ConvStream (three 3x3/2 conv-BN-ReLU of the input, 1/2, 1/4, 1/8), four fusion
  blocks (x2 bilinear upsampling, ``align_corners=False``, concatenated *after* the detail map,
  3x3 conv-BN-ReLU), the matting head (3x3 conv+BN+ReLU to 16, 1x1 to 1), a sigmoid.

**How it runs** (what differs from transformers' code, not from its function):

* attention goes through :func:`torch.nn.functional.scaled_dot_product_attention`, the relative
  position bias passed as its float ``attn_mask``, built and consumed in blocks of heads and query
  rows (:data:`MASK_BYTES` each, one reused buffer) so that no full ``N x N`` score, bias or probability matrix
  exists: at 2 MP a global block has ~8,200 tokens, and transformers materialises three 1.6 GB
  fp32 ``(heads, N, N)`` tensors there (scores, scores + bias, softmax);
* tokens stay ``(N, h, w, C)`` contiguous from block to block (transformers permutes to NCHW and
  back in every block); the residual blocks read that memory as a channels-last NCHW tensor, their
  1x1 convolutions are matrix products and their channel LayerNorm is ``F.layer_norm`` on the
  last dimension;
* the decoder runs channels-last, its ReLUs in place, and its batch norms fold into the
  convolutions before them (:mod:`mattecli.runtime.fold`: ``BasicConv3x3.fold_pairs`` and the
  matting head's ``nn.Sequential``) once the weights are loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MASK_BYTES",
    "VitMatteNet",
    "VitDetBackbone",
    "DetailCapture",
    "vitmatte_small",
    "vitmatte_base",
    "resize_abs_pos",
    "rel_pos_table",
]

#: bytes of one block of the attention bias (``attn_mask``) handed to scaled_dot_product_attention. At 2 MP
#: (68 x 120 tokens) a global block's bias is 3.9 MB per head and query row: blocks of one head and all 68
#: rows (266 MB); the windows' (all heads: 41 MB) go at once. Fewer, larger calls win on the CPU: one global block of
#: ViTMatte-S at 2 MP, 2 threads, on a loaded machine: 16.7 s in blocks of 4 MiB, 7.4 s of 32 MiB, 5.6 s of
#: 128 MiB, 3.9 s of one head (266 MB), 5.8 s with all heads at once (1.6 GB)
MASK_BYTES = 256 << 20


def resize_abs_pos(pos: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The absolute position embedding for a ``height x width`` token grid, ``(1, height, width, C)``.

    ``pos`` is ``(1, 1 + S * S, C)``: a class token's row (dropped) and an ``S x S`` grid, resized by
    bicubic interpolation (``align_corners=False``) unless it is already ``height x width``.
    Raises ValueError when ``pos`` has no square grid.
    """
    grid = pos[:, 1:]
    size = math.isqrt(grid.shape[1])
    if size * size != grid.shape[1]:
        raise ValueError(f"the absolute position embedding has {grid.shape[1]} positions, not a square grid")
    grid = grid.reshape(1, size, size, -1)
    if (size, size) == (height, width):
        return grid
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=(height, width), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1)


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """``(size, size, D)``: query ``i``'s and key ``j``'s relative embedding on one axis, ``rel_pos[i - j + size - 1]``.

    ``rel_pos`` is ``(2 * S - 1, D)``; when ``2 * size - 1`` differs it is first resized along its rows by
    linear interpolation (``align_corners=False``), as the official code does for inputs larger or
    smaller than the 512 x 512 the tables were made for. Queries and keys share the grid here.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.t()[None], size=length, mode="linear", align_corners=False)[0].t()
    idx = torch.arange(size, device=rel_pos.device)
    return rel_pos[idx[:, None] - idx[None, :] + (size - 1)]


def _even_split(total: int, most: int) -> int:
    """The block size that splits ``total`` into the fewest blocks of at most ``most`` (at least 1), evened out."""
    blocks = -(-total // max(1, min(total, most)))
    return -(-total // blocks)


class Attention(nn.Module):
    """Multi-head self-attention of a token grid with decomposed relative position embeddings.

    ``forward((B, h, w, C) float) -> (B, h, w, C)``; ``rel_pos_h`` / ``rel_pos_w`` are ``(2 * s - 1, C / heads)``
    for the grid size ``s`` they were trained at (resized for others, :func:`rel_pos_table`).
    """

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int] | None, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = input_size is not None
        if self.use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n, length = self.num_heads, h * w
        # (B, L, 3, heads, d) -> three (B, heads, L, d) views; the SDPA kernels take the strides as they are
        q, k, v = self.qkv(x).view(b, length, 3, n, c // n).permute(2, 0, 3, 1, 4).unbind(0)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
            return self.proj(out.transpose(1, 2).reshape(b, h, w, c))
        # the decomposed bias: (B, heads, h, w, kh) and (B, heads, h, w, kw), the relative terms of every query
        q4 = q.reshape(b, n, h, w, c // n)
        table_h = rel_pos_table(h, self.rel_pos_h).to(q.dtype)
        table_w = rel_pos_table(w, self.rel_pos_w).to(q.dtype)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", q4, table_h).contiguous()
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", q4, table_w).contiguous()
        # blocks of heads and query rows whose bias, (B, heads, rows * w, h * w), fits MASK_BYTES: all heads and
        # rows at once when they fit (windows), else one head at a time in blocks of rows (global attention)
        row_bytes = b * w * length * q.element_size()  # one head, one row of queries
        heads = _even_split(n, MASK_BYTES // (h * row_bytes))
        rows = h if heads > 1 else _even_split(h, MASK_BYTES // row_bytes)
        buffer = torch.empty(b * heads * rows * w * length, dtype=q.dtype, device=q.device)
        out = q.new_empty((b, n, length, c // n))
        for i0 in range(0, n, heads):
            i1 = min(n, i0 + heads)
            for r0 in range(0, h, rows):
                r1 = min(h, r0 + rows)
                mask = buffer[: b * (i1 - i0) * (r1 - r0) * w * length].view(b, i1 - i0, r1 - r0, w, h, w)
                torch.add(bias_h[:, i0:i1, r0:r1, :, :, None], bias_w[:, i0:i1, r0:r1, :, None, :], out=mask)
                out[:, i0:i1, r0 * w : r1 * w] = F.scaled_dot_product_attention(
                    q[:, i0:i1, r0 * w : r1 * w],
                    k[:, i0:i1],
                    v[:, i0:i1],
                    attn_mask=mask.view(b, i1 - i0, (r1 - r0) * w, length),
                    scale=self.scale,
                )
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of an ``(N, h, w, C)`` tensor (the official channels-first LayerNorm of
    an NCHW map, computed on its channels-last memory); ``weight`` / ``bias`` ``(C,)``."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class ResBottleneckBlock(nn.Module):
    """``x + LN(1x1(GELU(LN(3x3(GELU(LN(1x1(x))))))))`` on ``(N, h, w, C)`` tokens, bottleneck ``C / 2``, no biases."""

    def __init__(self, channels: int, bottleneck: int, eps: float = 1e-6):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, bottleneck, 1, bias=False)
        self.norm1 = ChannelLayerNorm(bottleneck, eps)
        self.conv2 = nn.Conv2d(bottleneck, bottleneck, 3, padding=1, bias=False)
        self.norm2 = ChannelLayerNorm(bottleneck, eps)
        self.conv3 = nn.Conv2d(bottleneck, channels, 1, bias=False)
        self.norm3 = ChannelLayerNorm(channels, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.norm1(F.linear(x, self.conv1.weight.flatten(1))))
        # (N, h, w, C) memory is a channels-last NCHW tensor: no copy on either side of the 3x3 convolution
        y = self.conv2(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        y = F.gelu(self.norm2(y))
        return x + self.norm3(F.linear(y, self.conv3.weight.flatten(1)))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _window_partition(x: torch.Tensor, size: int) -> tuple[torch.Tensor, int, int]:
    """``(N, H, W, C)`` -> ``(N * nh * nw, size, size, C)`` windows of the zero-padded grid, and ``nh``, ``nw``."""
    n, h, w, c = x.shape
    ph, pw = -h % size, -w % size
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    nh, nw = (h + ph) // size, (w + pw) // size
    windows = x.view(n, nh, size, nw, size, c).transpose(2, 3).reshape(n * nh * nw, size, size, c)
    return windows, nh, nw


def _window_unpartition(windows: torch.Tensor, nh: int, nw: int, h: int, w: int) -> torch.Tensor:
    """The inverse of :func:`_window_partition`, padding cropped: ``(N, h, w, C)`` contiguous."""
    size, c = windows.shape[1], windows.shape[3]
    n = windows.shape[0] // (nh * nw)
    x = windows.view(n, nh, nw, size, size, c).transpose(2, 3).reshape(n, nh * size, nw * size, c)
    return x[:, :h, :w].contiguous()


class Block(nn.Module):
    """A ViTDet block on ``(N, h, w, C)`` tokens: (windowed) attention, MLP, an optional residual conv block."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        mlp_ratio: float,
        window_size: int,
        rel_pos_size: tuple[int, int] | None,
        residual: bool,
        eps: float,
    ):
        super().__init__()
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        size = None if rel_pos_size is None else (window_size, window_size) if window_size else rel_pos_size
        self.attention = Attention(dim, num_heads, size)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if residual:
            self.residual = ResBottleneckBlock(dim, dim // 2)
        else:
            self.residual = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window_size > 0:
            h, w = y.shape[1:3]
            y, nh, nw = _window_partition(y, self.window_size)
            y = _window_unpartition(self.attention(y), nh, nw, h, w)
        else:
            y = self.attention(y)
        x = x + y
        x += self.mlp(self.norm2(x))
        if self.residual is not None:
            x = self.residual(x)
        return x


class PatchEmbeddings(nn.Module):
    """16 x 16 / 16 patch projection plus the resized absolute position embedding: ``(N, C_in, H, W)`` ->
    ``(N, H / 16, W / 16, C)`` contiguous."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, pretrain_image_size: int):
        super().__init__()
        grid = pretrain_image_size // patch_size
        self.position_embeddings = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.projection = nn.Conv2d(in_channels, dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.projection(x).permute(0, 2, 3, 1)
        return (x + resize_abs_pos(self.position_embeddings, x.shape[1], x.shape[2])).contiguous()


class Encoder(nn.Module):
    """The ViTDet blocks (``layer``)."""

    def __init__(self, layers: Sequence[Block]):
        super().__init__()
        self.layer = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layer:
            x = block(x)
        return x


class VitDetBackbone(nn.Module):
    """Plain ViT (ViTDet): ``(N, C_in, H, W)`` -> ``(N, C, H / 16, W / 16)`` features (a channels-last view of
    the tokens). H and W multiples of the patch size."""

    def __init__(
        self,
        *,
        in_channels: int = 4,
        dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        pretrain_image_size: int = 224,
        image_size: int = 512,
        window_size: int = 14,
        window_block_indices: Sequence[int] = (0, 1, 3, 4, 6, 7, 9, 10),
        residual_block_indices: Sequence[int] = (2, 5, 8, 11),
        use_rel_pos: bool = True,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.patch_size = patch_size
        self.embeddings = PatchEmbeddings(in_channels, dim, patch_size, pretrain_image_size)
        grid = image_size // patch_size
        self.encoder = Encoder(
            [
                Block(
                    dim,
                    num_heads,
                    mlp_ratio=mlp_ratio,
                    window_size=window_size if i in window_block_indices else 0,
                    rel_pos_size=(grid, grid) if use_rel_pos else None,
                    residual=i in residual_block_indices,
                    eps=eps,
                )
                for i in range(depth)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embeddings(x)).permute(0, 3, 1, 2)


class BasicConv3x3(nn.Module):
    """``ReLU(BN(conv3x3(x)))``, the convolution without bias (stride 2 in the ConvStream, 1 in fusion blocks)."""

    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv", "batch_norm"),)

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2, eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.batch_norm(self.conv(x)), inplace=True)


class ConvStream(nn.Module):
    """Detail features: the input and three stride-2 :class:`BasicConv3x3` of it (1/2, 1/4, 1/8)."""

    def __init__(self, in_channels: int, channels: Sequence[int], eps: float = 1e-5):
        super().__init__()
        chans = [in_channels, *channels]
        self.convs = nn.ModuleList(BasicConv3x3(a, b, 2, eps) for a, b in zip(chans[:-1], chans[1:], strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = [x]
        for conv in self.convs:
            maps.append(conv(maps[-1]))
        return maps


class FusionBlock(nn.Module):
    """x2 bilinear upsampling of the features, concatenated after the detail map, then a 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-5):
        super().__init__()
        self.conv = BasicConv3x3(in_channels, out_channels, 1, eps)

    def forward(self, features: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)
        x = torch.cat([detail, up], dim=1)
        del up  # at 2 MP the last block's is 535 MB: gone before its convolution
        return self.conv(x)


class MattingHead(nn.Module):
    """3x3 conv (bias) + BN + ReLU to 16 channels, 1x1 conv to 1 (the logit)."""

    def __init__(self, in_channels: int, mid_channels: int = 16):
        super().__init__()
        self.matting_convs = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 3, 1, 1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, 1, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.matting_convs(x)


class DetailCapture(nn.Module):
    """The detail-capture decoder: features ``(N, C, H/16, W/16)`` and input ``(N, C_in, H, W)`` -> ``(N, 1, H, W)``."""

    def __init__(
        self,
        dim: int,
        in_channels: int = 4,
        convstream: Sequence[int] = (48, 96, 192),
        fusion: Sequence[int] = (256, 128, 64, 32),
        eps: float = 1e-5,
    ):
        super().__init__()
        if len(fusion) != len(convstream) + 1:
            raise ValueError("the decoder needs one more fusion block than ConvStream convolutions")
        self.convstream = ConvStream(in_channels, convstream, eps)
        detail = [in_channels, *convstream][::-1]  # the detail maps' channels, deepest first
        chans = [dim, *fusion]
        self.fusion_blocks = nn.ModuleList(
            FusionBlock(chans[i] + detail[i], chans[i + 1], eps) for i in range(len(fusion))
        )
        self.matting_head = MattingHead(fusion[-1])

    def forward(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        detail = self.convstream(x)
        for block, d in zip(self.fusion_blocks, detail[::-1], strict=True):
            features = block(features, d)
        return torch.sigmoid_(self.matting_head(features))


class VitMatteNet(nn.Module):
    """ViTMatte: ``(N, 4, H, W)`` float (RGB normalised as ``(x - 0.5) / 0.5``, then the trimap / 255; see
    :func:`mattecli.methods.vitmatte.encode.encode`) -> alpha ``(N, 1, H, W)`` in [0, 1], same dtype and device.

    H and W must be multiples of 16 (the processor pads to multiples of 32, :attr:`stride`, as
    transformers' does); anything else, or not 4 channels, raises ValueError. Keyword arguments
    are the architecture (defaults: ViTMatte-S); use :func:`vitmatte_small` / :func:`vitmatte_base`.
    """

    stride = 32

    def __init__(
        self,
        *,
        dim: int = 384,
        num_heads: int = 6,
        depth: int = 12,
        in_channels: int = 4,
        mlp_ratio: float = 4.0,
        patch_size: int = 16,
        pretrain_image_size: int = 224,
        image_size: int = 512,
        window_size: int = 14,
        window_block_indices: Sequence[int] = (0, 1, 3, 4, 6, 7, 9, 10),
        residual_block_indices: Sequence[int] = (2, 5, 8, 11),
        convstream: Sequence[int] = (48, 96, 192),
        fusion: Sequence[int] = (256, 128, 64, 32),
        layer_norm_eps: float = 1e-6,
        batch_norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.backbone = VitDetBackbone(
            in_channels=in_channels,
            dim=dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            patch_size=patch_size,
            pretrain_image_size=pretrain_image_size,
            image_size=image_size,
            window_size=window_size,
            window_block_indices=window_block_indices,
            residual_block_indices=residual_block_indices,
            eps=layer_norm_eps,
        )
        self.decoder = DetailCapture(dim, in_channels, convstream, fusion, batch_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        p = self.backbone.patch_size
        if x.shape[2] % p or x.shape[3] % p:
            raise ValueError(f"H and W must be multiples of {p}, got {x.shape[2]}x{x.shape[3]}")
        x = x.contiguous(memory_format=torch.channels_last)
        return self.decoder(self.backbone(x), x)


def vitmatte_small() -> VitMatteNet:
    """ViTMatte-S (``hustvl/vitmatte-small-composition-1k`` / ``-distinctions-646``): width 384, 6 heads."""
    return VitMatteNet(dim=384, num_heads=6)


def vitmatte_base() -> VitMatteNet:
    """ViTMatte-B (``hustvl/vitmatte-base-composition-1k`` / ``-distinctions-646``): width 768, 12 heads."""
    return VitMatteNet(dim=768, num_heads=12)
