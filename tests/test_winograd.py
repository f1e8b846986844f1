"""Winograd F(4x4, 3x3) convolutions (``mattecli.runtime.winograd``) equal ``F.conv2d``.

Checked against the convolution in float64 for every shape class the networks meet (odd sizes,
maps smaller than a tile, batches, dilations up to SIM's ASPP rate 36, bands smaller than the map),
the routing of ``use_winograd`` (which convolutions convert, when the original forward runs
instead, state dicts untouched, a changed weight picked up), and SIM's two networks converted
against the same networks plain, bounded by the float32 networks' own error against float64.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import calibrate, random_net

import mattecli.methods  # noqa: F401  (plugs every variant's architecture into mattecli.weights)
from mattecli.runtime import winograd
from mattecli.runtime.fold import fold_batchnorm
from mattecli.runtime.winograd import eligible, use_winograd, winograd_conv3x3, winograd_weight, worthwhile
from mattecli.weights import get_architecture


def _case(n, c, co, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(co, c, 3, 3, generator=g) / (9 * c) ** 0.5  # unit-scale outputs
    b = torch.randn(co, generator=g)
    return x, wt, b


@pytest.mark.parametrize(
    "n,c,co,h,w,d",
    [
        (1, 16, 8, 13, 17, 1),  # neither side a multiple of the 4x4 tile
        (2, 8, 5, 9, 10, 2),
        (1, 12, 4, 37, 29, 4),
        (1, 5, 3, 30, 41, 12),  # SIM's ASPP rates
        (1, 5, 3, 20, 23, 36),  # dilation larger than the map: most taps on the padding
        (3, 4, 6, 1, 1, 1),  # a single pixel
        (1, 4, 4, 2, 3, 3),
        (1, 32, 16, 64, 48, 1),
    ],
)
def test_equals_the_convolution_in_float64(n, c, co, h, w, d):
    x, wt, b = _case(n, c, co, h, w)
    exact = F.conv2d(x.double(), wt.double(), b.double(), padding=d, dilation=d)
    direct = F.conv2d(x, wt, b, padding=d, dilation=d)
    got = winograd_conv3x3(x, winograd_weight(wt), b, d)
    assert got.shape == exact.shape
    assert got.is_contiguous(memory_format=torch.channels_last)  # what the next layer expects
    err = float((got.double() - exact).abs().max())
    own = float((direct.double() - exact).abs().max())
    # F(4x4, 3x3) rounds a little more than the direct sum (~5e-5 at unit scale); nothing like a wrong tap
    assert err <= max(1e-4, 10 * own), (err, own)
    # without a bias, and from a plain NCHW input
    nb = winograd_conv3x3(x.contiguous(), winograd_weight(wt), None, d)
    assert float((nb.double() - (exact - b.double().view(1, -1, 1, 1))).abs().max()) <= max(1e-4, 10 * own)


@pytest.mark.parametrize("d", [1, 4])
def test_bands_smaller_than_the_map_give_the_same_result(monkeypatch, d):
    x, wt, b = _case(2, 24, 16, 45, 38)
    u = winograd_weight(wt)
    whole = winograd_conv3x3(x, u, b, d)
    # the same sums; only the matrix products' blocking (their row counts) may round differently
    # (~1e-5 at unit scale; a wrong tap would be off by ~1)
    with winograd.single_row_bands():  # as memory probes run it
        torch.testing.assert_close(winograd_conv3x3(x, u, b, d), whole, rtol=0, atol=1e-4)
    monkeypatch.setattr(winograd, "BAND_BYTES", 1)  # one row of tiles (of one sub-grid) per band
    banded = winograd_conv3x3(x, u, b, d)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-4)


def test_the_work_rule():
    # a whole map of full tiles is 1/4 of the direct multiplies
    assert worthwhile(144, 216, 1) and worthwhile(20, 20, 1)
    # SIM at 2 MP (ASPP on a 144x216 map): rate 12 converts, 24 and 36 waste most of their tiles
    assert worthwhile(144, 216, 12) and not worthwhile(144, 216, 24) and not worthwhile(144, 216, 36)
    assert worthwhile(72, 108, 4) and not worthwhile(72, 108, 36)
    assert not worthwhile(10, 10, 1)  # 3x3 tiles of 4x4 for a 10x10 map: 1.44x the direct work


def test_which_convolutions_convert():
    big = winograd.MIN_MACS // 256
    assert eligible(torch.nn.Conv2d(big, 256, 3, padding=1))
    assert eligible(torch.nn.Conv2d(big, 256, 3, padding=4, dilation=4, bias=False))
    assert not eligible(torch.nn.Conv2d(big, 128, 3, padding=1))  # too few channels: measured slower
    assert not eligible(torch.nn.Conv2d(big, 256, 3, stride=2, padding=1))
    assert not eligible(torch.nn.Conv2d(big, 256, 3, padding=1, groups=2))
    assert not eligible(torch.nn.Conv2d(big, 256, 1))
    assert not eligible(torch.nn.Conv2d(big, 256, 3, padding=0))  # "valid": a smaller output
    assert not eligible(torch.nn.Conv2d(big, 256, 3, padding=1, padding_mode="reflect"))
    assert not eligible(torch.nn.Conv2d(big, 256, 3, padding=2, dilation=1))


def test_use_winograd_routes_forward_and_keeps_parameters():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(256, 256, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(256, 8, 3, padding=1)
    )
    plain = copy.deepcopy(net)
    keys = {k: v.clone() for k, v in net.state_dict().items()}
    assert use_winograd(net) == 1 and use_winograd(net) == 0  # the small one stays; idempotent
    assert net.state_dict().keys() == keys.keys() and all(torch.equal(net.state_dict()[k], v) for k, v in keys.items())
    x = torch.randn(1, 256, 20, 24).contiguous(memory_format=torch.channels_last)
    calls = []
    orig = winograd.winograd_conv3x3
    try:
        winograd.winograd_conv3x3 = lambda *a, **k: calls.append(1) or orig(*a, **k)
        with torch.inference_mode():
            got, ref = net(x), plain(x)
        assert calls == [1]
        assert float((got - ref).abs().max()) < 1e-3 * float(ref.abs().max())
        # a changed weight (e.g. a state dict loaded afterwards) is picked up
        with torch.no_grad():
            net[0].weight.mul_(2.0)
            plain[0].weight.mul_(2.0)
        with torch.inference_mode():
            assert float((net(x) - plain(x)).abs().max()) < 1e-3 * float(plain(x).abs().max())
        assert len(calls) == 2
        # the original forward, exactly, where Winograd does not apply
        xg = x.clone().requires_grad_(True)
        assert torch.equal(net(xg), plain(xg)) and len(calls) == 2  # gradients wanted
        with torch.inference_mode():
            small = x[:, :, :3, :3]  # a map too small to be worth it
            assert torch.equal(net[0](small), plain[0](small))
            with torch.autocast("cpu", dtype=torch.bfloat16):  # --precision bf16
                assert torch.equal(net[0](x), plain[0](x))
            # a float64 copy (deep copies stay bound to themselves)
            n64, p64 = copy.deepcopy(net).double(), copy.deepcopy(plain).double()
            assert torch.equal(n64(x.double()), p64(x.double()))
        assert len(calls) == 2
    finally:
        winograd.winograd_conv3x3 = orig


def _sim_inputs(h=96, w=128):
    g = torch.Generator().manual_seed(7)
    tri = torch.randint(0, 3, (1, 1, h, w), generator=g).float() * 127.5
    two = torch.cat([(tri == 0).float(), (tri == 255).float()], 1)
    smap = torch.rand(1, 20, h, w, generator=g) * (tri == 127.5).float()
    return (
        torch.rand(1, 3, h, w, generator=g),
        two,
        torch.randn(1, 3, h, w, generator=g),
        torch.rand(1, 6, h, w, generator=g),
        smap,
    )


@pytest.mark.parametrize("variant", ["sim-comp1k", "sim-classifier"])
def test_sim_networks_with_winograd_equal_the_plain_ones(variant, monkeypatch):
    net = random_net(get_architecture(variant).build(), seed=3)
    if variant == "sim-classifier":  # the official 320 px patches
        x = (torch.randn(2, 4, 320, 320, generator=torch.Generator().manual_seed(7)),)
    else:
        x = _sim_inputs(192, 256)
    calibrate(net, *x)
    if hasattr(net, "fold_weight_standardization"):
        net.fold_weight_standardization()
    fold_batchnorm(net)
    net = net.to(memory_format=torch.channels_last)
    plain = copy.deepcopy(net)
    assert use_winograd(net) > 0
    cl = [t.contiguous(memory_format=torch.channels_last) for t in x]
    calls = []
    orig = winograd.winograd_conv3x3
    monkeypatch.setattr(
        winograd, "winograd_conv3x3", lambda *a, **k: calls.append(a[3] if len(a) > 3 else 1) or orig(*a, **k)
    )
    with torch.inference_mode():
        if variant == "sim-classifier":
            ref, got, exact = plain.cam(*cl), net.cam(*cl), copy.deepcopy(plain).double().cam(*(t.double() for t in cl))
        else:
            ref, got, exact = plain(*cl), net(*cl), copy.deepcopy(plain).double()(*(t.double() for t in cl))
    # classifier: layer3 blocks 1-5 (layer4 maps are too small); matting net: layer3-4, ASPP, decoder
    assert len(calls) >= (5 if variant == "sim-classifier" else 8), calls
    scale = max(1.0, float(exact.abs().max()))
    own = float((ref.double() - exact).abs().max()) / scale
    err = float((got.double() - exact).abs().max()) / scale
    assert err <= 1e-4 + 10 * own, (err, own)
    assert float((got.double() - exact).abs().mean()) / scale <= 1e-5
