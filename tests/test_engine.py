"""Engine helpers: device/precision selection, tiling and blending."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mattecli import engine
from mattecli.errors import BadOptionError, DeviceError


def test_select_device():
    assert engine.select_device("cpu").type == "cpu"
    assert engine.select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(BadOptionError):
        engine.select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            engine.select_device("cuda:0")


def test_autocast_rules():
    cpu = torch.device("cpu")
    with engine.autocast(cpu, "fp32"):
        pass
    with engine.autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(BadOptionError, match="fp16 is not supported on the CPU"):
        engine.autocast(cpu, "fp16")
    with pytest.raises(BadOptionError):
        engine.autocast(cpu, "int8")


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (97, 40, 10), (40, 40, 5), (30, 64, 16), (513, 128, 64)])
def test_tile_starts_cover_with_overlap(length, tile, overlap):
    starts = engine.tile_starts(length, tile, overlap)
    t = min(tile, length)
    covered = np.zeros(length, int)
    for s in starts:
        assert 0 <= s and s + t <= length
        covered[s : s + t] += 1
    assert covered.min() >= 1
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        assert a + t - b >= min(overlap, t)  # neighbours share at least the overlap


@pytest.mark.parametrize("h,w,tile,overlap", [(67, 93, 32, 8), (100, 64, 48, 16), (20, 30, 64, 8)])
def test_blend_weights_sum_to_one_and_identity_is_exact(h, w, tile, overlap):
    x = torch.rand(1, 3, h, w)
    out = engine.tiled_apply(lambda t: t, x, tile=tile, overlap=overlap, out_channels=3, batch_size=3)
    torch.testing.assert_close(out, x)
    # the normalised windows of all tiles sum to exactly one everywhere
    ones = engine.tiled_apply(lambda t: torch.ones(t.shape[0], 1, *t.shape[2:]), x, tile=tile, overlap=overlap)
    torch.testing.assert_close(ones, torch.ones(1, 1, h, w))


def test_blend_window_is_smooth_and_positive():
    win = engine.blend_window(16, 16, 4)
    assert float(win.min()) > 0 and float(win.max()) == 1.0
    assert torch.equal(win, win.flip(0)) and torch.equal(win, win.T)


def test_skipped_tiles_stay_zero():
    x = torch.ones(1, 1, 64, 64)
    out = engine.tiled_apply(lambda t: t * 2, x, tile=32, overlap=0, skip=lambda y0, y1, x0, x1: x0 >= 32)
    assert float(out[..., :32].min()) == 2.0 and float(out[..., 32:].max()) == 0.0


def test_resize_is_identity_at_same_size():
    x = torch.rand(1, 1, 5, 7)
    assert engine.resize(x, (5, 7)) is x


def _oom_above(batch_limit: int, tile_limit: int, calls: list):
    """A per-pixel 'model' that raises torch.OutOfMemoryError for big batches or tiles."""

    def fn(x):
        calls.append(tuple(x.shape))
        if x.shape[0] > batch_limit or x.shape[-1] > tile_limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x[:, :1] * 2

    return fn


def test_oom_halves_batch_then_tile_and_gives_the_same_result():
    x = torch.rand(1, 3, 200, 260)
    calls = []
    with pytest.warns(RuntimeWarning, match="out of memory"):
        out = engine.tiled_apply_safe(_oom_above(1, 32, calls), x, tile=128, overlap=8, stride=8, batch_size=4)
    torch.testing.assert_close(out, x[:, :1] * 2)
    batches = [c[0] for c in calls]
    tiles = sorted({c[-1] for c in calls})
    assert 4 in batches and 2 in batches and 1 in batches  # batch halved first
    assert tiles[0] <= 32  # then the tile


def test_oom_with_nothing_left_to_shrink_is_a_device_error():
    x = torch.rand(1, 3, 64, 64)
    with pytest.warns(RuntimeWarning), pytest.raises(DeviceError, match="out of memory even with one"):
        engine.tiled_apply_safe(_oom_above(0, 0, []), x, tile=64, overlap=8, stride=32, batch_size=2)


def test_non_oom_errors_are_not_swallowed():
    def broken(x):
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        engine.tiled_apply_safe(broken, torch.rand(1, 1, 8, 8), tile=8, overlap=0)


@pytest.mark.parametrize(
    "text,value", [("8G", 8 << 30), ("512M", 512 << 20), ("1.5GiB", int(1.5 * (1 << 30))), ("2000", 2000)]
)
def test_parse_memory(text, value):
    assert engine.parse_memory(text) == value
    with pytest.raises(BadOptionError):
        engine.parse_memory("lots")


def test_plan_tiles_respects_budget_and_stride():
    tile, batch = engine.plan_tiles(100 * 1000 * 1000, 1000.0, stride=32, max_tile=1024)
    assert tile % 32 == 0 and tile * tile * 1000 * batch <= 100e6 and batch >= 1
    small, _ = engine.plan_tiles(1000, 1000.0, stride=32, max_tile=1024)
    assert small == 32  # never below one stride


def test_activation_estimate_bounds_a_simple_net():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 1))
    bpp = engine.activation_bytes_per_pixel(net, 3, size=32, stride=8)
    assert bpp == pytest.approx((8 + 8 + 1) * 4)  # three outputs of 8, 8 and 1 float32 channels per pixel
