"""SHM networks: T-Net (trimap), M-Net (raw alpha) and the fusion ``alpha_p = Fs + Us * alpha_r``.

Paper: Chen, Ge, Xu, Zhang, Yang, Gai, "Semantic Human Matting", ACM Multimedia 2018
(arXiv 1809.01354). The authors released no code or weights. Two
networks live here; ``processor.py`` runs them and ``spec.py`` declares the ``shm`` method.

``SHMNet`` (variant ``shm``): the paper's network
    * T-Net = PSPNet-50 (paper 4.1): ResNet-50 with the last two stages dilated (output stride 8),
      pyramid pooling over bins (1, 2, 3, 6) reducing 2048 -> 512 channels per bin, a 3x3
      conv (4096 -> 512) + BN + ReLU + dropout(0.1) and a 1x1 classifier to 3 classes, upsampled
      bilinearly to the input size.
    * M-Net (paper 4.2) = DIM's encoder-decoder with the changes the paper lists: 6 input
      channels (image + T-Net softmax), BatchNorm after every convolution, no ``conv6``/``deconv6``.
      Encoder: the 13 convolutions of VGG16 with 4 max-pools (2x2/2, indices kept); decoder: 6
      convolutions (``deconv5..deconv1`` 5x5 and a 5x5 alpha prediction) with 4 max-unpoolings.
    * Fusion (paper eq. 4): ``alpha_p = Fs + Us * alpha_r`` on the T-Net softmax.

    Assumptions where the paper is silent, each marked in the code:
      - the ResNet-50 trunk is torchvision's (7x7 stem, parameter names ``conv1``, ``layerN``...),
        so torchvision ImageNet weights initialise it one-to-one; PSPNet's reference code uses a
        deep 3x3 stem instead. Dilation 2 in every block of ``layer3`` and 4 in ``layer4`` as in
        PSPNet's reference implementation (hszhao/semseg), whose bilinear resizes
        (``align_corners=True``) are followed too. The auxiliary training head is not built.
      - M-Net's encoder uses torchvision ``vgg16_bn.features`` indices 0-42 (so VGG16-BN ImageNet
        weights map one-to-one except the 6-channel ``features.0``); the decoder follows DIM's
        channel widths (512, 256, 128, 64, 64) with conv+BN+ReLU; the alpha prediction layer has
        no BN and is followed by a **sigmoid** (the fusion needs ``alpha_r`` in [0, 1]).
      - T-Net channels are ordered (background, unknown, foreground), so ``argmax`` maps to trimap
        values 0 / 128 / 255 directly; ``Fs`` = channel 2, ``Us`` = channel 1.
      - Input: the RGB image normalised with ImageNet mean/std (the backbone is ImageNet
        initialised), concatenated with the softmax for M-Net. Input sides must be multiples of
        16 (``stride``); ``processor.py`` pads.

``SHMMindSporeNet`` (variant ``shm-mindspore``): the network of the MindSpore model zoo
    ``official/cv/semantic_human_matting`` (Apache-2.0; github.com/mindspore-ai/models, the mirror of
    gitee.com/mindspore/models), files ``src/model/{t_net,m_net,network}.py`` read at branch r1.8
    (8a0c1c4; unchanged from the first upload 512941e through r1.10), which trained the published
    checkpoint
    ``semantichumanmatting_ascend_v180_MattingHumanDatasets_official_cv_avesad5.49.ckpt``. It
    deviates from the paper; module and parameter names mirror the MindSpore cells exactly
    (only BatchNorm leaves differ: ``gamma/beta/moving_mean/moving_variance`` there,
    ``weight/bias/running_mean/running_var`` here, see ``shm.remap_mindspore``).

    * T-Net ``T_mv2_unet``: a MobileNetV2 encoder whose stem is stride 1 (so the five feature
      levels sit at strides 1, 2, 4, 8, 16), ``InvertedResidual`` blocks that always have the 1x1
      expansion conv (also for expansion 1), and a U-Net decoder: for each level, upsample x2
      (bilinear, half-pixel; MindSpore's hand-written ``Upsample`` equals PyTorch's
      ``align_corners=False``) -> 3x3 conv (bias) + BN + ReLU, add the skip, 3x3 conv (bias) + BN
      (no ReLU); a final 3x3 conv (bias) to 3 channels.
    * M-Net ``M_net``: 4 x (3x3 conv + BN + ReLU, zero-pad 1 + 3x3/2 max-pool) with 16-32-64-128
      channels, then 4 x (3x3 conv + BN + ReLU, zero-pad bottom/right by 1 + 5x5/2 transposed conv
      with padding 2 + crop of the last row/column) with 128-64-32-16 channels and a 5x5 conv to 1
      channel, no sigmoid. Zero-padding before a max-pool of ReLU outputs equals PyTorch's
      ``padding=1``; pad + transposed conv + crop equals ``output_padding=1``.
    * Fusion as implemented in ``network.py``: ``_, fg, unsure = split(softmax(trimap))`` and
      ``alpha_p = fg + unsure * alpha_r``, i.e. ``Fs`` = channel 1 and ``Us`` = channel 2. The
      T-Net's cross-entropy labels in ``src/dataset.py`` are 0 = background, 1 = unknown,
      2 = foreground, so the trained T-Net's channel 1 is the *unknown* class: the fusion channels
      disagree with the trimap labels upstream. We keep both as trained: the fusion uses channels
      (1, 2) like ``network.py``, and the predicted trimap reads the argmax with the label meaning
      (0 / 1 / 2 -> 0 / 128 / 255).
    * Input (``eval.py``/``preprocess.py``): **BGR** image in 0..255 minus (104, 112, 121), divided
      by 255, resized to 320x320. (Training used the mean (114, 121, 134); we follow the evaluation
      that produced the published SAD.)
    * Tensor layouts need no conversion: MindSpore stores conv weights as (out, in/groups, kh, kw)
      and transposed-conv weights as (in, out/groups, kh, kw) like PyTorch (``mindspore.nn._Conv``),
      and its BatchNorm eps is 1e-5 like PyTorch's. Sanity check: the network has 3,148,851
      float32 values (12.01 MiB), matching the 12.03M the model zoo README gives for the file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mattecli.methods.backbones import Bottleneck, make_layer

__all__ = [
    "fuse",
    "PSPNet50",
    "VggMNet",
    "SHMNet",
    "InvertedResidual",
    "MobileNetV2",
    "MobileNetV2UNet",
    "MindSporeMNet",
    "SHMMindSporeNet",
    "TRIMAP_CLASSES",
]

#: Trimap value of each T-Net class index (background, unknown, foreground), for both networks.
TRIMAP_CLASSES = (0, 128, 255)


def fuse(fs: torch.Tensor, us: torch.Tensor, alpha_r: torch.Tensor) -> torch.Tensor:
    """The paper's fusion module (eq. 4): ``alpha_p = Fs + Us * alpha_r``, all ``(N,1,H,W)``."""
    return fs + us * alpha_r


def _conv_bn_relu(cin: int, cout: int, k: int = 3, *, bias: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


# ============================================================================ paper: T-Net = PSPNet-50
class _ResNetTrunk(nn.Module):
    """torchvision-named ResNet trunk (``conv1``, ``bn1``, ``layer1..4``) without the classifier."""

    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv1", "bn1"),)

    def __init__(self, layers, *, dilations=(1, 1, 1, 1), strides=(1, 2, 2, 2), in_channels: int = 3, **block_kw):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c = 64
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
            stage, c = make_layer(Bottleneck, c, planes, n, stride=strides[i], dilation=dilations[i], **block_kw)
            setattr(self, f"layer{i + 1}", stage)
        self.out_channels = c

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: per bin, adaptive average pool -> 1x1 conv + BN + ReLU -> upsample; concat."""

    def __init__(self, channels: int, reduction: int, bins=(1, 2, 3, 6)):
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(channels, reduction, 1, bias=False),
                nn.BatchNorm2d(reduction),
                nn.ReLU(inplace=True),
            )
            for b in bins
        )

    def forward(self, x):
        size = x.shape[-2:]
        outs = [x] + [F.interpolate(f(x), size, mode="bilinear", align_corners=True) for f in self.features]
        return torch.cat(outs, 1)


class PSPNet50(nn.Module):
    """T-Net of the paper: PSPNet-50, ``(N,3,H,W)`` -> class logits ``(N,classes,H,W)`` (output stride 8)."""

    def __init__(self, classes: int = 3, bins=(1, 2, 3, 6)):
        super().__init__()
        # assumption: torchvision ResNet-50 trunk; PSPNet dilation (2 in all of layer3, 4 in all of layer4)
        self.backbone = _ResNetTrunk((3, 4, 6, 3), strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
        c = self.backbone.out_channels
        self.ppm = _PyramidPooling(c, c // len(bins), bins)
        self.cls = nn.Sequential(
            nn.Conv2d(2 * c, 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, classes, 1),
        )

    def forward(self, x):
        y = self.cls(self.ppm(self.backbone(x)))
        return F.interpolate(y, x.shape[-2:], mode="bilinear", align_corners=True)


# ============================================================================ paper: M-Net
#: torchvision ``vgg16_bn.features`` layout up to conv5_3's ReLU: output channels per conv, "M" = max-pool.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class VggMNet(nn.Module):
    """M-Net of the paper: ``(N,6,H,W)`` (image + trimap softmax) -> raw alpha ``(N,1,H,W)`` in [0, 1].

    Encoder ``features``: 13 conv+BN+ReLU of VGG16 and 4 max-pools (indices kept), with torchvision
    ``vgg16_bn`` indices. Decoder: ``deconv5`` (512), unpool, ``deconv4`` (256), unpool, ``deconv3``
    (128), unpool, ``deconv2`` (64), unpool, ``deconv1`` (64), all 5x5 conv+BN+ReLU, then the 5x5
    ``pred`` conv and a sigmoid. H and W must be multiples of 16.
    """

    def __init__(self, in_channels: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for v in _VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, return_indices=True))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.deconv5 = nn.Sequential(*_conv_bn_relu(512, 512, 5, bias=True))
        self.deconv4 = nn.Sequential(*_conv_bn_relu(512, 256, 5, bias=True))
        self.deconv3 = nn.Sequential(*_conv_bn_relu(256, 128, 5, bias=True))
        self.deconv2 = nn.Sequential(*_conv_bn_relu(128, 64, 5, bias=True))
        self.deconv1 = nn.Sequential(*_conv_bn_relu(64, 64, 5, bias=True))
        self.pred = nn.Conv2d(64, 1, 5, padding=2)

    def forward(self, x):
        pools = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                size = x.shape[-2:]
                x, idx = layer(x)
                pools.append((idx, size))
            else:
                x = layer(x)
        x = self.deconv5(x)
        for deconv in (self.deconv4, self.deconv3, self.deconv2, self.deconv1):
            idx, size = pools.pop()
            x = deconv(F.max_unpool2d(x, idx, 2, 2, output_size=size))
        return torch.sigmoid(self.pred(x))


class _TwoStage(nn.Module):
    """T-Net -> softmax -> M-Net on (image, softmax) -> ``fuse`` of the foreground and unknown channels."""

    fg_channel: int
    unknown_channel: int

    def forward(self, x):
        trimap = self.t_net(x)
        prob = torch.softmax(trimap, dim=1)
        alpha_r = self.m_net(torch.cat((x, prob), 1))
        fg, us = self.fg_channel, self.unknown_channel
        return trimap, alpha_r, fuse(prob[:, fg : fg + 1], prob[:, us : us + 1], alpha_r)


class SHMNet(_TwoStage):
    """The paper's SHM: ``(N,3,H,W)`` ImageNet-normalised RGB, H and W multiples of 16.

    Returns:
        trimap: ``(N,3,H,W)`` T-Net logits (background, unknown, foreground);
        alpha_r: ``(N,1,H,W)`` M-Net raw alpha;
        alpha_p: ``(N,1,H,W)`` fused alpha ``Fs + Us * alpha_r``.
    """

    stride = 16
    fg_channel = 2
    unknown_channel = 1

    def __init__(self):
        super().__init__()
        self.t_net = PSPNet50(3)
        self.m_net = VggMNet(6)


# ============================================================================ MindSpore: T-Net
class InvertedResidual(nn.Module):
    """MindSpore ``InvertedResidual``: 1x1 expand + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 + BN."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MindSpore ``mobilenet_v2`` (stride-1 stem): five feature levels at strides 1, 2, 4, 8, 16."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.head_conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)
        )

        def seq(inp, oup, stride, n):
            return nn.Sequential(
                *[InvertedResidual(inp if i == 0 else oup, oup, stride if i == 0 else 1, 6) for i in range(n)]
            )

        self.block_1 = InvertedResidual(32, 16, 1, 1)
        self.block_2 = seq(16, 24, 2, 2)
        self.block_3 = seq(24, 32, 2, 3)
        self.block_4 = seq(32, 64, 2, 4)
        self.block_5 = seq(64, 96, 1, 3)
        self.block_6 = seq(96, 160, 2, 3)
        self.block_7 = InvertedResidual(160, 320, 1, 6)

    def forward(self, x):
        s1 = self.block_1(self.head_conv(x))
        s2 = self.block_2(s1)
        s3 = self.block_3(s2)
        s4 = self.block_5(self.block_4(s3))
        s5 = self.block_7(self.block_6(s4))
        return s1, s2, s3, s4, s5


def _up_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        nn.Conv2d(cin, cout, 3, 1, 1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _fusion(c: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c))


class MobileNetV2UNet(nn.Module):
    """MindSpore ``T_mv2_unet``: ``(N,3,H,W)`` -> 3-class logits ``(N,3,H,W)``; H, W multiples of 16."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.feature = MobileNetV2()
        self.s5_up_conv = _up_conv(320, 96)
        self.s4_fusion = _fusion(96)
        self.s4_up_conv = _up_conv(96, 32)
        self.s3_fusion = _fusion(32)
        self.s3_up_conv = _up_conv(32, 24)
        self.s2_fusion = _fusion(24)
        self.s2_up_conv = _up_conv(24, 16)
        self.s1_fusion = _fusion(16)
        self.last_conv = nn.Conv2d(16, classes, 3, 1, 1)

    def forward(self, x):
        s1, s2, s3, s4, s5 = self.feature(x)
        s4 = self.s4_fusion(self.s5_up_conv(s5) + s4)
        s3 = self.s3_fusion(self.s4_up_conv(s4) + s3)
        s2 = self.s2_fusion(self.s3_up_conv(s3) + s2)
        s1 = self.s1_fusion(self.s2_up_conv(s2) + s1)
        return self.last_conv(s1)


# ============================================================================ MindSpore: M-Net
class MindSporeMNet(nn.Module):
    """MindSpore ``M_net``: ``(N,6,H,W)`` -> raw alpha ``(N,1,H,W)`` (linear output, no sigmoid)."""

    def __init__(self):
        super().__init__()
        enc = (6, 16, 32, 64, 128)
        for i in range(4):
            setattr(self, f"en_conv_bn_relu_{i + 1}", nn.Sequential(*_conv_bn_relu(enc[i], enc[i + 1])))
            # zero-pad 1 + valid 3x3/2 pool on ReLU outputs (>= 0) == padding=1 with -inf
            setattr(self, f"max_pooling_{i + 1}", nn.MaxPool2d(3, 2, padding=1))
        dec = (128, 128, 64, 32, 16)
        for i in range(4):
            setattr(self, f"de_conv_bn_relu_{i + 1}", nn.Sequential(*_conv_bn_relu(dec[i], dec[i + 1])))
            # pad bottom/right by 1 + transposed conv (pad 2) + crop last row/col == output_padding=1
            setattr(
                self,
                f"deconv_{i + 1}",
                nn.ConvTranspose2d(dec[i + 1], dec[i + 1], 5, 2, padding=2, output_padding=1, bias=False),
            )
        self.conv = nn.Conv2d(16, 1, 5, 1, 2, bias=False)

    def forward(self, x):
        for i in range(1, 5):
            x = getattr(self, f"max_pooling_{i}")(getattr(self, f"en_conv_bn_relu_{i}")(x))
        for i in range(1, 5):
            x = getattr(self, f"deconv_{i}")(getattr(self, f"de_conv_bn_relu_{i}")(x))
        return self.conv(x)


class SHMMindSporeNet(_TwoStage):
    """The MindSpore model zoo's end-to-end ``net`` (stage 2): ``(N,3,H,W)``, H and W multiples of 16.

    Input is the BGR encoding of ``eval.py`` (see the module docstring). Returns ``(trimap logits,
    alpha_r, alpha_p)`` like :class:`SHMNet`; ``alpha_p = p[:, 1] + p[:, 2] * alpha_r`` as in
    MindSpore's ``network.py`` (not clamped).
    """

    stride = 16
    fg_channel = 1  # as in network.py's split; see the module docstring
    unknown_channel = 2

    def __init__(self):
        super().__init__()
        self.t_net = MobileNetV2UNet(3)
        self.m_net = MindSporeMNet()
