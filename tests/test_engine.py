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
