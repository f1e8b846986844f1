"""Tiling: layout, blending weights, exactness against whole-image passes, global context, OOM fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mattecli.errors import DeviceError
from mattecli.runtime import context, tiles


@pytest.mark.parametrize(
    "length,tile,overlap,stride", [(100, 32, 8, 1), (97, 40, 10, 1), (40, 40, 5, 1), (30, 64, 16, 1), (512, 128, 72, 8)]
)
def test_tile_starts_cover_with_overlap_on_the_stride_grid(length, tile, overlap, stride):
    starts = tiles.tile_starts(length, tile, overlap, stride)
    t = min(tile, length)
    covered = np.zeros(length, int)
    for s in starts:
        assert 0 <= s and s + t <= length and s % stride == 0
        covered[s : s + t] += 1
    assert covered.min() >= 1
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        assert a + t - b >= min(overlap, t)  # neighbours share at least the overlap


@pytest.mark.parametrize(
    "h,w,tile,halo,blend", [(67, 93, 32, 4, 8), (100, 64, 48, 8, 16), (20, 30, 64, 8, 8), (129, 257, 64, 16, 0)]
)
def test_weights_sum_to_one_and_identity_is_exact(h, w, tile, halo, blend):
    x = torch.rand(1, 3, h, w)
    out = tiles.tiled_apply(lambda t: t, x, tile=tile, halo=halo, blend=blend, out_channels=3, batch_size=3)
    torch.testing.assert_close(out, x)
    # the normalised weights of all tiles sum to exactly one everywhere
    ones = tiles.tiled_apply(lambda t: torch.ones(t.shape[0], 1, *t.shape[2:]), x, tile=tile, halo=halo, blend=blend)
    torch.testing.assert_close(ones, torch.ones(1, 1, h, w))


def test_raw_weight_sums_are_positive_and_halos_are_discarded():
    h, w, tile, halo, blend = 90, 150, 48, 6, 10
    total = torch.zeros(h, w)
    for box in tiles.tile_boxes(h, w, tile, 2 * halo + blend):
        y0, y1, x0, x1 = box
        win = tiles.tile_weight(box, h, w, halo, blend)
        total[y0:y1, x0:x1] += win
        if x0 > 0:  # an inner side: its halo has weight 0
            assert float(win[:, :halo].abs().max()) == 0.0
    assert float(total.min()) > 0
    border = tiles.axis_weight(40, False, True, halo, blend)  # left: the image border, right: another tile
    assert float(border[0]) == 1.0 and float(border[-halo:].max()) == 0.0 and 0 < float(border[-halo - 1]) < 1


def test_blend_window_is_smooth_and_positive():
    win = tiles.blend_window(16, 16, 4)
    assert float(win.min()) > 0 and float(win.max()) == 1.0
    assert torch.equal(win, win.flip(0)) and torch.equal(win, win.T)


def test_skipped_tiles_stay_zero():
    x = torch.ones(1, 1, 64, 64)
    out = tiles.tiled_apply(lambda t: t * 2, x, tile=32, blend=0, skip=lambda y0, y1, x0, x1: x0 >= 32)
    assert float(out[..., :32].min()) == 2.0 and float(out[..., 32:].max()) == 0.0


def test_callable_source_builds_tiles_on_demand():
    x = torch.rand(1, 2, 70, 90)
    seen = []

    def crop(y0, y1, x0, x1):
        seen.append((y0, y1, x0, x1))
        return x[:, :, y0:y1, x0:x1]

    out = tiles.tiled_apply(lambda t: t, crop, size=(70, 90), tile=32, halo=2, blend=4, out_channels=2)
    torch.testing.assert_close(out, x)
    sizes = {(y1 - y0, x1 - x0) for y0, y1, x0, x1 in seen}
    assert len(sizes) == 1 and max(next(iter(sizes))) <= 32  # one batchable size, never above the tile


@pytest.mark.parametrize(
    "length,tile,overlap,stride", [(1155, 1024, 160, 32), (1732, 1024, 160, 32), (5000, 512, 64, 16)]
)
def test_balanced_tiles_cover_with_the_fewest_tiles_and_least_waste(length, tile, overlap, stride):
    t = tiles.balanced_tile(length, tile, overlap, stride)
    starts = tiles.tile_starts(length, t, overlap, stride)
    fewest = len(tiles.tile_starts(length, tile, overlap, stride))
    assert t <= tile and t % stride == 0 and len(starts) == fewest
    assert starts[-1] + t == length and all(b - a <= t - overlap for a, b in zip(starts, starts[1:], strict=False))
    assert len(starts) * t - length < len(starts) * (overlap + stride)  # waste is the overlaps, not a stray tile
    assert tiles.balanced_tile(1155, 1024, 160, 32) == 672  # two 672 px tiles, not two 1024 px ones


@pytest.mark.parametrize(
    "h,w,area,overlap,stride",
    [
        (1152, 1728, 1 << 20, 160, 32),
        (2112, 3744, 1 << 20, 192, 8),
        (4320, 7680, 1 << 20, 160, 32),
        (144, 176, 10000, 56, 16),
    ],
)
def test_area_bounded_tiles_cover_with_fewer_pixels_than_square_ones(h, w, area, overlap, stride):
    boxes = tiles.tile_boxes(h, w, 0, overlap, stride, area=area)
    shapes = {(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes}
    assert len(shapes) == 1  # one batchable size
    th, tw = shapes.pop()
    assert th * tw <= area and min(th, tw) >= overlap + stride
    assert (th % stride == 0 or th == h) and (tw % stride == 0 or tw == w)  # the stride grid
    covered = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in boxes:
        assert 0 <= y0 and y1 <= h and 0 <= x0 and x1 <= w and y0 % stride == 0 and x0 % stride == 0
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    side = int(area**0.5)
    square = tiles.tile_boxes(h, w, side, overlap, stride)
    run_square = len(square) * (square[0][1] - square[0][0]) * (square[0][3] - square[0][2])
    assert len(boxes) * th * tw <= run_square


def test_area_bounded_tiles_of_a_2mp_image_are_strips():
    # a 1024^2-pixel budget: three 1152 x 704 strips (1.22x the pixels) instead of four 672 x 960 tiles (1.30x)
    assert tiles.area_tile_shape(1152, 1728, 1 << 20, 160, 32) == (1152, 704)
    assert len(tiles.tile_boxes(1152, 1728, 0, 160, 32, area=1 << 20)) == 3


def test_a_thin_band_gets_smaller_tiles_that_run_fewer_pixels():
    h, w, overlap, stride = 2160, 3840, 160, 32
    yy, xx = np.mgrid[:h, :w]
    unknown = np.abs(np.hypot(yy - 500, xx - 700) - 250) < 4  # a small subject's edge in an 8 MP frame

    def skip(y0, y1, x0, x1):
        return not unknown[y0:y1, x0:x1].any()

    needed = tiles.needed_cells(h, w, skip, 64)
    assert needed.shape == (34, 60) and needed.any() and not needed.all()

    def run_pixels(boxes):
        kept = [b for b in boxes if not skip(*b)]
        assert all(unknown[b[0] : b[1], b[2] : b[3]].sum() == 0 for b in boxes if b not in kept)
        return sum((b[1] - b[0]) * (b[3] - b[2]) for b in kept), kept

    aware, kept = run_pixels(tiles.tile_boxes(h, w, 0, overlap, stride, area=1 << 22, needed=needed, cell=64))
    blind, _ = run_pixels(tiles.tile_boxes(h, w, 0, overlap, stride, area=1 << 22))
    square, _ = run_pixels(tiles.tile_boxes(h, w, 1024, overlap, stride))
    assert aware < 0.5 * min(blind, square)
    covered = np.zeros((h, w), bool)
    for y0, y1, x0, x1 in kept:
        covered[y0:y1, x0:x1] = True
    assert covered[unknown].all()  # every unknown pixel is still inside a tile that runs


def test_area_planned_tiles_with_skipping_give_the_same_stitched_output():
    x = torch.rand(1, 2, 200, 296)
    mask = torch.zeros(200, 296, dtype=torch.bool)
    mask[40:60, 30:270] = True

    def skip(y0, y1, x0, x1):
        return not bool(mask[y0:y1, x0:x1].any())

    out = tiles.tiled_apply(
        lambda t: t, x, tile=96, halo=8, blend=8, stride=8, out_channels=2, skip=skip, by_area=True
    )
    torch.testing.assert_close(out[:, :, mask], x[:, :, mask])


class _Local(nn.Module):
    """A strided encoder-decoder with a finite receptive field (radius < 40 px at the input)."""

    stride = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.down = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1)
        )
        self.mid = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.gate = nn.Conv2d(8, 8, 1)
        self.head = nn.Conv2d(8, 1, 3, padding=1)
        with torch.no_grad():  # strong enough to see
            self.gate.weight.mul_(20)
            self.head.weight.mul_(20)

    def forward(self, x):
        f = self.mid(self.down(x))
        f = f * torch.sigmoid(self.gate(self.pool(f)))  # global context (squeeze-and-excitation)
        return torch.sigmoid(self.head(F.interpolate(f, scale_factor=8, mode="bilinear", align_corners=False)))


def test_halo_covering_the_receptive_field_and_replayed_context_give_the_whole_image_answer():
    net = _Local().eval()
    x = torch.rand(1, 3, 200, 264)  # multiples of the stride
    x[:, :, :, :100] += 2  # tiles on the left see other statistics than the whole image
    with torch.inference_mode():
        whole = net(x)
        ctx = context.GlobalContext(net)
        with ctx.record():
            net(x)
        with ctx.replay():
            tiled = tiles.tiled_apply(net, x, tile=128, halo=48, blend=8, stride=8, batch_size=2)
        no_context = tiles.tiled_apply(net, x, tile=128, halo=48, blend=8, stride=8, batch_size=2)
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    assert float((no_context - whole).abs().max()) > 1e-4  # tile-local pooling differs (100x the tolerance)
    assert len(ctx.modules) == 1 and ctx.recorded


def test_replayed_context_works_in_a_compiled_network():
    """torch.compile does not see hooks added after compiling; the global pools must replay anyway."""
    pytest.importorskip("torch._dynamo")
    torch.manual_seed(0)
    net = _Local().eval()
    ctx = context.GlobalContext(net)  # built before compiling, as the methods do
    compiled = torch.compile(net)
    x = torch.rand(1, 3, 96, 128)
    x[:, :, :, :64] += 2  # the tile (the right half) has other statistics than the whole image
    tile = x[:, :, :, 64:]
    try:
        with torch.inference_mode():
            local = compiled(tile)  # compiled once without any context
            with ctx.record():
                whole = compiled(x)
            with ctx.replay():
                replayed = compiled(tile)
    except Exception as err:  # no C++ compiler for inductor, etc.: not what this test is about
        if "dynamo" in type(err).__module__ or "inductor" in type(err).__module__:
            pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")
        raise
    with torch.inference_mode():
        eager_ctx = context.GlobalContext(net)
        with eager_ctx.record():
            torch.testing.assert_close(net(x), whole, atol=1e-5, rtol=0)
        with eager_ctx.replay():
            want = net(tile)
    torch.testing.assert_close(replayed, want, atol=1e-5, rtol=0)
    assert float((local - want).abs().max()) > 1e-4  # replay changed the answer (100x the tolerance)


def test_misaligned_tiles_would_differ():
    """Tile origins off the stride grid see another down-sampling grid: why origins are aligned."""
    net = _Local().eval()
    x = torch.rand(1, 3, 96, 96)
    with torch.inference_mode():
        ctx = context.GlobalContext(net)
        with ctx.record():
            whole = net(x)
        with ctx.replay():
            shifted = net(x[:, :, 4:92, 4:92])  # an origin at 4, not a multiple of 8
    assert float((shifted[:, :, 40:48, 40:48] - whole[:, :, 44:52, 44:52]).abs().max()) > 1e-4


def test_resize_crop_equals_interpolating_then_cropping():
    small = torch.rand(2, 3, 13, 17)
    full = F.interpolate(small, size=(100, 130), mode="bilinear", align_corners=False)
    for box in [(0, 100, 0, 130), (7, 40, 90, 130), (99, 100, 0, 1), (33, 65, 12, 77)]:
        y0, y1, x0, x1 = box
        torch.testing.assert_close(tiles.resize_crop(small, (100, 130), box), full[:, :, y0:y1, x0:x1])


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
        out = tiles.tiled_apply_safe(_oom_above(1, 32, calls), x, tile=128, halo=4, blend=8, stride=8, batch_size=4)
    torch.testing.assert_close(out, x[:, :1] * 2)
    batches = [c[0] for c in calls]
    sides = sorted({c[-1] for c in calls})
    assert 4 in batches and 2 in batches and 1 in batches  # batch halved first
    assert sides[0] <= 32  # then the tile


def test_oom_retries_the_failing_batch_without_redoing_finished_tiles():
    x = torch.rand(1, 1, 64, 256)
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        if len(calls) == 2:  # the second batch fails once
            raise torch.OutOfMemoryError("CUDA out of memory")
        return t

    with pytest.warns(RuntimeWarning, match="batch size 1"):
        out = tiles.tiled_apply_safe(fn, x, tile=64, blend=0, batch_size=2)
    torch.testing.assert_close(out, x)
    assert calls == [2, 2, 1, 1]  # tiles 1-2, (3-4 fail), 3, 4


def test_oom_with_nothing_left_to_shrink_is_a_device_error():
    x = torch.rand(1, 3, 64, 64)
    with pytest.warns(RuntimeWarning), pytest.raises(DeviceError, match="out of memory even with one"):
        tiles.tiled_apply_safe(_oom_above(0, 0, []), x, tile=64, halo=8, blend=8, stride=32, batch_size=2)


def test_non_oom_errors_are_not_swallowed():
    def broken(x):
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        tiles.tiled_apply_safe(broken, torch.rand(1, 1, 8, 8), tile=8, blend=0)


