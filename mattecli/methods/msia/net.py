"""The MSIA-matte network (MSIANet): ResNeXt-101 + ASPP, superficial-traces branch, information assembly decoder.

Paper: Qiao, Liu, Zhu, Yang, Wang, Zhang, Wei, "Multi-scale Information Assembly for Image
Matting", Computer Graphics Forum 39(7), 2020 (arXiv 2101.02391). No official code or weights are
known; everything below is reconstructed from the paper's text. The copy of the paper this was
built from lacked Figure 2 and part of equations (2)-(3), so the following are assumptions, each
marked in the code:

Backbone (sec. 3.1, 4.1) -- "ResNeXt-101 [XGD*17]", ImageNet pre-trained.
    A1. ResNeXt-101 **32x4d** (the configuration of the ResNeXt paper); ``groups``/``base_width``
        are constructor arguments (32x8d = torchvision's ``resnext101_32x8d``). Parameter names are
        torchvision's (``backbone.conv1``, ``backbone.layer1.0.conv2``...) so ImageNet ResNeXt
        weights (torchvision / timm) load one-to-one.
    A2. Output stride 16 for ASPP, as in DeepLabv3+ [CPK*18]: ``layer4`` runs at stride 1 with
        dilation 2 (first block dilation 1, torchvision's ``replace_stride_with_dilation``
        convention). This fits the ablation's "upsampling factor is 4" between ASPP and the
        block-1 features (stride 4).
ASPP [CPK*18]
    A3. DeepLabv3's module on ``layer4`` (2048 channels): a 1x1 branch, three 3x3 atrous branches
        with rates 6, 12, 18 and image pooling, 256 channels each, every conv + BN + ReLU, then a
        1x1 projection of the 1280 concatenated channels to 256 + BN + ReLU (training dropout
        omitted: inference only).
Superficial traces branch (sec. 3.2), on the "ResNeXt block1" features (``layer1``, 256 ch, stride 4)
    * IniST: two 3x3 convolutions with 64 channels -> F_ini (stride 4).
    * SedST: a stride-2 convolution, then three 3x3 convolutions with 256 channels -> F_sed (stride 8).
    A4. Every convolution of the branch is conv(no bias) + BN + ReLU; the stride-2 convolution is
        3x3 with 256 output channels (the paper gives neither).
Information assembly decoder (sec. 3.3, eqs. 2-5)
    * F_IA = Cat(W_aspp * F_aspp, W_sed * F_sed); two 3x3 convs; x2 upsampling; concatenation with
      F_ini -> F_cat; two 3x3 convs, sigmoid, upsampling to the input size.
    A5. F_aspp (stride 16) is upsampled x2 (bilinear) to F_sed's stride 8 before the assembly (the
        text implies both meet at stride 8, since F_IA upsampled x2 meets F_ini at stride 4).
    A6. The assembly coefficients: eqs. (2)-(3) survive only as ``W_aspp / (W_aspp + W_sed) + eps``;
        we read them as the usual normalised fusion ``W_x / (W_aspp + W_sed + eps)`` with ``eps =
        1e-4`` over non-negative scalars. The text calls them "assembly coefficient scalars" that
        "balance dynamic weights" and "adaptively" integrate per image ("some examples may contain
        no middle-level superficial traces"), so by default each scalar is predicted per image:
        ``W_x = ReLU(1x1 conv(global average pool(F_x)))`` (bias initialised to 1, so both
        branches start equal). ``adaptive=False`` gives two learned global scalars instead
        (``ReLU`` of a parameter, EfficientDet-style), the other plausible reading.
    A7. Widths: the two convs after the assembly keep 256 channels (512 -> 256 -> 256); the first
        final conv maps F_cat (256 + 64) to 64 channels; the last 3x3 conv (with bias) gives 1
        channel. Every decoder conv except the last has BN + ReLU. The sigmoid is applied before
        the final bilinear x4 upsampling, in the order the text lists them.
Input
    A8. The paper's network takes a single RGB image (it is trimap-free), normalised with ImageNet
        mean/std. Input sides must be multiples of 16 (``stride``); ``processor.py`` pads and crops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mattecli.methods.backbones import Bottleneck, make_layer
from mattecli.runtime.context import GlobalAvgPool

__all__ = ["MSIANet", "ResNeXt101", "ASPP", "InformationAssembly", "assembly_weights"]


def _cbr(cin: int, cout: int, k: int = 3, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (k // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResNeXt101(nn.Module):
    """ResNeXt-101 (torchvision names), output stride 16: returns (layer1 features, layer4 features)."""

    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv1", "bn1"),)

    def __init__(self, groups: int = 32, base_width: int = 4, layers=(3, 4, 23, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        kw = {"groups": groups, "base_width": base_width}
        self.layer1, c = make_layer(Bottleneck, 64, 64, layers[0], **kw)
        self.layer2, c = make_layer(Bottleneck, c, 128, layers[1], stride=2, **kw)
        self.layer3, c = make_layer(Bottleneck, c, 256, layers[2], stride=2, **kw)
        # A2: output stride 16, layer4 dilated (torchvision convention: first block keeps dilation 1)
        self.layer4, c = make_layer(Bottleneck, c, 512, layers[3], dilation=2, first_dilation=1, **kw)
        self.out_channels = c

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        return low, self.layer4(self.layer3(self.layer2(low)))


class _ImagePooling(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
        )

    def forward(self, x):
        return F.interpolate(super().forward(x), x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """DeepLabv3 atrous spatial pyramid pooling (A3): 1x1, three atrous 3x3, image pooling -> 1x1 projection."""

    def __init__(self, cin: int = 2048, cout: int = 256, rates=(6, 12, 18)):
        super().__init__()
        branches = [_cbr(cin, cout, 1)] + [_cbr(cin, cout, 3, dilation=r) for r in rates]
        branches.append(_ImagePooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = _cbr(cout * len(branches), cout, 1)

    def forward(self, x):
        return self.project(torch.cat([b(x) for b in self.branches], 1))


def assembly_weights(w_aspp: torch.Tensor, w_sed: torch.Tensor, eps: float = 1e-4):
    """Eqs. (2)-(3) as read in A6: non-negative ``w`` -> ``(w_aspp, w_sed) / (w_aspp + w_sed + eps)``."""
    total = w_aspp + w_sed + eps
    return w_aspp / total, w_sed / total


class InformationAssembly(nn.Module):
    """Eq. (4): ``F_IA = Cat(W_aspp * F_aspp, W_sed * F_sed)`` with normalised, non-negative scalars (A6)."""

    def __init__(self, c_aspp: int = 256, c_sed: int = 256, *, adaptive: bool = True, eps: float = 1e-4):
        super().__init__()
        self.adaptive = adaptive
        self.eps = eps
        self.pool = GlobalAvgPool()  # no parameters; a hook point for tiled inference
        if adaptive:
            self.score_aspp = nn.Conv2d(c_aspp, 1, 1)
            self.score_sed = nn.Conv2d(c_sed, 1, 1)
            for conv in (self.score_aspp, self.score_sed):
                nn.init.zeros_(conv.weight)
                nn.init.ones_(conv.bias)
        else:
            self.weight = nn.Parameter(torch.ones(2))

    def coefficients(self, f_aspp: torch.Tensor, f_sed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``(W_aspp, W_sed)``, each ``(N,1,1,1)`` (adaptive) or a scalar tensor."""
        if self.adaptive:
            w_a = F.relu(self.score_aspp(self.pool(f_aspp)))
            w_s = F.relu(self.score_sed(self.pool(f_sed)))
        else:
            w_a, w_s = F.relu(self.weight).unbind(0)
        return assembly_weights(w_a, w_s, self.eps)

    def forward(self, f_aspp, f_sed):
        w_a, w_s = self.coefficients(f_aspp, f_sed)
        return torch.cat((w_a * f_aspp, w_s * f_sed), 1)


class MSIANet(nn.Module):
    """MSIA-matte: ``(N,3,H,W)`` ImageNet-normalised RGB, H and W multiples of 16 -> alpha ``(N,1,H,W)`` in [0, 1]."""

    stride = 16

    def __init__(self, *, groups: int = 32, base_width: int = 4, aspp_rates=(6, 12, 18), adaptive: bool = True):
        super().__init__()
        self.backbone = ResNeXt101(groups, base_width)
        self.aspp = ASPP(self.backbone.out_channels, 256, aspp_rates)
        # superficial traces branch (A4)
        self.ini_st = nn.Sequential(_cbr(256, 64), _cbr(64, 64))
        self.sed_st = nn.Sequential(_cbr(64, 256, stride=2), _cbr(256, 256), _cbr(256, 256), _cbr(256, 256))
        # information assembly decoder (A5-A7)
        self.assembly = InformationAssembly(256, 256, adaptive=adaptive)
        self.ia_conv = nn.Sequential(_cbr(512, 256), _cbr(256, 256))
        self.head = nn.Sequential(_cbr(256 + 64, 64), nn.Conv2d(64, 1, 3, padding=1))

    def forward(self, x):
        low, deep = self.backbone(x)
        f_ini = self.ini_st(low)  # stride 4
        f_sed = self.sed_st(f_ini)  # stride 8
        f_aspp = F.interpolate(self.aspp(deep), f_sed.shape[-2:], mode="bilinear", align_corners=False)
        f_ia = self.assembly(f_aspp, f_sed)
        up = F.interpolate(self.ia_conv(f_ia), f_ini.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.head(torch.cat((up, f_ini), 1)))
        return F.interpolate(alpha, x.shape[-2:], mode="bilinear", align_corners=False)
