"""The SIM networks: the matting network (SIMNet) and the patch classifier (SIMClassifier).

Paper: Sun, Tang, Tai, "Semantic Image Matting", CVPR 2021.
Official code: github.com/nowsyn/SIM at dc5ed5a (no licence file; this is a clean-room
reimplementation from a written description of it): ``networks/model.py``,
``networks/util.py`` (``ResnetDilatedBN``), ``networks/resnet_bn.py``, ``networks/ppm.py``,
``networks/layers_WS.py`` (matting network) and ``networks/resnet.py`` (classifier).

Parameter names are the official ones, so the released checkpoints map one-to-one:

* matting (410 keys): ``encoder.{conv1,conv1_side,bn1,conv2,bn2,conv3,bn3,layer1-4}.*`` and
  ``decoder.{global_module,conv_up1-3,conv_up4_alpha,conv_up4_fb,conv_up4_attn}.*``. The
  foreground/background and attention heads are only used in training but are kept so that
  strict loading works;
* classifier (320 keys): torchvision ResNet-50 names with a 4-channel ``conv1`` and ``fc`` 2048 -> 20.

Where the matting network's shapes come from:

* encoder: deep-stem ResNet-50 (3x3/2 conv 11->64, 3x3 64->64, 3x3 64->128, BN + ReLU each), a
  7x7/2 side convolution of the 20 semantic score maps added to the first conv *before* its BN,
  3x3/2 max-pool, bottlenecks 3/4/6/3 with the stride on the 3x3 conv, layer3 dilated 1 then 2
  and layer4 dilated 2 then 4 with their strides removed (output stride 8);
* decoder: weight-standardised convolutions (:class:`WSConv2d`) in the ASPP (rates 12/24/36,
  image pooling, 1280->256 projection) and in ``conv_up1-3``; skips from the stem (/2, before the
  max-pool) and layer1 (/4); bilinear x2 upsampling with ``align_corners=False``; LeakyReLU 0.01;
  an alpha head of plain convolutions on [features, normalised RGB, RGB in [0,1], is_bg, is_fg];
  the alpha is a hard clamp to [0, 1] (no sigmoid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mattecli.methods.backbones import Bottleneck, make_layer

__all__ = [
    "NUM_CLASSES",
    "ENCODER_CHANNELS",
    "WS_EPS_VAR",
    "WS_EPS_STD",
    "standardize_weight",
    "WSConv2d",
    "ASPP",
    "SIMEncoder",
    "SIMDecoder",
    "SIMNet",
    "SIMClassifier",
]

NUM_CLASSES = 20
#: encoder input: normalised RGB (3) + six distance-transform Gaussians + is_bg, is_fg
ENCODER_CHANNELS = 11
#: weight standardisation: ``(w - mean) / (sqrt(var_unbiased + WS_EPS_VAR) + WS_EPS_STD)``
WS_EPS_VAR = 1e-12
WS_EPS_STD = 1e-5


# ----------------------------------------------------------------------------- weight standardisation
def standardize_weight(weight: torch.Tensor) -> torch.Tensor:
    """The official weight standardisation of a conv weight ``(out, in, kh, kw)``.

    Per output channel: subtract the mean over (in, kh, kw) (taken one axis after the other,
    as the official code does), then divide by ``sqrt(unbiased variance + 1e-12) + 1e-5``.
    The variance is Bessel-corrected (``torch.var`` default); a biased variance gives
    visibly different outputs.
    """
    mean = weight.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    centred = weight - mean
    std = torch.sqrt(torch.var(centred.reshape(centred.shape[0], -1), dim=1) + WS_EPS_VAR) + WS_EPS_STD
    return centred / std.reshape(-1, 1, 1, 1)


class WSConv2d(nn.Conv2d):
    """Conv2d with weight standardisation (the official ``layers_WS.Conv2d``, bias on by default).

    The parameter holds the raw (trained) weight, as in the official checkpoints; every forward
    standardises it. :meth:`fold` standardises the stored weight once (for inference with fixed
    weights), after which the forward is a plain convolution with bit-identical results. Loading
    a state dict un-folds the module again, since checkpoints hold raw weights.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.folded = False

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the raw weight by its standardised version (idempotent)."""
        if not self.folded:
            self.weight.copy_(standardize_weight(self.weight))
            self.folded = True

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.folded else standardize_weight(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


# ----------------------------------------------------------------------------- matting network
class ASPPPooling(nn.Sequential):
    """Image-level branch: global average pool, WS 1x1 conv, BN, ReLU, upsampled back to the input size."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            WSConv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return F.interpolate(super().forward(x), size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with WS convs: 1x1, three dilated 3x3, image pooling; 1x1 projection + dropout."""

    def __init__(self, in_channels: int = 2048, rates: tuple[int, ...] = (12, 24, 36), out_channels: int = 256):
        super().__init__()
        branches: list[nn.Module] = [
            nn.Sequential(WSConv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
        ]
        for rate in rates:
            branches.append(
                nn.Sequential(
                    WSConv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(),
                )
            )
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            WSConv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class SIMEncoder(nn.Module):
    """Deep-stem dilated ResNet-50 (output stride 8) with the semantic side branch ``conv1_side``.

    ``forward(x (N,11,H,W), smap (N,20,H,W))`` returns the skip list
    ``[x, stem (128, /2), layer1 (256, /4), layer2 (512, /8), layer3 (1024, /8), layer4 (2048, /8)]``.
    """

    #: batch norms folded at load (:mod:`mattecli.runtime.fold`); ``bn1`` follows the sum of two convolutions
    fold_pairs = ((("conv1", "conv1_side"), "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_channels: int = ENCODER_CHANNELS, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 2, 1, bias=False)
        self.conv1_side = nn.Conv2d(num_classes, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, 1, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1, c = make_layer(Bottleneck, 128, 64, 3)
        self.layer2, c = make_layer(Bottleneck, c, 128, 4, stride=2)
        # the official `_nostride_dilate`: strides removed, first 3x3 dilated by d/2, the others by d
        self.layer3, c = make_layer(Bottleneck, c, 256, 6, dilation=2, first_dilation=1)
        self.layer4, c = make_layer(Bottleneck, c, 512, 3, dilation=4, first_dilation=2)

    def forward(self, x: torch.Tensor, smap: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        y = F.relu(self.bn1(self.conv1(x) + self.conv1_side(smap)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = F.relu(self.bn3(self.conv3(y)))
        feats.append(y)
        y = self.maxpool(y)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            y = layer(y)
            feats.append(y)
        return feats


def _ws_conv_bn_lrelu(cin: int, cout: int) -> list[nn.Module]:
    return [WSConv2d(cin, cout, 3, padding=1, bias=True), nn.BatchNorm2d(cout), nn.LeakyReLU()]


def _head(cin: int, cout: int) -> nn.Sequential:
    """Plain 3x3 (bias) -> LReLU -> 3x3 (bias) -> LReLU -> 1x1 (no bias): cin -> 32 -> 16 -> cout."""
    return nn.Sequential(
        nn.Conv2d(cin, 32, 3, padding=1, bias=True),
        nn.LeakyReLU(),
        nn.Conv2d(32, 16, 3, padding=1, bias=True),
        nn.LeakyReLU(),
        nn.Conv2d(16, cout, 1, padding=0, bias=False),
    )


#: tile sides (cells at /4) tried by ``SIMDecoder._tail_unknown``, and the halo it adds (cells at /4;
#: an output pixel depends on 3, so the 4th is margin)
TAIL_TILES = (16, 32, 64)
TAIL_HALO = 4
#: the tiled tail runs only when its work (halos included) is below this share of the whole tail's
TAIL_MAX_WORK = 0.85


def tail_boxes(unknown: torch.Tensor, h4: int, w4: int) -> list[tuple[int, ...]] | None:
    """The tiles of :meth:`SIMDecoder._tail_unknown` for an unknown mask ``(1,1,4*h4,4*w4)``
    (float, 1 = unknown): ``(r0, r1, c0, c1, a0, a1, b0, b1)`` at /4 per kept tile (its cells,
    then its crop with the halo), or None when the whole tail is not clearly more work.

    The tile side is the one of :data:`TAIL_TILES` with the least work, halos included.
    """
    best = None
    for t in TAIL_TILES:  # tile side at /4
        keep = F.max_pool2d(unknown, 4 * t, 4 * t, ceil_mode=True)[0, 0].nonzero().tolist()
        boxes = []
        for i, j in keep:
            r0, r1, c0, c1 = i * t, min(h4, (i + 1) * t), j * t, min(w4, (j + 1) * t)
            a0, a1 = max(0, r0 - TAIL_HALO), min(h4, r1 + TAIL_HALO)
            b0, b1 = max(0, c0 - TAIL_HALO), min(w4, c1 + TAIL_HALO)
            boxes.append((r0, r1, c0, c1, a0, a1, b0, b1))
        work = sum((a1 - a0) * (b1 - b0) for *_, a0, a1, b0, b1 in boxes)
        if best is None or work < best[0]:
            best = (work, boxes)
    work, boxes = best
    return None if work >= TAIL_MAX_WORK * h4 * w4 else boxes


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class SIMDecoder(nn.Module):
    """ASPP + three WS conv stages with x2 upsampling and skips, then the alpha head.

    ``conv_up4_fb`` (foreground/background) and ``conv_up4_attn`` (content-sensitive weights) are
    training-only heads: built so the official checkpoints load strictly, never run here.
    """

    def __init__(self, rates: tuple[int, ...] = (12, 24, 36), aspp_channels: int = 256):
        super().__init__()
        self.global_module = ASPP(2048, rates, aspp_channels)
        self.conv_up1 = nn.Sequential(*_ws_conv_bn_lrelu(2048 + aspp_channels, 256), *_ws_conv_bn_lrelu(256, 256))
        self.conv_up2 = nn.Sequential(*_ws_conv_bn_lrelu(256 + 256, 256))
        self.conv_up3 = nn.Sequential(*_ws_conv_bn_lrelu(256 + 128, 64))
        self.conv_up4_alpha = _head(64 + 3 + 3 + 2, 1)
        self.conv_up4_fb = _head(64 + 3 + 3 + 2, 6)
        self.conv_up4_attn = _head(64, 3)

    def forward(
        self,
        feats: list[torch.Tensor],
        image: torch.Tensor,
        two_chan_trimap: torch.Tensor,
        *,
        unknown_only: bool = False,
    ) -> torch.Tensor:
        """The alpha ``(N,1,H,W)``; with ``unknown_only`` the same values wherever the trimap is
        unknown, and known pixels away from them not computed (0; see :meth:`_tail_unknown`)."""
        x_in, stem, layer1, _, _, layer4 = feats
        x = torch.cat([layer4, self.global_module(layer4)], dim=1)
        x = _up2(self.conv_up1(x))
        x4 = self.conv_up2(torch.cat([x, layer1], dim=1))
        if unknown_only:
            return self._tail_unknown(x4, stem, x_in, image, two_chan_trimap)
        return self._tail(x4, stem, x_in, image, two_chan_trimap)

    def _tail(self, x4, stem, x_in, image, two_chan_trimap):
        """From ``conv_up2``'s output (/4) to the alpha (/1): x2, ``conv_up3`` on [x, stem], x2, the head."""
        x = _up2(self.conv_up3(torch.cat([_up2(x4), stem], dim=1)))
        y = torch.cat([x, x_in[:, :3], image, two_chan_trimap], dim=1)
        return torch.clamp(self.conv_up4_alpha(y), 0.0, 1.0)

    def _tail_unknown(self, x4, stem, x_in, image, two_chan_trimap):
        """:meth:`_tail` only on the tiles that hold unknown pixels; 0 in the other tiles.

        The pipeline overwrites known pixels (0 / 1), so their alphas are never used, and the
        last stages (/2 and /1, a third of the network's time at 2 MP) are local: an output
        pixel depends on ``conv_up2``'s output within 3 cells at /4. Each kept tile is computed
        on its crop grown by :data:`TAIL_HALO` cells at /4 on each side, away from the image
        border, which gives the values of the whole pass (crop edges, where the upsampling
        clamps and the convolutions pad, fall inside the halo). The tile side is the one of
        :data:`TAIL_TILES` with the least work, halos included; the whole tail when that is
        not clearly less.
        """
        n, _, h4, w4 = x4.shape
        unknown = (two_chan_trimap.sum(dim=1, keepdim=True) == 0).any(dim=0, keepdim=True).float()
        boxes = tail_boxes(unknown, h4, w4)
        if boxes is None:
            return self._tail(x4, stem, x_in, image, two_chan_trimap)
        out = x4.new_zeros((n, 1, 4 * h4, 4 * w4)).contiguous(memory_format=torch.channels_last)
        for r0, r1, c0, c1, a0, a1, b0, b1 in boxes:
            a = self._tail(
                x4[:, :, a0:a1, b0:b1],
                stem[:, :, 2 * a0 : 2 * a1, 2 * b0 : 2 * b1],
                x_in[:, :, 4 * a0 : 4 * a1, 4 * b0 : 4 * b1],
                image[:, :, 4 * a0 : 4 * a1, 4 * b0 : 4 * b1],
                two_chan_trimap[:, :, 4 * a0 : 4 * a1, 4 * b0 : 4 * b1],
            )
            out[:, :, 4 * r0 : 4 * r1, 4 * c0 : 4 * c1] = a[
                :, :, 4 * (r0 - a0) : 4 * (r1 - a0), 4 * (c0 - b0) : 4 * (c1 - b0)
            ]
        return out


class SIMNet(nn.Module):
    """The SIM matting network (official ``MattingModule`` with ``n_channel=11``, ``resnet50_BN``).

    Inputs (``N`` images of ``HxW``, H and W multiples of 8):

    * ``image``: ``(N,3,H,W)`` RGB in [0, 1];
    * ``two_chan_trimap``: ``(N,2,H,W)`` [trimap == 0, trimap == 255];
    * ``image_n``: ``(N,3,H,W)`` ImageNet-normalised RGB;
    * ``trimap_transformed``: ``(N,6,H,W)`` distance-transform Gaussians (bg x3, fg x3);
    * ``smap``: ``(N,20,H,W)`` semantic score maps.

    Returns the alpha ``(N,1,H,W)`` clamped to [0, 1]. With :attr:`unknown_only` set (the
    pipeline, which overwrites known pixels, sets it) the last stages run only around unknown
    pixels (``SIMDecoder._tail_unknown``): the same alpha there, 0 on known pixels far from them.
    """

    stride = 8
    unknown_only = False

    def __init__(self):
        super().__init__()
        self.encoder = SIMEncoder()
        self.decoder = SIMDecoder()

    def forward(
        self,
        image: torch.Tensor,
        two_chan_trimap: torch.Tensor,
        image_n: torch.Tensor,
        trimap_transformed: torch.Tensor,
        smap: torch.Tensor,
    ) -> torch.Tensor:
        x = torch.cat([image_n, trimap_transformed, two_chan_trimap], dim=1)
        return self.decoder(self.encoder(x, smap), image, two_chan_trimap, unknown_only=self.unknown_only)

    def fold_weight_standardization(self) -> SIMNet:
        """Standardise every WS conv weight once (exactly equal outputs, no per-forward cost); returns self."""
        for m in self.modules():
            if isinstance(m, WSConv2d):
                m.fold()
        return self


# ----------------------------------------------------------------------------- patch classifier
class SIMClassifier(nn.Module):
    """Torchvision ResNet-50 on 4 channels (normalised RGB + trimap/255) with 20 classes, plus CAMs.

    ``forward(x (N,4,H,W))`` returns ``(logits (N,20), cam (N,20,h,w))`` where ``cam`` is the fc
    weight applied to the layer-4 features (no bias, no ReLU), ``h = ceil(H/32)`` roughly.
    """

    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv1", "bn1"),)

    def __init__(self, in_channels: int = 4, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1, c = make_layer(Bottleneck, 64, 64, 3)
        self.layer2, c = make_layer(Bottleneck, c, 128, 4, stride=2)
        self.layer3, c = make_layer(Bottleneck, c, 256, 6, stride=2)
        self.layer4, c = make_layer(Bottleneck, c, 512, 3, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Layer-4 features ``(N,2048,h,w)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def cam(self, x: torch.Tensor) -> torch.Tensor:
        """Class-activation maps only: ``einsum('dc,nchw->ndhw', fc.weight, features)``."""
        return torch.einsum("dc,nchw->ndhw", self.fc.weight, self.features(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        cam = torch.einsum("dc,nchw->ndhw", self.fc.weight, feats)
        return self.fc(torch.flatten(self.avgpool(feats), 1)), cam
