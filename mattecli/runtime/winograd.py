"""Winograd F(4x4, 3x3) for the large 3x3 convolutions on the CPU: the same convolution, ~2x faster.

**Why.** PyTorch's CPU convolution (oneDNN) has no Winograd path on AVX2 machines (oneDNN's is
AVX-512 only), so a 3x3 convolution costs its full ``9 * Cin * Cout`` multiply-adds per output
pixel, at about the speed of a matrix product. Winograd's minimal filtering (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", CVPR 2016) computes each 4x4 output tile from
a 6x6 input tile with 36 matrix products of the tile's channels instead of 144: 4x fewer
multiply-adds, paid for with cheap elementwise input / output transforms. It gains on many
channels (1.6-2.6x from 256 x 256 channels up) and loses on few (``bench/RESULTS.md``, "Winograd
per shape"), which is why only convolutions with many channels are converted (:data:`MIN_MACS`).

**Exactness.** The result is the same convolution in exact arithmetic; in float32 it differs by
rounding: the transformed weights are computed in float64, and the error against a float64
reference is ~5e-5 for unit-scale outputs (direct convolution: ~1e-5), far below what an 8- or
16-bit alpha can show. ``tests/test_winograd.py`` checks it against ``F.conv2d`` in float64.

**Scope.** :func:`use_winograd` converts, in place, every ``nn.Conv2d`` with a 3x3 kernel, stride
1, one group, zero padding equal to its dilation ("same" output size) and ``Cin * Cout >=
MIN_MACS``. A dilated convolution is a plain one on each of its ``d x d`` interleaved sub-grids
(space-to-batch), so it takes the same path. The converted forward runs only for float32 CPU
inputs without autocast and without gradients; anything else (CUDA, where cuDNN has its own
Winograd; ``--precision bf16``; training) calls the original convolution. Parameter names and
values are untouched (the transformed weight is a cached attribute, rebuilt if the weight
changes), so state dicts load and save as before.

Memory: the transformed weights are kept, 4x the converted convolutions' own (SIM: ~400 MB when
every one has run); the input is copied once, zero-padded, in channels-last order; the transforms run over
bands of tile rows sized to ~:data:`BAND_BYTES` so that the 36 transformed slices stay in cache,
and the output is written straight into its channels-last tensor.
"""

from __future__ import annotations

import contextlib
import types

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MIN_MACS",
    "BAND_BYTES",
    "MAX_WORK_RATIO",
    "winograd_weight",
    "winograd_conv3x3",
    "worthwhile",
    "eligible",
    "use_winograd",
    "single_row_bands",
]

#: smallest ``Cin * Cout`` converted (256 x 256 gains 1.6-1.8x, 128 x 128 nothing, 384 x 64 loses)
MIN_MACS = 256 * 256
#: Winograd runs when its multiply count is at most this share of the direct convolution's (taps
#: on the zero padding excluded, which oneDNN skips); 1/4 when nothing is wasted
MAX_WORK_RATIO = 0.4
#: target size of one band's transformed input (36 slices)
BAND_BYTES = 24 << 20

_M, _A = 4, 6  # output tile, input tile
_D = torch.float64
#: input transform B^T (6x6), filter transform G (6x3), output transform A^T (4x6) of F(4x4, 3x3)
_BT = torch.tensor(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=_D,
)
_G = torch.tensor(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=_D,
)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=_D)
_BT_ROWS = [[(j, float(c)) for j, c in enumerate(row) if c != 0] for row in _BT.tolist()]
_AT_ROWS = [[(j, float(c)) for j, c in enumerate(row) if c != 0] for row in _AT.tolist()]


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """``G w G^T`` per (out, in) pair, computed in float64: ``(Cout, Cin, 3, 3)`` -> ``(36, Cin, Cout)``."""
    u = torch.einsum("ka,oiab,lb->klio", _G.to(weight.device), weight.detach().double(), _G.to(weight.device))
    return u.reshape(_A * _A, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


_single_rows = False


@contextlib.contextmanager
def single_row_bands():
    """Within: one row of tiles per band, whatever the map's size.

    For the memory measurements behind the declared figures (``bench/memory_figures.py``): a small
    measuring input would fit one band whole, so the transformed input (2.25x the input) would look
    like a cost per pixel, while on a real image the bands keep it to :data:`BAND_BYTES`; with single
    rows the measurement sees what grows with the image (the padded copy of the input, the output).
    The results are the same. The runtime itself never measures.
    """
    global _single_rows
    before, _single_rows = _single_rows, True
    try:
        yield
    finally:
        _single_rows = before


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _combine(terms, sources, out):
    """``out = sum(c * sources[j] for j, c in terms)`` with as few passes as the nonzero terms."""
    (j, c), rest = terms[0], terms[1:]
    if c == 1.0:
        out.copy_(sources[j])
    else:
        torch.mul(sources[j], c, out=out)
    for j, c in rest:
        out.add_(sources[j], alpha=c)
    return out


def _valid_nhwc(p: torch.Tensor, u: torch.Tensor, out: torch.Tensor) -> None:
    """Valid 3x3 convolution of the NHWC tensor ``p`` into ``out`` ``(N, 4*th, 4*tw, Cout)``, where
    ``p`` is ``(N, 4*th + 2, 4*tw + 2, Cin)`` (padding already in it)."""
    n, _, wp, c = p.shape
    co = u.shape[2]
    th, tw = (p.shape[1] - 2) // _M, (wp - 2) // _M
    band = 1 if _single_rows else max(1, min(th, BAND_BYTES // (_A * _A * n * tw * c * p.element_size())))
    for i0 in range(0, th, band):
        b = min(th, i0 + band) - i0
        rows = p[:, _M * i0 : _M * (i0 + b) + 2]
        d = [rows[:, k : k + _M * b : _M] for k in range(_A)]  # (N, b, Wp, C): row k of every tile
        t = [_combine(_BT_ROWS[k], d, p.new_empty((n, b, wp, c))) for k in range(_A)]
        v = p.new_empty((_A, _A, n, b, tw, c))
        for k in range(_A):
            e = [t[k][:, :, j : j + _M * tw : _M] for j in range(_A)]
            for j in range(_A):
                _combine(_BT_ROWS[j], e, v[k, j])
        t = d = None
        m = torch.bmm(v.view(_A * _A, -1, c), u).view(_A, _A, n, b, tw, co)
        v = None
        s = [_combine(_AT_ROWS[r], [m[k] for k in range(_A)], p.new_empty((_A, n, b, tw, co))) for r in range(_M)]
        m = None
        o = out[:, _M * i0 : _M * (i0 + b)]
        for r in range(_M):
            for q in range(_M):
                _combine(_AT_ROWS[q], [s[r][j] for j in range(_A)], o[:, r::_M, q::_M])


def winograd_conv3x3(
    x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None, dilation: int = 1
) -> torch.Tensor:
    """``F.conv2d(x, w, bias, padding=dilation, dilation=dilation)`` for a 3x3 ``w`` given as
    ``u = winograd_weight(w)``; ``x`` is ``(N, Cin, H, W)``, the result channels-last ``(N, Cout, H, W)``."""
    n, c, h, w = x.shape
    co = u.shape[2]
    d = int(dilation)
    xh = x.permute(0, 2, 3, 1)  # a view when x is channels-last
    # each of the d x d sub-grids is a plain 3x3 convolution of a (hs x ws) image with 1 px of zeros
    hs, ws = -(-h // d), -(-w // d)
    th, tw = -(-hs // _M), -(-ws // _M)
    sh, sw = _M * th + 2, _M * tw + 2  # sub-grid input size, padding included
    if d == 1:
        p = F.pad(xh, (0, 0, 1, sw - 1 - w, 1, sh - 1 - h))
        out = x.new_empty((n, sh - 2, sw - 2, co))
        _valid_nhwc(p, u, out)
        out = out[:, :h, :w]
    else:
        # pad by d (the convolution's zeros) and up to whole sub-grids, then split into d*d images
        full = F.pad(xh, (0, 0, d, sw * d - d - w, d, sh * d - d - h))  # (N, sh*d, sw*d, C)
        p = full.view(n, sh, d, sw, d, c).permute(0, 2, 4, 1, 3, 5).reshape(n * d * d, sh, sw, c)
        full = None
        sub = x.new_empty((n * d * d, sh - 2, sw - 2, co))
        # a band's row of tiles spans every sub-grid: split them too, so a band stays ~BAND_BYTES
        # (SIM's ASPP at 5.2 MP: 576 sub-grids, ~680 MB for one row of tiles across all of them)
        row = _A * _A * _ceil(sw - 2, _M) * c * p.element_size()
        step = 1 if _single_rows else max(1, BAND_BYTES // row)
        for i in range(0, p.shape[0], step):
            _valid_nhwc(p[i : i + step], u, sub[i : i + step])
        p = None
        out = sub.view(n, d, d, sh - 2, sw - 2, co).permute(0, 3, 1, 4, 2, 5).reshape(n, (sh - 2) * d, (sw - 2) * d, co)
        out = out[:, :h, :w]
    out = out.permute(0, 3, 1, 2)
    if not out.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    if bias is not None:
        out = out.add_(bias.view(1, -1, 1, 1))
    return out


def worthwhile(h: int, w: int, dilation: int = 1) -> bool:
    """Whether Winograd beats the direct convolution on an ``h x w`` map at this dilation.

    A dilated map splits into ``d x d`` sub-grids of ``ceil(h / d)`` rows, each computed in whole
    4x4 tiles, so a large dilation on a small map wastes most of a tile, while the direct
    convolution skips the taps that fall on the padding: compare the two multiply counts
    (:data:`MAX_WORK_RATIO`; from the measurements in the module docstring, e.g. dilation 36 on a
    72x108 map is 1.29x the direct work and measured 4x slower, dilation 4 there 0.30x and 2.6x
    faster).
    """
    d = int(dilation)
    direct = (h + 2 * max(0, h - d)) * (w + 2 * max(0, w - d))  # in-bounds taps per (in, out) pair
    tiles = d * d * _ceil(_ceil(h, d), _M) * _ceil(_ceil(w, d), _M)
    return tiles * _A * _A <= MAX_WORK_RATIO * direct


def eligible(conv: nn.Module) -> bool:
    """Whether :func:`use_winograd` converts ``conv`` (see the module docstring)."""
    return (
        isinstance(conv, nn.Conv2d)
        and tuple(conv.kernel_size) == (3, 3)
        and tuple(conv.stride) == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.dilation[0] == conv.dilation[1] == conv.padding[0] == conv.padding[1]
        and conv.in_channels * conv.out_channels >= MIN_MACS
    )


def _key(w: torch.Tensor) -> tuple[int, int]:
    """What identifies a weight's values: its storage and in-place version (inference tensors,
    made under ``torch.inference_mode``, have no version: they cannot change in place anyway)."""
    try:
        return w.data_ptr(), w._version
    except RuntimeError:
        return w.data_ptr(), -1


def _forward(self, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if (
        x.device.type != "cpu"
        or x.dtype != torch.float32
        or w.dtype != torch.float32
        or w.device.type != "cpu"
        or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        or torch.is_autocast_enabled("cpu")
        or x.dim() != 4
        or not worthwhile(x.shape[-2], x.shape[-1], self.dilation[0])
        or torch.compiler.is_compiling()  # --compile: the compiler's own convolution
        or getattr(self, "folded", True) is False  # a weight-standardised conv that has not folded
    ):
        return type(self).forward(self, x)
    key = _key(w)
    if self._winograd_key != key:
        self._winograd_u, self._winograd_key = winograd_weight(w), key
    return winograd_conv3x3(x, self._winograd_u, self.bias, self.dilation[0])


def use_winograd(net: nn.Module) -> int:
    """Route every eligible 3x3 convolution of ``net`` through Winograd F(4x4, 3x3) on the CPU, in
    place; returns how many were converted.

    Call it last, after loading and folding weights and after moving the network to its device
    and memory format: the transformed weights are computed here, so their memory is held from
    load on like the weights' (a weight changed later is transformed again on its next forward).
    A network on a GPU is left alone.
    """
    done = 0
    for module in net.modules():
        if eligible(module) and "forward" not in module.__dict__ and module.weight.device.type == "cpu":
            w = module.weight
            module._winograd_u, module._winograd_key = winograd_weight(w), _key(w)
            module.forward = types.MethodType(_forward, module)
            done += 1
    return done
