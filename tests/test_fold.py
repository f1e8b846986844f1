"""Batch norms folded into convolutions at load (``mattecli.runtime.fold``) give the plain network's outputs.

Every weights variant's network, with random weights whose batch norms have non-trivial statistics
and are calibrated to unit activations (so float rounding behaves as in a trained network), is
compared with its folded copy on the same inputs: within 1e-5 (absolute for alphas and
probabilities in [0, 1], relative to the output's scale for logits and class-activation maps). The
AIM pass-specific decoders are checked against the full forward the same way, and the load path
(``spec.create``) is checked to fold every batch norm while the tiled strategies' replayed global
context keeps working.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import calibrate, make_context, matter, random_net

import mattecli.methods  # noqa: F401  (plugs every variant's architecture into mattecli.weights)
from mattecli.runtime.fold import fold_batchnorm, folded_pairs
from mattecli.weights import get_architecture

TOL = 1e-5


def _inputs(variant: str, h: int = 96, w: int = 128) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(7)
    if variant == "sim-classifier":
        return (torch.randn(2, 4, h, w, generator=g),)
    if variant.startswith("sim"):
        tri = torch.randint(0, 3, (1, 1, h, w), generator=g).float() * 127.5
        two = torch.cat([(tri == 0).float(), (tri == 255).float()], 1)
        smap = torch.rand(1, 20, h, w, generator=g) * (tri == 127.5).float()
        return torch.rand(1, 3, h, w, generator=g), two, torch.randn(1, 3, h, w, generator=g), torch.rand(
            1, 6, h, w, generator=g
        ), smap
    return (torch.randn(1, 3, h, w, generator=g),)


def _flat(out) -> list[torch.Tensor]:
    return [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]


def _close(a, b) -> float:
    """Max |a - b| over the outputs, relative to each output's scale when that exceeds 1."""
    return max(float((x - y).abs().max()) / max(1.0, float(x.abs().max())) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("variant", ["aim", "sim-comp1k", "sim-classifier", "shm-mindspore", "shm", "msia"])
def test_folded_network_equals_the_plain_one(variant):
    net = random_net(get_architecture(variant).build(), seed=3)
    x = _inputs(variant)
    calibrate(net, *x)
    if hasattr(net, "fold_weight_standardization"):
        net.fold_weight_standardization()  # bit-identical (tested in test_sim); the BN fold must come after it
    plain = copy.deepcopy(net)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert fold_batchnorm(net) == n_bn > 0  # every batch norm of every method folds
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    with torch.inference_mode():
        ref, got = _flat(plain(*x)), _flat(net(*x))
        # and in the NHWC order the processors run
        cl = [t.contiguous(memory_format=torch.channels_last) for t in x]
        got_cl = _flat(net.to(memory_format=torch.channels_last)(*cl))
        # the plain network in float64: the float32 networks' own rounding error, measured
        exact = _flat(copy.deepcopy(plain).double()(*(t.double() for t in x)))
    exact = [t.float() for t in exact]
    if variant == "aim":  # (glance, focus, fusion): the fusion is an argmax of the glance classes, where a
        # near-tie may flip with float rounding; compared where the classes agree, flips at most 0.1%
        ref, got, got_cl, exact = (_aim_agreeing(exact, o) for o in (ref, got, got_cl, exact))
    # Folding is a float32 rewrite of the same arithmetic: it may add rounding of the order the plain
    # float32 network already has (against float64), not more; TOL covers networks whose own error is tiny.
    own = _close(exact, ref)
    assert _close(ref, got) <= TOL + 2 * own, (own, _close(ref, got))
    assert _close(ref, got_cl) <= TOL + 2 * own, (own, _close(ref, got_cl))
    assert _close(exact, got) <= TOL + 2 * own


def _aim_agreeing(ref: list[torch.Tensor], out: list[torch.Tensor]) -> list[torch.Tensor]:
    same = ref[0].argmax(1, keepdim=True) == out[0].argmax(1, keepdim=True)
    assert float(same.float().mean()) >= 0.999
    return [out[0], out[1], out[2] * same]


def test_sum_of_two_convolutions_and_transposed_convolutions_fold():
    class SumBN(torch.nn.Module):
        fold_pairs = ((("a", "b"), "bn"),)

        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
            self.b = torch.nn.Conv2d(5, 8, 1, bias=True)
            self.bn = torch.nn.BatchNorm2d(8)
            self.up = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 4, 4, 2, 1), torch.nn.BatchNorm2d(4))

        def forward(self, x, y):
            return self.up(self.bn(self.a(x) + self.b(y)))

    net = random_net(SumBN(), seed=1)
    x, y = torch.randn(2, 3, 16, 16), torch.randn(2, 5, 16, 16)
    plain = copy.deepcopy(net)
    assert len(folded_pairs(net)) == 2
    assert fold_batchnorm(net) == 2
    with torch.no_grad():
        assert float((plain(x, y) - net(x, y)).abs().max()) <= 1e-5


def test_training_mode_batch_norms_are_left_alone():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).train()
    assert fold_batchnorm(net) == 0 and isinstance(net[1], torch.nn.BatchNorm2d)


def _aim_net(seed: int = 2):
    from mattecli.methods.aim.net import AimNet

    net = random_net(AimNet(), seed)
    return calibrate(net, torch.randn(1, 3, 128, 160, generator=torch.Generator().manual_seed(0)))


def test_aim_pass_specific_decoders_equal_the_full_forward():
    net = _aim_net()
    fold_batchnorm(net)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(1)).contiguous(
        memory_format=torch.channels_last
    )
    with torch.inference_mode():
        glance, focus, fusion = net(x)
        g_only = net.run(x, glance=True, focus=False)
        f_only = net.run(x, glance=False, focus=True)
        both = net.run(x, glance=True, focus=True)
    assert g_only[1] is None and f_only[0] is None
    assert torch.equal(g_only[0], glance)
    assert float((f_only[1] - focus).abs().max()) <= TOL
    assert float((both[0] - glance).abs().max()) == 0 and float((both[1] - focus).abs().max()) <= TOL


@pytest.mark.parametrize("strategy", ["hybrid", "resize", "whole", "tiled"])
def test_aim_processor_folded_equals_plain(strategy):
    from mattecli.methods.aim.processor import AimProcessor

    plain_net = _aim_net()
    folded_net = copy.deepcopy(plain_net)
    fold_batchnorm(folded_net)
    rng = np.random.default_rng(0)
    image = rng.random((150, 210, 3), dtype=np.float32)
    out = []
    for net in (plain_net, folded_net):
        proc = AimProcessor(net.to(memory_format=torch.channels_last), make_context(), strategy, scales=None)
        if strategy == "tiled":
            proc.ctx.tiles.tile_size, proc.ctx.tiles.batch_size = 192, 2
        out.append(matter("aim", proc).predict(image))
    assert float(np.abs(out[0].alpha - out[1].alpha).mean()) <= TOL
    # the glance trimap is an argmax: a near-tie may flip, nothing more
    assert float((out[0].trimap != out[1].trimap).mean()) <= 1e-3


def test_tiled_replay_works_after_folding():
    """The pooled statistics recorded on a folded network are replayed on its tiles: one tile covering the
    image equals the whole pass (GlobalContext wraps the pooling modules, which folding leaves in place)."""
    from mattecli.methods.msia.net import MSIANet
    from mattecli.methods.msia.processor import MsiaProcessor
    from mattecli.runtime.executor import TilePolicy

    net = random_net(MSIANet(), 5)
    calibrate(net, torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    fold_batchnorm(net)
    image = np.random.default_rng(1).random((112, 144, 3), dtype=np.float32)
    whole = matter("msia", MsiaProcessor(net, make_context(strategy="whole"))).predict(image).alpha
    tiles = TilePolicy(stride=16, halo=64, tile_size=512, batch_size=1)
    tiled = matter("msia", MsiaProcessor(net, make_context(strategy="tiled", tiles=tiles))).predict(image).alpha
    assert float(np.abs(whole - tiled).max()) <= TOL
