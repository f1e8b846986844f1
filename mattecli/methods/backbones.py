"""ResNet building blocks with torchvision-compatible parameter names.

There is no usable CPU torchvision here, and the matting papers modify the
classic ResNets anyway (strides, dilations, extra input channels), so the blocks
are written in-house. Parameter names follow torchvision exactly (``conv1``,
``bn1``, ``layerN.i.conv1``, ``downsample.0/1``...) so ImageNet and official
checkpoints map one-to-one.
"""

from __future__ import annotations

from torch import nn

__all__ = ["BasicBlock", "Bottleneck", "make_layer"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1
    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck with a residual connection (ResNet-50/101, ResNeXt with ``groups``)."""

    expansion = 4
    #: ``(conv, bn)`` pairs of ``bn(conv(x))`` in forward, folded at load (:mod:`mattecli.runtime.fold`)
    fold_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
        groups: int = 1,
        base_width: int = 64,
    ):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(
    block: type[nn.Module],
    inplanes: int,
    planes: int,
    blocks: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    first_dilation: int | None = None,
    **block_kw,
) -> tuple[nn.Sequential, int]:
    """A ResNet stage (torchvision's ``_make_layer``); returns (stage, output channels).

    A 1x1 conv + BN ``downsample`` branch is added to the first block when the
    stride or the channel count changes.
    """
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), nn.BatchNorm2d(outplanes))
    first = dilation if first_dilation is None else first_dilation
    layers = [block(inplanes, planes, stride, downsample, dilation=first, **block_kw)]
    layers += [block(outplanes, planes, dilation=dilation, **block_kw) for _ in range(1, blocks)]
    return nn.Sequential(*layers), outplanes
