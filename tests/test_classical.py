"""Closed-form / KNN matting: known-alpha synthetic scenes, errors, a real photo, the tiled strategy."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_scene

from mattecli import io, methods
from mattecli.errors import BadOptionError, TrimapError, UnknownMethodError
from mattecli.methods.base import EngineOptions, MethodOptions
from mattecli.methods.classical import processor as classical
from mattecli.methods.classical.processor import estimate_alpha
from mattecli.runtime.tiles import blend_boxes, tile_boxes, tile_weight


def _layout(h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The shared tiler's boxes for a classical tiled solve (neighbours overlap by twice the halo)."""
    return tile_boxes(h, w, tile, 2 * overlap)


def test_cf_recovers_known_alpha():
    image, alpha, trimap = synthetic_scene()
    est = estimate_alpha(image, trimap, "cf")
    assert est.dtype == np.float32 and est.shape == alpha.shape
    unknown = trimap == 128
    # the colour-line model holds exactly here: the solution is the true alpha up to solver tolerance
    assert np.abs(est - alpha)[unknown].max() < 0.02
    assert np.abs(est - alpha).mean() < 0.003
    np.testing.assert_array_equal(est[trimap == 255], 1.0)
    np.testing.assert_array_equal(est[trimap == 0], 0.0)


def test_knn_is_close_on_the_easy_scene():
    image, alpha, trimap = synthetic_scene(seed=2)
    est = estimate_alpha(image, trimap, "knn")
    assert np.abs(est - alpha)[trimap == 128].mean() < 0.05


def test_all_known_trimap_returns_the_trimap():
    tri = np.zeros((5, 6), np.uint8)
    tri[:, 3:] = 255
    est = estimate_alpha(np.zeros((5, 6, 3), np.float32), tri, "cf")
    np.testing.assert_array_equal(est, tri / 255)


@pytest.mark.parametrize("method", ["cf", "knn"])
@pytest.mark.parametrize("fill", [0, 255])
def test_one_kind_of_known_pixel_gives_that_value_everywhere(method, fill):
    """Only background (foreground) known: a constant alpha has zero energy, so 0 (1) is the exact minimum."""
    tri = np.full((8, 8), fill, np.uint8)
    tri[3:5, 3:5] = 128
    est = estimate_alpha(np.random.default_rng(0).random((8, 8, 3)).astype(np.float32), tri, method)
    np.testing.assert_array_equal(est, np.full((8, 8), fill / 255, np.float32))


@pytest.mark.parametrize("method", ["cf", "knn"])
@pytest.mark.parametrize("kind", ["background", "foreground", "both"])
def test_no_unknown_pixel_is_its_own_answer_whatever_it_holds(method, kind):
    tri = np.full((4, 5), 255 if kind == "foreground" else 0, np.uint8)
    if kind == "both":
        tri[:, 2:] = 255
    est = estimate_alpha(np.zeros((4, 5, 3), np.float32), tri, method)
    np.testing.assert_array_equal(est, tri / 255)


def test_all_unknown_trimap_is_a_clear_error():
    with pytest.raises(TrimapError, match="no known pixel"):
        estimate_alpha(np.zeros((8, 8, 3), np.float32), np.full((8, 8), 128, np.uint8), "cf")


def _strip_scene(h: int, w: int, seed: int = 0):
    """Two colours mixed by a linear ramp along the longer side, ends known: the true alpha is recoverable."""
    rng = np.random.default_rng(seed)
    fg, bg = rng.uniform(0.6, 0.95, 3), rng.uniform(0.05, 0.35, 3)
    n = max(h, w)
    ramp = np.clip((np.arange(n) - 0.25 * n) / (0.5 * n), 0, 1)
    alpha = (np.tile(ramp, (h, 1)) if w >= h else np.tile(ramp[:, None], (1, w))).astype(np.float32)
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.float32)
    trimap = np.full((h, w), 128, np.uint8)
    trimap[alpha == 0] = 0
    trimap[alpha == 1] = 255
    return image, alpha, trimap


@pytest.mark.parametrize("method", ["cf", "knn"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (1, 3), (2, 2), (3, 3), (1, 40), (40, 1), (2, 40), (40, 2), (3, 5)])
@pytest.mark.parametrize("strategy", ["whole", "tiled"])
def test_tiny_and_thin_images_solve_without_warnings(method, shape, strategy):
    import warnings

    image, alpha, trimap = _strip_scene(*shape)
    if shape == (1, 1):
        trimap[:] = 128  # the one pixel unknown: nothing known
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning would fail the test
        if shape == (1, 1):
            with pytest.raises(TrimapError, match="no known pixel"):
                estimate_alpha(image, trimap, method, strategy=strategy, tile_size=40, tile_overlap=4)
            return
        est = estimate_alpha(image, trimap, method, strategy=strategy, tile_size=40, tile_overlap=4)
    assert est.shape == shape and est.dtype == np.float32 and np.isfinite(est).all()
    np.testing.assert_array_equal(est[trimap == 0], 0.0)
    np.testing.assert_array_equal(est[trimap == 255], 1.0)
    unknown = trimap == 128
    if method == "cf" and unknown.any() and (trimap == 0).any() and (trimap == 255).any():
        # the colour-line model holds exactly on a two-colour strip: cf recovers the true alpha
        assert np.abs(est - alpha)[unknown].max() < 1e-3


@pytest.mark.parametrize("method", ["cf", "knn"])
@pytest.mark.parametrize("strategy", ["whole", "tiled"])
def test_unknown_region_touching_only_background_is_zero(method, strategy):
    """Foreground exists, but far away: cf's reduced system has a zero right-hand side (CG used to fail)."""
    import warnings

    image = np.random.default_rng(0).random((40, 50, 3)).astype(np.float32)
    tri = np.zeros((40, 50), np.uint8)
    tri[5:10, 5:10] = 255
    tri[20:30, 20:30] = 128
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = estimate_alpha(image, tri, method, strategy=strategy, tile_size=48, tile_overlap=8)
    assert np.isfinite(est).all()
    if method == "cf":  # closed-form: the region is coupled to background only
        np.testing.assert_allclose(est[20:30, 20:30], 0.0, atol=1e-6)


def test_size_mismatch():
    with pytest.raises(TrimapError, match="trimap is 4x3 but the image is 5x3"):
        estimate_alpha(np.zeros((3, 5, 3), np.float32), np.zeros((3, 4), np.uint8))


def test_registry():
    assert methods.list_methods()[:4] == ["aim", "vitmatte", "cf", "knn"]
    spec = methods.get("cf")
    assert spec.needs_trimap and not spec.uses_weights
    matter = spec.create(MethodOptions())
    image, alpha, trimap = synthetic_scene()
    assert np.abs(matter.predict(image, trimap).alpha - alpha).mean() < 0.003
    with pytest.raises(TrimapError, match="needs a trimap"):
        matter.predict(image, None)
    with pytest.raises(UnknownMethodError, match="known methods: aim, vitmatte, cf, knn"):
        methods.get("nope")


def test_lemur_close_to_fba_reference(shared_data):
    """pymatting's own regression setting: the lemur photo vs FBA's alpha (a good reference, not GT)."""
    image = io.read_image(shared_data / "lemur" / "lemur.png")
    trimap = io.read_trimap(shared_data / "lemur" / "lemur_trimap.png", shape=image.shape[:2])
    reference = io.read_gray(shared_data / "lemur" / "lemur_alpha_fba.png")
    est = estimate_alpha(image, trimap, "cf")
    unknown = trimap == 128
    assert unknown.sum() > 10_000  # the 102-valued unknown pixels were recognised
    mad = np.abs(est - reference)[unknown].mean()
    assert mad < 0.05, mad


# ----------------------------------------------------------------------------- tiled strategy
def _disk_scene(h: int = 96, w: int = 128, band: int = 5):
    """Smoothly varying foreground/background colours and a soft-edged disk; trimap = alpha with an unknown band."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy, xx = yy / h, xx / w
    fg = np.stack([0.85 - 0.2 * yy, 0.55 + 0.2 * xx, 0.2 + 0.1 * yy], -1)
    bg = np.stack([0.15 + 0.3 * xx, 0.3 + 0.3 * yy, 0.7 - 0.3 * xx], -1)
    dist = np.hypot(yy * h - h / 2, xx * w - w / 2)
    alpha = np.clip((0.3 * min(h, w) - dist) / 6 + 0.5, 0, 1).astype(np.float32)
    image = (alpha[..., None] * fg + (1 - alpha[..., None]) * bg).astype(np.float32)
    soft = (alpha > 0) & (alpha < 1)
    unknown = np.zeros_like(soft)
    for dy in range(-band, band + 1):  # dilate the soft edge by a square band
        for dx in range(-band, band + 1):
            unknown |= np.roll(soft, (dy, dx), axis=(0, 1))
    trimap = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    return image, alpha, trimap


def _count_solves(monkeypatch, method: str = "cf") -> list[tuple[int, int]]:
    """Wrap pymatting's solver; returns the list of the crop shapes it is called with."""
    import pymatting

    name = classical.CLASSICAL_METHODS[method]
    real = getattr(pymatting, name)
    shapes: list[tuple[int, int]] = []

    def spy(image, trimap, **kwargs):
        shapes.append(trimap.shape)
        return real(image, trimap, **kwargs)

    monkeypatch.setattr(pymatting, name, spy)
    return shapes


def test_cf_tiled_agrees_with_whole():
    image, alpha, trimap = _disk_scene()
    whole = estimate_alpha(image, trimap, "cf", strategy="whole")
    tiled = estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=64, tile_overlap=16)  # 2 x 3 tiles
    assert len(_layout(96, 128, 64, 16)) == 6
    assert tiled.dtype == np.float32 and tiled.shape == trimap.shape
    diff = np.abs(tiled - whole)
    # a crop's free border makes it differ from the whole solve; the bounds are those the blend over the
    # inner half of the halo keeps (measured here: max 0.0113, mean 0.0018 over the unknown band)
    assert diff.max() < 0.02, diff.max()
    assert diff[trimap == 128].mean() < 0.003
    assert np.abs(tiled - alpha)[trimap == 128].mean() < 0.01


def test_known_pixels_are_exact():
    image, _, trimap = _disk_scene()
    tiled = estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=48, tile_overlap=8)
    np.testing.assert_array_equal(tiled[trimap == 0], 0.0)
    np.testing.assert_array_equal(tiled[trimap == 255], 1.0)
    assert tiled.min() >= 0.0 and tiled.max() <= 1.0


def test_tiles_without_unknown_pixels_are_not_solved(monkeypatch):
    image, _, _ = _disk_scene(128, 128)
    trimap = np.zeros((128, 128), np.uint8)
    trimap[:, 64:] = 255
    trimap[40:70, 50:80] = 128
    trimap[100:110, 60:66] = 128
    shapes = _count_solves(monkeypatch)
    alpha = estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=48, tile_overlap=8)
    boxes = _layout(128, 128, 48, 8)
    holding = [b for b in boxes if (trimap[b[0] : b[1], b[2] : b[3]] == 128).any()]
    assert 0 < len(shapes) == len(holding) < len(boxes)  # only tiles with unknown pixels are solved
    assert all(s == (b[1] - b[0], b[3] - b[2]) for s, b in zip(shapes, holding, strict=True))  # none grew
    np.testing.assert_array_equal(alpha[trimap != 128], trimap[trimap != 128] / 255)


def test_crop_without_background_grows(monkeypatch):
    # a horizontal ramp: background only in the 6 leftmost columns, foreground in the 6 rightmost;
    # the middle cores' crops see neither until they grow
    h, w = 24, 160
    fg, bg = np.array([0.9, 0.7, 0.2], np.float32), np.array([0.1, 0.2, 0.6], np.float32)
    alpha = np.clip((np.arange(w, dtype=np.float32) - 6) / (w - 13), 0, 1)[None, :].repeat(h, 0)
    image = alpha[..., None] * fg + (1 - alpha[..., None]) * bg
    trimap = np.full((h, w), 128, np.uint8)
    trimap[:, :6] = 0
    trimap[:, -6:] = 255
    shapes = _count_solves(monkeypatch)
    est = estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=40, tile_overlap=4)
    boxes = _layout(h, w, 40, 4)
    assert len(shapes) == len(boxes) and max(s[1] for s in shapes) > boxes[0][3] - boxes[0][2]  # some crops grew
    # the colour-line model holds exactly, so the grown crops recover the true ramp, not all ones or zeros
    assert np.abs(est - alpha).max() < 0.02
    assert 0.3 < est[:, 70:90].mean() < 0.7


def test_the_shared_blender_covers_every_pixel_and_keeps_a_constant():
    """Classical tiles blend with the shared tiler's weights: every pixel has a positive total weight
    and the blend is normalised, so tiles that all answer a constant give exactly that constant."""
    for h, w, tile, overlap in [(100, 97, 40, 8), (10, 32, 40, 8), (513, 300, 512, 32), (64, 200, 48, 12)]:
        boxes = _layout(h, w, tile, overlap)
        total = np.zeros((h, w))
        for box in boxes:
            y0, y1, x0, x1 = box
            total[y0:y1, x0:x1] += tile_weight(box, h, w, overlap // 2, overlap).numpy()
        assert total.min() > 0
        out = blend_boxes(h, w, boxes, lambda b: np.full((b[1] - b[0], b[3] - b[2]), 0.3), halo=overlap // 2, blend=overlap)
        np.testing.assert_allclose(out, 0.3, atol=1e-6)
    # a raised cosine after the discarded halo, on the side shared with a neighbour only
    weight = tile_weight((0, 40, 0, 40), 40, 100, 4, 8).numpy()[0]
    assert (weight[:28] == 1).all() and (weight[-4:] == 0).all()
    np.testing.assert_allclose(weight[-12:-4], 0.5 - 0.5 * np.cos(np.pi * (np.arange(8)[::-1] + 0.5) / 8), atol=1e-6)


def test_auto_strategy_follows_max_memory(monkeypatch):
    from mattecli.errors import BadOptionError
    from mattecli.methods.classical.spec import CF
    from mattecli.runtime.memory import PLAN_MARGIN

    image, _, trimap = _disk_scene(64, 64)
    fp = CF.footprint
    base = fp.fixed + fp.image * trimap.size  # held beside any solve of this image

    def budget(room: float) -> int:  # a --max-memory leaving ``room`` bytes to a solve
        return int(base + room / PLAN_MARGIN) + 1

    whole = classical.whole_solve_bytes("cf", trimap.size, int(((trimap > 0) & (trimap < 255)).sum()))
    assert classical.choose_strategy("cf", trimap, max_memory=budget(whole - 1)) == "tiled"
    assert classical.choose_strategy("cf", trimap, max_memory=budget(whole)) == "whole"
    assert classical.choose_strategy("cf", trimap, max_memory=2**40) == "whole"
    assert classical.whole_solve_bytes("knn", 10**6, 0) > classical.whole_solve_bytes("cf", 10**6, 0)
    shapes = _count_solves(monkeypatch)
    estimate_alpha(image, trimap, "cf", max_memory=2**40)
    estimate_alpha(image, trimap, "cf", strategy="auto", max_memory=2**40)
    assert shapes == [(64, 64)] * 2
    shapes.clear()
    tile40 = classical.whole_solve_bytes("cf", 40 * 40, 40 * 40)
    estimate_alpha(image, trimap, "cf", max_memory=budget(tile40), tile_size=40, tile_overlap=4)
    assert len(shapes) == len(_layout(64, 64, 40, 4)) == 4 and all(s[0] < 64 or s[1] < 64 for s in shapes)
    shapes.clear()
    # a budget that holds only the smallest tile: the default tile shrinks to it
    tile64 = classical.whole_solve_bytes("cf", 64 * 64, 64 * 64)
    estimate_alpha(image, trimap, "cf", max_memory=budget(tile64), tile_overlap=4)
    assert len(shapes) == 1  # a 64 px image is a single minimum-size tile
    # a budget below even that is a usage error naming the least that works (never a silent run)
    shapes.clear()
    with pytest.raises(BadOptionError, match=r"--max-memory 1 cannot hold .* need about \d") as err:
        estimate_alpha(image, trimap, "cf", max_memory=1, tile_overlap=4)
    assert "give --max-memory" in err.value.hint and shapes == []
    assert classical._tile_size_for("cf", 1280, 1) == classical.MIN_TILE_SIZE
    assert classical._tile_size_for("cf", 1280, 1, overlap=128) == 2 * 128 + classical.MIN_CORE
    assert classical._tile_size_for("cf", 1280, 6 * 2**30) == 1280  # a 1280^2 tile, all unknown: ~5 GB
    assert classical._tile_size_for("knn", 1280, 2**30) == 320  # 640^2 px: 1.5 GB; 320^2 px: 0.38 GB
    assert classical.DEFAULT_TILE_SIZE == {"cf": 1024 + 256, "knn": 512 + 256}  # a core plus its halo


def test_knn_tiled_agrees_loosely():
    image, alpha, trimap = _disk_scene()
    whole = estimate_alpha(image, trimap, "knn", strategy="whole")
    tiled = estimate_alpha(image, trimap, "knn", strategy="tiled", tile_size=80, tile_overlap=16)  # 2 x 2 tiles
    assert len(_layout(96, 128, 80, 16)) == 4
    unknown = trimap == 128
    # KNN's neighbours are non-local and a crop offers fewer of them: measured max 0.048, mean 0.009 over
    # the unknown band; both are ~0.065 from the truth on average
    diff = np.abs(tiled - whole)
    assert diff.max() < 0.1 and diff[unknown].mean() < 0.02
    assert np.abs(tiled - alpha)[unknown].mean() < 0.08
    np.testing.assert_array_equal(tiled[~unknown], trimap[~unknown] / 255)


def test_bad_strategy_and_sizes():
    with pytest.raises(BadOptionError, match="--strategy of method cf must be one of auto, whole, tiled, not 'x'"):
        methods.get("cf").create(MethodOptions(engine=EngineOptions(strategy="x")))
    with pytest.raises(BadOptionError, match="--strategy of method knn must be one of auto, whole, tiled, not 'resize'"):
        methods.get("knn").create(MethodOptions(engine=EngineOptions(strategy="resize")))
    with pytest.raises(BadOptionError, match="--tile-size must be >= 16"):
        methods.get("cf").create(MethodOptions(engine=EngineOptions(tile_size=4)))
    # tiles overlap by twice the halo: a tile that leaves no core between the halos is refused up front
    with pytest.raises(BadOptionError, match="--tile-size 128 is too small for method cf's 128 px tile overlap"):
        methods.get("cf").resolve(MethodOptions(engine=EngineOptions(tile_size=128)))
    assert methods.get("cf").resolve(MethodOptions(engine=EngineOptions(tile_size=128, tile_overlap=48))).halo == 48
    with pytest.raises(BadOptionError, match="tile size 20 is too small for a 4 px tile overlap: give at least 40"):
        estimate_alpha(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), tile_size=20, tile_overlap=4)
    with pytest.raises(BadOptionError, match="strategy must be one of"):
        estimate_alpha(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8), strategy="x")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (MethodOptions(device="cuda"), "method cf runs on the CPU only; --device cuda does not apply"),
        (MethodOptions(device="bogus"), "unknown device 'bogus'"),
        (MethodOptions(precision="bf16"), "method cf computes in fp32 only; --precision bf16 does not apply"),
        (MethodOptions(precision="fp8"), "--precision must be one of fp32, fp16, bf16, not 'fp8'"),
        (MethodOptions(engine=EngineOptions(compile=True)), "no network to compile; drop --compile"),
        (MethodOptions(engine=EngineOptions(batch_size=3)), "--batch-size does not apply"),
        (MethodOptions(engine=EngineOptions(scales="1,2")), "no multi-scale fusion; drop --scales"),
        (MethodOptions(variant="sim-simd"), "uses no weights; drop --variant"),
    ],
)
def test_options_a_classical_method_cannot_honour_are_refused(options, message):
    """cf and knn are pymatting on the CPU in float64: a device, precision or compile request is refused,
    never silently ignored (the device is checked for being a device first)."""
    from mattecli.errors import DeviceError

    for name in ("cf", "knn"):
        with pytest.raises((BadOptionError, DeviceError), match=message.replace("cf", name)):
            methods.get(name).resolve(options)


def test_matter_carries_the_options(monkeypatch):
    engine = EngineOptions(strategy="tiled", tile_size=48, tile_overlap=8, max_memory=2**30)
    matter = methods.get("cf").create(MethodOptions(engine=engine))
    p = matter.processor
    assert (p.executor.strategy, p.tile_size, p.tile_overlap) == ("tiled", 48, 8)
    assert p.executor.memory.budget.bytes == 2**30 and p.executor.memory.budget.capped
    assert methods.get("knn").create(MethodOptions()).processor.executor.strategy == "auto"
    knn = methods.get("knn").create(MethodOptions(engine=EngineOptions(strategy="auto")))
    assert knn.processor.executor.strategy == "auto" and knn.processor.executor.memory.budget.source != "--max-memory"
    spec = methods.get("cf")
    assert spec.stride == 1 and spec.margin == classical.DEFAULT_TILE_OVERLAP
    image, alpha, trimap = _disk_scene()
    shapes = _count_solves(monkeypatch)
    result = matter.predict(image, trimap)
    assert len(shapes) > 1 and np.abs(result.alpha - alpha)[trimap == 128].mean() < 0.01
    assert result.plan["strategy"] == "tiled" and result.plan["tile"] == [48, 48] and result.plan["tiles"] == len(shapes)


def test_crop_grows_until_foreground_touches_its_unknown_pixels(monkeypatch):
    # the crop of the core (0, 0) holds foreground, but not next to its unknown patch: closed-form would
    # get a zero right-hand side there (pymatting's CG then fails); the crop grows to reach the band
    image, _, _ = _disk_scene(64, 96)
    trimap = np.zeros((64, 96), np.uint8)
    trimap[:, 48:] = 255
    trimap[:, 44:52] = 128  # the band between background and foreground
    trimap[10:14, 10:14] = 128  # an unknown patch in the background
    trimap[0:4, 28:32] = 255  # foreground inside the patch's crop, out of its reach
    shapes = _count_solves(monkeypatch)
    est = estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=40, tile_overlap=4)
    box = _layout(64, 96, 40, 4)[0]
    assert max(s[1] for s in shapes) > box[3] - box[2]
    assert np.abs(est[10:14, 10:14]).max() < 0.05  # background colour: alpha ~ 0


def test_dilate_matches_scipy():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    for shape, r in [((30, 40), 2), ((3, 50), 2), ((17, 9), 1), ((1, 1), 2)]:
        mask = rng.random(shape) < 0.02
        expected = ndimage.binary_dilation(mask, structure=np.ones((2 * r + 1, 2 * r + 1), bool))
        np.testing.assert_array_equal(classical._dilate(mask, r), expected)


def test_crop_grows_towards_the_nearest_anchor(monkeypatch):
    # core (0, 0) has an unknown patch in the background; the only foreground is a block at the bottom
    # left, so its crop stretches downwards only (doubling the halo instead would take the whole image)
    image, _, _ = _disk_scene(160, 160)
    trimap = np.zeros((160, 160), np.uint8)
    trimap[112:, :48] = 128
    trimap[120:, :40] = 255
    trimap[10:14, 10:14] = 128
    shapes = _count_solves(monkeypatch)
    est = estimate_alpha(image, trimap, "cf", strategy="tiled", tile_size=40, tile_overlap=4)
    # the first tile is solved first: rows down to the foreground's anchor block (112-128) and 2 px more,
    # columns as without growth (the tile's own width)
    first = _layout(160, 160, 40, 4)[0]
    assert first[:3] == (0, first[1], 0) and shapes[0] == (130, first[3])
    assert classical._crop_box(first, 2, trimap, trimap == 128, []) == (0, 130, 0, first[3])
    assert np.abs(est[10:14, 10:14]).max() < 0.05
