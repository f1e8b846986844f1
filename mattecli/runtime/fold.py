"""Inference rewrites of a loaded network that keep its outputs: batch norms folded into the
convolutions before them, and CPU convolutions run by oneDNN with their weights reordered once.

**Folding** (:func:`fold_batchnorm`).

An eval-mode ``BatchNorm2d`` is a per-channel affine map ``y = a * x + b`` with fixed ``a`` and ``b``;
after a convolution it is the same convolution with its weights scaled by ``a`` per output channel
and its bias ``a * bias + b``. Folding saves one pass over every normalised feature map (on the CPU
7-20% of a ResNet's time) and changes outputs only by float rounding (the folded weights are
computed in float64; tests check folded against unfolded networks to 1e-5).

Which pairs fold (nothing is guessed from names):

* consecutive ``(Conv2d | ConvTranspose2d, BatchNorm2d)`` children of an ``nn.Sequential``;
* the pairs a module lists in its ``fold_pairs`` class attribute: ``(conv, bn)`` names of its
  children whose forward computes ``bn(conv(x))``, or ``((conv_a, conv_b), bn)`` for
  ``bn(conv_a(x) + conv_b(y))`` (the scale goes into both, the shift into the first one's bias).

A folded batch norm is replaced by ``nn.Identity``, so the network's parameter names change (the
normalisation is gone, biases appear): fold *after* loading weights, never load a state dict into
a folded network. A convolution that transforms its weight at every forward and offers ``fold()``
(SIM's weight standardisation) is folded that way first.

**Packing** (:func:`pack_convolutions`, CPU only). PyTorch's eager convolution reorders its weight
into oneDNN's blocked layout at every call (60% of a 512-channel 3x3 convolution's time on a small
map; 0.15 s of a small AimNet pass); a packed convolution keeps the reordered weight and calls
oneDNN's convolution directly, with a following ReLU / LeakyReLU of an ``nn.Sequential`` as its
post-op (bit-identical results, measured). It falls back to the plain convolution for anything
else: another device, another dtype, autocast (bf16), gradients, tracing or compiling, grouped or
non-zero-padded convolutions.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fold_batchnorm", "folded_pairs", "pack_convolutions", "PackedConv2d", "prepare_for_inference"]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def folded_pairs(net: nn.Module) -> list[tuple[nn.Module, tuple[str, ...], str]]:
    """``(parent, conv names, bn name)`` of every pair :func:`fold_batchnorm` would fold in ``net``."""
    pairs = []
    for module in net.modules():
        children = dict(module.named_children())
        if isinstance(module, nn.Sequential):
            names = list(children)
            for a, b in zip(names[:-1], names[1:], strict=True):
                if isinstance(children[a], _CONVS) and isinstance(children[b], nn.BatchNorm2d):
                    pairs.append((module, (a,), b))
        for convs, bn in getattr(module, "fold_pairs", ()):
            convs = (convs,) if isinstance(convs, str) else tuple(convs)
            if isinstance(children.get(bn), nn.BatchNorm2d) and all(
                isinstance(children.get(c), _CONVS) for c in convs
            ):
                pairs.append((module, convs, bn))
    return pairs


def _foldable(bn: nn.BatchNorm2d) -> bool:
    return not bn.training and bn.track_running_stats and bn.running_var is not None


@torch.no_grad()
def _fold(convs: list[nn.Module], bn: nn.BatchNorm2d) -> None:
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    shift = beta - mean * scale
    for i, conv in enumerate(convs):
        if hasattr(conv, "fold"):
            conv.fold()  # e.g. weight standardisation: the stored weight becomes the one the forward uses
        w = conv.weight
        if isinstance(conv, nn.ConvTranspose2d):  # (in, out / groups, kh, kw)
            if conv.groups != 1:
                raise ValueError("cannot fold a batch norm into a grouped transposed convolution")
            factor = scale.reshape(1, -1, 1, 1)
        else:  # (out, in / groups, kh, kw)
            factor = scale.reshape(-1, 1, 1, 1)
        w.copy_((w.double() * factor).to(w.dtype))
        bias = conv.bias.double() * scale if conv.bias is not None else torch.zeros_like(scale)
        if i == 0:
            bias = bias + shift
        if conv.bias is not None:
            conv.bias.copy_(bias.to(conv.bias.dtype))
        elif i == 0 or bool(bias.any()):
            conv.bias = nn.Parameter(bias.to(device=w.device, dtype=w.dtype), requires_grad=False)


def fold_batchnorm(net: nn.Module) -> int:
    """Fold every foldable batch norm of ``net`` (eval mode, running statistics) into its convolution(s),
    in place; returns how many were folded. See the module docstring for which pairs fold."""
    done = 0
    for parent, convs, bn_name in folded_pairs(net):
        bn = getattr(parent, bn_name)
        if not _foldable(bn):
            continue
        _fold([getattr(parent, c) for c in convs], bn)
        setattr(parent, bn_name, nn.Identity())
        done += 1
    return done


# ----------------------------------------------------------------------------- packing
def _mkldnn_ready() -> bool:
    return bool(
        torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
    )


class PackedConv2d(nn.Conv2d):
    """A ``Conv2d`` (its class swapped in place by :func:`pack_convolutions`) whose CPU float32 inference
    calls oneDNN with a weight reordered once, and applies ``post`` (``none``, ``relu`` or
    ``leaky_relu`` with ``post_scalars``) in the same call; every other call is the plain convolution
    followed by the same activation."""

    post: str = "none"
    post_scalars: tuple = ()

    def _fast(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.dim() == 4
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
            and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        )

    def _packed(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, tuple(w.shape))
        cached = self.__dict__.get("_packed_weight")
        if cached is None or cached[0] != key:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                w.detach().contiguous().to_mkldnn(),
                list(self.padding),
                list(self.stride),
                list(self.dilation),
                self.groups,
                None,
            )
            self.__dict__["_packed_weight"] = cached = (key, packed)
        return cached[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast(x):
            return torch.ops.mkldnn._convolution_pointwise(
                x,
                self._packed(),
                self.bias,
                list(self.padding),
                list(self.stride),
                list(self.dilation),
                self.groups,
                self.post,
                list(self.post_scalars),
                None,
            )
        y = self._conv_forward(x, self.weight, self.bias)
        if self.post == "relu":
            return torch.relu_(y)
        if self.post == "leaky_relu":
            return torch.nn.functional.leaky_relu_(y, self.post_scalars[0])
        return y


def _packable(conv: nn.Module) -> bool:
    if not isinstance(conv, nn.Conv2d) or isinstance(conv, PackedConv2d):
        return False
    plain = type(conv).forward is nn.Conv2d.forward or getattr(conv, "folded", False) is True
    return (
        plain
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and conv.weight.device.type == "cpu"
    )


def pack_convolutions(net: nn.Module, *, fuse_activations: bool = True) -> int:
    """Turn the plain CPU ``Conv2d`` modules of ``net`` (ungrouped, zero padding; also convolutions whose
    ``fold()`` made them plain, ``folded`` true) into :class:`PackedConv2d`, in place; with
    ``fuse_activations``, a ``ReLU`` / ``LeakyReLU`` that follows one in an ``nn.Sequential`` (batch norms
    folded away, ``nn.Identity`` between them) becomes its post-op. Returns how many were packed (0
    where oneDNN is not there)."""
    if not _mkldnn_ready():
        return 0
    packed = 0
    for module in list(net.modules()):
        if _packable(module):
            module.__class__ = PackedConv2d
            packed += 1
    if fuse_activations:
        for module in net.modules():
            if not isinstance(module, nn.Sequential):
                continue
            names = list(module._modules)
            for i, name in enumerate(names):
                conv = module._modules[name]
                if not isinstance(conv, PackedConv2d) or conv.post != "none":
                    continue
                j = i + 1
                while j < len(names) and isinstance(module._modules[names[j]], nn.Identity):
                    j += 1
                if j == len(names):
                    continue
                act = module._modules[names[j]]
                if type(act) is nn.ReLU:
                    conv.post, conv.post_scalars = "relu", ()
                elif type(act) is nn.LeakyReLU:
                    conv.post, conv.post_scalars = "leaky_relu", (float(act.negative_slope),)
                else:
                    continue
                setattr(module, names[j], nn.Identity())
    return packed


def prepare_for_inference(net: nn.Module, device=None, *, pack: bool = True) -> nn.Module:
    """:func:`fold_batchnorm`, then on the CPU :func:`pack_convolutions` (unless ``pack`` is off, e.g. for
    ``torch.compile``, which does its own); returns ``net``."""
    fold_batchnorm(net)
    dev = torch.device(device) if device is not None else next(iter(net.parameters()), torch.zeros(0)).device
    if pack and dev.type == "cpu":
        pack_convolutions(net)
    return net
