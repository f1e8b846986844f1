"""``--max-memory`` in every strategy (issue 22): full-size steps in bands equal the unbanded ones
exactly, whole passes check the budget before they run (and fall back as after running out of
memory), and the full-size maps of a tiled solve count against the budget."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mattecli.methods.aim.processor import hybrid_fuse, resize_zero_border, upsampled_alpha, upsampled_trimap
from mattecli.runtime.executor import Executor, TilePolicy, pass_fits, run_shrinking
from mattecli.runtime.memory import memory_in_use


@pytest.mark.parametrize("small,size", [((17, 30), (203, 255)), ((10, 10), (10, 10)), ((33, 47), (531, 757))])
@pytest.mark.parametrize("band", [1, 7, 64, 10_000])
def test_banded_upsampling_and_fusion_equal_the_full_size_ones(small, size, band):
    torch.manual_seed(0)
    trimap_small = torch.randint(0, 3, (1, 1, *small)).float() / 2.0
    focus = torch.rand(1, 1, *small)
    trimap_up = resize_zero_border(trimap_small, size)[0, 0].numpy()
    focus_up = resize_zero_border(focus, size)[0, 0].numpy()
    expected = np.full(size, 128, np.uint8)
    expected[np.abs(trimap_up) <= 1e-4] = 0
    expected[np.abs(trimap_up - 1.0) <= 1e-4] = 255
    predicted = upsampled_trimap(trimap_small, size, band=band)
    assert predicted.dtype == np.uint8 and (predicted == expected).all()
    fused = upsampled_alpha(focus, size, predicted, band=band)
    assert fused.dtype == np.float32 and fused.tobytes() == hybrid_fuse(trimap_up, focus_up).tobytes()
    assert upsampled_alpha(focus, size, band=band).tobytes() == focus_up.tobytes()
    rows = resize_zero_border(focus, size, rows=(3, 9))
    assert rows.numpy().tobytes() == resize_zero_border(focus, size)[:, :, 3:9].numpy().tobytes()


def test_a_global_pass_that_does_not_fit_runs_smaller_with_a_warning():
    sizes = []
    with pytest.warns(RuntimeWarning, match="does not fit --max-memory: running it at") as caught:
        out = run_shrinking(lambda s: sizes.append(s) or s, (128, 256), 32, "test pass", fits=lambda s: s[1] <= 64)
    assert out == (32, 64) and sizes == [(32, 64)]
    assert [str(w.message).split()[-1] for w in caught] == ["128x64", "64x32"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run_shrinking(lambda s: s, (128, 256), 32, "test pass", fits=lambda s: True) == (128, 256)


def test_a_whole_pass_that_does_not_fit_is_computed_on_tiles():
    with pytest.warns(RuntimeWarning, match="does not fit --max-memory: computing it on tiles"):
        assert Executor.whole_or_tiles(lambda: "whole", lambda: "tiled", "test pass", fits=lambda: False) == "tiled"
    assert Executor.whole_or_tiles(lambda: "whole", lambda: "tiled", "test pass", fits=lambda: True) == "whole"


def test_strategy_whole_falls_back_to_tiles_when_its_estimate_exceeds_the_budget():
    cpu = torch.device("cpu")
    held = memory_in_use(cpu)
    tight = Executor(TilePolicy(stride=1, halo=4, budget=held + (1 << 20), device=cpu), "whole")
    with pytest.warns(RuntimeWarning, match="whole-image pass does not fit --max-memory"):
        assert tight.choose(10_000, estimate=lambda: 1 << 30) == "tiled"
    roomy = Executor(TilePolicy(stride=1, halo=4, budget=held + (4 << 30), device=cpu), "whole")
    assert roomy.choose(10_000, estimate=lambda: 1 << 20) == "whole"
    assert Executor(TilePolicy(stride=1, halo=4), "whole").choose(10_000, estimate=lambda: 1 << 40) == "whole"


def test_a_probe_measure_of_the_image_decides_once_the_cheap_bound_does_not(monkeypatch):
    """``Probe.measure`` (a network whose memory depends on the image) refines the zero-input probe,
    and is asked only when neither the cheap upper bound nor that probe settled the choice."""
    from mattecli.runtime import executor as ex

    cpu = torch.device("cpu")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 1, 3, padding=1))
    held = memory_in_use(cpu)
    monkeypatch.setattr(ex, "activation_bytes_per_pixel", lambda *a, **k: 50_000.0)  # 50 GB for 1 MP
    probed = []

    def probe(policy, *a, **k):  # the zero-input probe: 800 B/px
        probed.append(1)
        policy.bytes_per_pixel = 800.0
        return 800.0

    monkeypatch.setattr(TilePolicy, "probe", probe)
    pixels = 1 << 20
    room = (held + int(600 * pixels / ex.PLAN_MARGIN) + (8 << 20), held + int(50_000 * pixels) + (8 << 20))
    calls = []

    def measure(bpp):
        return lambda: calls.append(bpp) or bpp

    def choose(budget, bpp):
        policy = TilePolicy(stride=8, halo=8, budget=budget, device=cpu)
        return Executor(policy).choose(pixels, ex.Probe(net, net, 3, measure(bpp)))

    assert choose(room[1], 400.0) == "whole" and calls == [] and probed == []  # the bound fits: nothing measured
    assert choose(room[0], 500.0) == "whole" and calls == [500.0] and probed == [1]  # 800 B/px does not fit
    assert choose(room[0], 700.0) == "tiled" and calls == [500.0, 700.0]
    calls.clear()
    assert choose(room[0] + int(300 * pixels / ex.PLAN_MARGIN), 500.0) == "whole" and calls == []  # 800 fits


def test_pass_fits_counts_what_is_held_and_the_full_size_maps_still_to_come():
    cpu = torch.device("cpu")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3, padding=1))
    held = memory_in_use(cpu)
    policy = TilePolicy(stride=8, halo=8, budget=held + (64 << 20), device=cpu)
    cache: dict = {}
    assert pass_fits(policy, 64 * 64, net, net, 3, cache=cache)
    assert "pass:bound" in cache  # settled by the cheap bound: nothing measured
    assert not pass_fits(policy, 64 * 64, net, net, 3, reserve=128 << 20, cache=cache)  # the maps alone overflow
    assert pass_fits(TilePolicy(stride=8, halo=8), 10**9, net, net, 3)  # no budget: always


def test_classical_whole_under_a_too_small_budget_is_the_tiled_solve():
    from mattecli.methods.classical import processor as classical

    rng = np.random.default_rng(0)
    h, w = 48, 64
    image = rng.random((h, w, 3)).astype(np.float32)
    trimap = np.zeros((h, w), np.uint8)
    trimap[:, w // 2 :] = 255
    trimap[:, w // 2 - 4 : w // 2 + 4] = 128
    tiled = classical.estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=40, tile_overlap=4)
    tiny = 1 << 20  # below what the process holds: whole cannot fit
    with pytest.warns(RuntimeWarning, match="does not fit --max-memory"):
        got = classical.estimate_alpha(
            image, trimap, "cf", strategy="whole", tile_size=40, tile_overlap=4, max_memory=tiny
        )
    assert got.tobytes() == tiled.tobytes()
    cap = memory_in_use(torch.device("cpu")) + (1 << 30)  # room for the whole solve's few MB
    whole = classical.estimate_alpha(image, trimap, "cf", strategy="whole", max_memory=cap)
    assert whole.tobytes() == classical.estimate_alpha(image, trimap, "cf", strategy="whole").tobytes()


def test_classical_tiles_leave_room_for_the_full_size_maps(monkeypatch):
    from mattecli.methods.classical import processor as classical

    seen = []
    real = classical._tile_size_for
    monkeypatch.setattr(classical, "_tile_size_for", lambda m, t, room, o=0: seen.append(room) or real(m, t, room, o))
    h, w = 40, 50
    image = np.random.default_rng(1).random((h, w, 3)).astype(np.float32)
    trimap = np.zeros((h, w), np.uint8)
    trimap[:, 30:] = 255
    trimap[:, 20:30] = 128
    cap = memory_in_use(torch.device("cpu")) + (256 << 20)
    classical.estimate_alpha(image, trimap, "cf", strategy="tiled", tile_overlap=4, max_memory=cap)
    (room,) = seen
    # the budget less what is held less the full-size maps (sum, weight, masks, output)
    assert room <= cap - memory_in_use(torch.device("cpu")) - classical._TILED_BYTES_PER_PIXEL * h * w + (8 << 20)
    assert room >= cap - memory_in_use(torch.device("cpu")) - classical._TILED_BYTES_PER_PIXEL * h * w - (64 << 20)


def test_a_probe_that_cannot_measure_falls_back_to_the_upper_bound(monkeypatch):
    """Where peak RSS cannot be measured (no ``clear_refs``), the policy keeps the activation bound."""
    from mattecli.runtime import executor as ex

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 1, 3, padding=1))
    monkeypatch.setattr(ex, "measure_pass", lambda *a, **k: None)
    policy = TilePolicy(stride=8, halo=8)
    bpp = policy.probe(net, net, 3, torch.device("cpu"))
    assert bpp == ex.activation_bytes_per_pixel(net, 3, stride=8, forward=net) == policy.bytes_per_pixel
