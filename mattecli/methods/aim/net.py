"""The AIM network (AimNet): max-pool ResNet-34 encoder, glance and focus decoders.

Paper: Li, Zhang, Tao, "Deep Automatic Natural Image Matting", IJCAI 2021.
Official code: github.com/JizhiziLi/AIM (MIT), ``core/network/AimNet.py`` and
``core/network/resnet_mp.py`` at 48e3dc8.

Parameter names mirror the official state dict so the released checkpoint maps
one-to-one, with one simplification: the official module registers the backbone
twice (``resnet.*`` and the aliases ``encoder0..4.*`` point at the same tensors);
here it is registered once, as ``resnet.*``, and the converter in ``convert.py`` folds
the aliases. The unused classification head (``resnet.fc``) is not built.

Where the code and the paper differ, the code wins:

* the glance head is a per-channel **sigmoid** (the paper speaks of a softmax);
* the focus path multiplies by the glance decoder's spatial-attention map as
  ``f + f * s`` right before its head;
* max-unpooling uses kernel 2 / stride 2 with indices from 3/2/1 max-pools.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mattecli.methods.backbones import BasicBlock, make_layer
from mattecli.runtime.context import GlobalAvgPool

__all__ = ["AimNet", "AimResNet34MP", "fuse_glance_focus"]


class AimResNet34MP(nn.Module):
    """ResNet-34 with a stride-1 stem, stride-1 stages and five 3x3/2 max-pools returning indices."""

    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv1", "bn1"),)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 1, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        for i in range(1, 6):
            setattr(self, f"maxpool{i}", nn.MaxPool2d(3, 2, 1, return_indices=True))
        self.layer1, c = make_layer(BasicBlock, 64, 64, 3)
        self.layer2, c = make_layer(BasicBlock, c, 128, 4)
        self.layer3, c = make_layer(BasicBlock, c, 256, 6)
        self.layer4, c = make_layer(BasicBlock, c, 512, 3)


def _conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def _block(channels: list[int], upsample: bool) -> nn.Sequential:
    """conv3x3(bias)+BN+ReLU for each consecutive channel pair, optionally a x2 bilinear upsample at the end."""
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:], strict=True):
        layers += _conv_bn_relu(cin, cout)
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


def _conv_up_psp(cin: int, cout: int, scale: int) -> nn.Sequential:
    return nn.Sequential(
        *_conv_bn_relu(cin, cout), nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
    )


class SELayer(nn.Module):
    """Squeeze-and-excitation with bias-free linear layers (reduction 16)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )
        self.pool = GlobalAvgPool()  # no parameters; a hook point for tiled inference

    def forward(self, x):
        w = self.fc(self.pool(x).flatten(1))
        return x * w[:, :, None, None]


class PSPModule(nn.Module):
    """Pyramid pooling: pooled 1x1 branches (bins 1, 3, 5) upsampled, concatenated before the input, 1x1 + ReLU."""

    def __init__(self, features: int, out_features: int, sizes=(1, 3, 5)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), nn.Conv2d(features, features, 1, bias=False)) for s in sizes
        )
        self.bottleneck = nn.Conv2d(features * (len(sizes) + 1), out_features, 1)
        self.relu = nn.ReLU()

    def forward(self, feats):
        h, w = feats.shape[2:]
        priors = [
            F.interpolate(stage(feats), size=(h, w), mode="bilinear", align_corners=False) for stage in self.stages
        ]
        return self.relu(self.bottleneck(torch.cat(priors + [feats], dim=1)))


def _unpool(x: torch.Tensor, indices: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``F.max_unpool2d(x, indices, 2, 2)``, exactly, written into ``out`` (a zero-filled ``(N, C, 2h, 2w)``
    tensor made here when None; a channel slice of a larger channels-last tensor is fine).

    The encoder's 3x3/2 max-pools overlap, so two pooled positions can point at the same pixel and
    the unpooling writes two different decoder values there. PyTorch's NCHW CPU kernel walks each
    plane in raster order (the last write wins, as in the official code); its channels-last kernel
    runs threads over pixels and the winner changes from run to run (measured: up to 0.05 on the
    focus alpha). Here channels-last CPU tensors are unpooled with a ``scatter_`` along the pixels of
    each ``(n, c)`` line, which the CPU kernel walks in order within a line: the NCHW kernel's result
    bit for bit, without converting the decoder's NHWC maps to NCHW and back (three full-size copies
    per level, 0.3-0.5 s each at the last level of a 1.3 MP focus pass). Other layouts and devices
    take ``F.max_unpool2d`` in NCHW order.
    """
    n, c, h, w = x.shape
    cl = torch.channels_last
    if x.device.type != "cpu" or not (x.is_contiguous(memory_format=cl) and indices.is_contiguous(memory_format=cl)):
        pooled = F.max_unpool2d(x.contiguous(), indices.contiguous(), 2, 2)
        return pooled if out is None else out.copy_(pooled)
    if out is None:
        out = torch.empty((n, c, 2 * h, 2 * w), dtype=x.dtype, device=x.device, memory_format=cl)
    out.zero_()
    # (N, H*W, C) views: scatter along the pixels, one (n, c) line at a time
    target = out.permute(0, 2, 3, 1).view(n, 4 * h * w, c)
    target.scatter_(1, indices.permute(0, 2, 3, 1).view(n, h * w, c), x.permute(0, 2, 3, 1).view(n, h * w, c))
    return out


def _unpool_cat(x: torch.Tensor, indices: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``torch.cat((F.max_unpool2d(x, indices, 2, 2), skip), 1)``, unpooled straight into the
    concatenation (channels-last when ``skip`` is: what the convolution after it wants)."""
    n, c, h, w = x.shape
    fmt = torch.channels_last if skip.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((n, c + skip.shape[1], 2 * h, 2 * w), dtype=skip.dtype, device=skip.device, memory_format=fmt)
    _unpool(x, indices, out[:, :c])
    out[:, c:].copy_(skip)
    return out


def fuse_glance_focus(glance: torch.Tensor, focus: torch.Tensor) -> torch.Tensor:
    """The in-network fusion: argmax of the glance classes picks 0 (bg), the focus alpha (transition) or 1 (fg)."""
    idx = glance.argmax(dim=1, keepdim=True)
    return focus * (idx == 1).to(focus.dtype) + (idx == 2).to(focus.dtype)


class AimNet(nn.Module):
    """AimNet: ``(N,3,H,W)`` ImageNet-normalised RGB, H and W multiples of 32 -> glance, focus, fusion.

    Returns:
        glance: ``(N,3,H,W)`` per-class sigmoids (0 background, 1 transition, 2 foreground);
        focus: ``(N,1,H,W)`` alpha from the focus (matting) decoder;
        fusion: ``(N,1,H,W)`` ``fuse_glance_focus(glance, focus)``.
    """

    stride = 32

    def __init__(self):
        super().__init__()
        self.resnet = AimResNet34MP()
        # glance (semantic) decoder
        self.psp_module = PSPModule(512, 512, (1, 3, 5))
        self.psp4 = _conv_up_psp(512, 256, 2)
        self.psp3 = _conv_up_psp(512, 128, 4)
        self.psp2 = _conv_up_psp(512, 64, 8)
        self.psp1 = _conv_up_psp(512, 64, 16)
        self.decoder4_g = _block([1024, 512, 512, 256], True)
        self.decoder4_g_se = SELayer(256)
        self.decoder3_g = _block([512, 256, 256, 128], True)
        self.decoder3_g_se = SELayer(128)
        self.decoder2_g = _block([256, 128, 128, 64], True)
        self.decoder2_g_se = SELayer(64)
        self.decoder1_g = _block([128, 64, 64, 64], True)
        self.decoder1_g_se = SELayer(64)
        self.decoder0_g = _block([128, 64, 64], True)
        self.decoder0_g_spatial = nn.Conv2d(2, 1, 7, padding=3)
        self.decoder0_g_se = SELayer(64)
        self.decoder_final_g = nn.Conv2d(64, 3, 3, padding=1)
        # focus (matting) decoder
        self.bridge_block = nn.Sequential(*[m for _ in range(3) for m in _conv_bn_relu(512, 512, 2)])
        self.decoder4_l = _block([1024, 512, 512, 256], False)
        self.decoder3_l = _block([512, 256, 256, 128], False)
        self.decoder2_l = _block([256, 128, 128, 64], False)
        self.decoder1_l = _block([128, 64, 64, 64], False)
        self.decoder0_l = _block([128, 64, 64], False)
        self.decoder_final_l = nn.Conv2d(64, 1, 3, padding=1)

    def encode(self, x):
        r = self.resnet
        e0 = r.relu(r.bn1(r.conv1(x)))
        e0p, id0 = r.maxpool1(e0)
        e1p, id1 = r.maxpool2(e0p)
        e1 = r.layer1(e1p)
        e2p, id2 = r.maxpool3(e1)
        e2 = r.layer2(e2p)
        e3p, id3 = r.maxpool4(e2)
        e3 = r.layer3(e3p)
        e4p, id4 = r.maxpool5(e3)
        e4 = r.layer4(e4p)
        return (e0, e1, e2, e3, e4), (id0, id1, id2, id3, id4)

    def glance(self, e4, head: bool = True, attention: bool = True):
        """Glance decoder from the deepest features: (class sigmoids, spatial attention map).

        ``head=False`` leaves out what only the class sigmoids need (the last squeeze-and-excitation
        and the 3-class head), ``attention=False`` the spatial attention map (only the focus decoder
        takes it); what is left out is None.
        """
        psp = self.psp_module(e4)
        d4 = self.decoder4_g_se(self.decoder4_g(torch.cat((psp, e4), 1)))
        d3 = self.decoder3_g_se(self.decoder3_g(torch.cat((self.psp4(psp), d4), 1)))
        d2 = self.decoder2_g_se(self.decoder2_g(torch.cat((self.psp3(psp), d3), 1)))
        d1 = self.decoder1_g_se(self.decoder1_g(torch.cat((self.psp2(psp), d2), 1)))
        d0 = self.decoder0_g(torch.cat((self.psp1(psp), d1), 1))
        spatial = glance = None
        if attention:
            pooled = torch.cat((d0.mean(dim=1, keepdim=True), d0.amax(dim=1, keepdim=True)), 1)
            spatial = torch.sigmoid(self.decoder0_g_spatial(pooled))
        if head:
            glance = torch.sigmoid(self.decoder_final_g(self.decoder0_g_se(d0)))
        return glance, spatial

    def focus(self, feats, indices, spatial):
        """Focus decoder: max-unpooling with the encoder's indices, skip connections, attention, sigmoid head."""
        return self._focus(list(feats), list(indices), spatial)

    def _focus(self, feats: list, indices: list, spatial):
        """:meth:`focus` on lists it empties as it goes, so that each skip tensor and its indices are freed
        as soon as they are used (the full-resolution ones are most of a focus pass's memory)."""
        e4 = feats.pop()
        d = self.decoder4_l(torch.cat((self.bridge_block(e4), e4), 1))
        del e4
        for decoder in (self.decoder3_l, self.decoder2_l, self.decoder1_l):
            d = decoder(_unpool_cat(d, indices.pop(), feats.pop()))
        d = _unpool(d, indices.pop())
        d = self.decoder0_l(_unpool_cat(d, indices.pop(), feats.pop()))
        d = torch.addcmul(d, d, spatial)  # d + d * spatial in one pass
        return torch.sigmoid(self.decoder_final_l(d))

    def run(self, x, *, glance: bool = True, focus: bool = True):
        """``(glance or None, focus or None)``: the encoder and only the decoder parts those outputs need.

        A glance-only pass skips the focus decoder; a focus-only pass still runs the glance decoder
        (its spatial attention map feeds the focus path) but not the glance head.
        """
        feats, indices = self.encode(x)
        if not focus:
            e4 = feats[4]
            del feats, indices
            return self.glance(e4, head=glance, attention=False)[0], None
        g, spatial = self.glance(feats[4], head=glance, attention=True)
        feats, indices = list(feats), list(indices)  # the only references: _focus frees them as it goes
        return g, self._focus(feats, indices, spatial)

    def forward(self, x):
        glance, focus = self.run(x)
        return glance, focus, fuse_glance_focus(glance, focus)
