"""Trimap generation against hand-built cases and a brute-force morphology written here."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from conftest import invoke, write_gray

from mattecli.errors import BadOptionError
from mattecli.trimap import TrimapSettings, clamp_known, dilate, erode, make_trimap, structuring_element


def _brute_morph(mask: np.ndarray, kernel: np.ndarray, op: str) -> np.ndarray:
    """Erosion / dilation by definition, edges replicated: loops over every pixel and kernel offset."""
    h, w = mask.shape
    r = kernel.shape[0] // 2
    out = np.zeros_like(mask, dtype=bool)
    offsets = [(dy - r, dx - r) for dy in range(kernel.shape[0]) for dx in range(kernel.shape[1]) if kernel[dy, dx]]
    for y in range(h):
        for x in range(w):
            vals = [mask[min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)] for dy, dx in offsets]
            out[y, x] = all(vals) if op == "erode" else any(vals)
    return out


def test_square_kernel_on_rectangle_matches_hand_computed_bands():
    mask = np.zeros((30, 40), np.float32)
    mask[10:20, 12:30] = 1.0
    tri = make_trimap(mask, TrimapSettings(erode=2, dilate=3, shape="square"))
    expected = np.zeros((30, 40), np.uint8)
    expected[7:23, 9:33] = 128  # grown by 3 on every side
    expected[12:18, 14:28] = 255  # shrunk by 2 on every side
    np.testing.assert_array_equal(tri, expected)


@pytest.mark.parametrize("shape", ["ellipse", "cross", "square"])
def test_soft_alpha_against_brute_force(shape):
    rng = np.random.default_rng(3)
    alpha = np.zeros((24, 27), np.float32)
    alpha[5:18, 6:20] = 1.0
    alpha[3:5, 8:15] = rng.uniform(0.1, 0.9, (2, 7))  # soft fringe
    alpha[18, 10] = 0.5
    alpha[0:4, 0:3] = 1.0  # touches the frame: the frame is not an edge
    settings = TrimapSettings(erode=2, dilate=1, iterations=1, shape=shape)
    tri = make_trimap(alpha, settings)
    k = structuring_element(2, shape)
    sure = _brute_morph(alpha >= 1.0, k, "erode")
    possible = _brute_morph(alpha > 0.0, structuring_element(1, shape), "dilate")
    expected = np.where(sure, 255, np.where(possible, 128, 0))
    np.testing.assert_array_equal(tri, expected)
    assert set(np.unique(tri)) <= {0, 128, 255}


def test_iterations_equal_repeated_passes():
    mask = np.zeros((40, 40), np.float32)
    mask[10:30, 10:30] = 1
    twice = make_trimap(mask, TrimapSettings(erode=1, dilate=1, iterations=3, shape="square"))
    once_big = make_trimap(mask, TrimapSettings(erode=3, dilate=3, iterations=1, shape="square"))
    np.testing.assert_array_equal(twice, once_big)  # square kernels compose exactly


def test_threshold_binarises_soft_masks():
    mask = np.linspace(0, 1, 11, dtype=np.float32)[None, :].repeat(3, 0)
    tri = make_trimap(mask, TrimapSettings(erode=0, dilate=0, threshold=0.5))
    np.testing.assert_array_equal(tri[0], [0] * 5 + [255] * 6)
    # without a threshold, the soft ramp is unknown, exact 0 and 1 are known
    tri = make_trimap(mask, TrimapSettings(erode=0, dilate=0))
    np.testing.assert_array_equal(tri[0], [0] + [128] * 9 + [255])


def test_uint8_input_and_width():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:15] = 255
    s = TrimapSettings.from_width(5, shape="square")
    assert (s.erode, s.dilate) == (2, 3)
    tri = make_trimap(mask, s)
    assert (tri == 128).sum() == 16 * 16 - 6 * 6


def test_bad_settings():
    for bad in (
        TrimapSettings(erode=-1),
        TrimapSettings(iterations=0),
        TrimapSettings(threshold=1.5),
        TrimapSettings(shape="hexagon"),
    ):
        with pytest.raises(BadOptionError):
            make_trimap(np.zeros((3, 3), np.float32), bad)


def test_clamp_known():
    alpha = np.full((2, 3), 0.5, np.float32)
    tri = np.array([[0, 128, 255], [255, 0, 128]], np.uint8)
    np.testing.assert_array_equal(clamp_known(alpha, tri), [[0, 0.5, 1], [1, 0, 0.5]])


# ----------------------------------------------------------------------------- bounded work
def _old_morph(mask: np.ndarray, radius: int, iterations: int, shape: str, op: str) -> np.ndarray:
    """The previous implementation: OpenCV's passes with the full kernel, edges replicated."""
    func = cv2.erode if op == "erode" else cv2.dilate
    return func(mask, structuring_element(radius, shape), iterations=iterations, borderType=cv2.BORDER_REPLICATE)


@pytest.mark.parametrize("shape", ["ellipse", "cross", "square"])
@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (2, 11), (13, 17), (24, 31)])
def test_bounded_morphology_equals_repeated_opencv_passes(shape, size):
    """Cropped kernels and capped passes change nothing, even for radii far beyond the frame."""
    rng = np.random.default_rng(sum(size))
    for density in (0.3, 0.9, 0.995):
        mask = (rng.random(size) < density).astype(np.uint8)
        for radius in (1, 2, 3, 7, 40):
            for iterations in (1, 2, 5, 30):
                for op, func in (("erode", erode), ("dilate", dilate)):
                    expected = _old_morph(mask, radius, iterations, shape, op)
                    got = func(mask, radius, iterations, shape)
                    assert got.dtype == np.uint8
                    np.testing.assert_array_equal(got, expected, err_msg=f"{op} r={radius} n={iterations}")


def test_make_trimap_equals_the_previous_implementation():
    rng = np.random.default_rng(5)
    alpha = cv2.GaussianBlur((rng.random((60, 70)) > 0.6).astype(np.float32), (0, 0), 3)
    alpha[alpha > 0.8] = 1.0
    alpha[alpha < 0.05] = 0.0
    for shape in ("ellipse", "cross", "square"):
        for erode_r, dilate_r, n in ((10, 10, 1), (3, 5, 4), (1, 2, 9)):
            tri = make_trimap(alpha, TrimapSettings(erode_r, dilate_r, n, shape=shape))
            sure = _old_morph((alpha >= 1).astype(np.uint8), erode_r, n, shape, "erode")
            possible = _old_morph((alpha > 0).astype(np.uint8), dilate_r, n, shape, "dilate")
            np.testing.assert_array_equal(tri, np.where(sure > 0, 255, np.where(possible > 0, 128, 0)))


@pytest.mark.parametrize("shape", ["ellipse", "cross"])
def test_beyond_the_exact_budget_the_limit_shape_is_used(monkeypatch, shape):
    """Past EXACT_WORK a pixel is kept when no 0 lies within radius x iterations (disk / diamond)."""
    from scipy import ndimage

    from mattecli import trimap

    rng = np.random.default_rng(1)
    mask = (ndimage.uniform_filter(rng.random((70, 90)), 9) > 0.47).astype(np.uint8)
    monkeypatch.setattr(trimap, "EXACT_WORK", 0)
    got = erode(mask, 3, 4, shape)
    metric = "euclidean" if shape == "ellipse" else "taxicab"
    distance = (
        ndimage.distance_transform_cdt(mask, metric) if metric == "taxicab" else ndimage.distance_transform_edt(mask)
    )
    np.testing.assert_array_equal(got, (distance > 12).astype(np.uint8))
    # and it is close to the exact 4-fold element
    exact = _old_morph(mask, 3, 4, shape, "erode")
    assert np.mean(got != exact) < 0.02


def test_huge_radius_and_iterations_finish_at_once(runner, tmp_path):
    """The issue's case: --iterations 100000 --erode 1000 on a 96x80 alpha ran for over 10 minutes."""
    alpha = np.zeros((80, 96), np.float32)
    alpha[20:60, 30:70] = 1.0
    alpha[18:20, 30:70] = 0.5
    src = write_gray(tmp_path / "a.png", alpha)
    start = time.perf_counter()
    result = invoke(runner, ["trimap", src, tmp_path / "t.png", "--iterations", "100000", "--erode", "1000"])
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 20
    tri = cv2.imread(str(tmp_path / "t.png"), cv2.IMREAD_UNCHANGED)
    # nothing is sure foreground (some pixel is not) and everything is possible foreground
    np.testing.assert_array_equal(tri, np.full((80, 96), 128, np.uint8))


@pytest.mark.parametrize("shape", ["ellipse", "cross", "square"])
def test_cropped_element_equals_the_centre_of_opencvs_kernel(shape):
    from mattecli.trimap import cropped_element

    for radius in [*range(1, 60), 99, 100, 101, 255, 1000]:
        full = structuring_element(radius, shape)
        for ry, rx in ((radius, radius), (min(radius, 7), min(radius, 40)), (0, min(radius, 3)), (min(radius, 2), 0)):
            expected = full[radius - ry : radius + ry + 1, radius - rx : radius + rx + 1]
            np.testing.assert_array_equal(cropped_element(radius, shape, ry, rx), expected, err_msg=f"r={radius}")


def test_absurd_radii_and_iterations_cost_nothing(runner, tmp_path):
    """No full kernel is ever built: --erode 10^6 would be a 2-million-pixel square."""
    alpha = np.zeros((80, 96), np.float32)
    alpha[20:60, 30:70] = 1.0
    src = write_gray(tmp_path / "a.png", alpha)
    start = time.perf_counter()
    for shape in ("ellipse", "cross", "square"):
        args = ["trimap", src, tmp_path / f"{shape}.png", "--erode", "1000000", "--dilate", "3"]
        result = invoke(runner, args + ["--iterations", str(10**12), "--shape", shape])
        assert result.exit_code == 0, result.output
        tri = cv2.imread(str(tmp_path / f"{shape}.png"), cv2.IMREAD_UNCHANGED)
        assert not (tri == 255).any() and (tri == 128).all()  # every pixel possible after 10^12 dilations
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (23, 31)])
def test_distances_to_zero_are_the_closed_form(shape):
    """Every pixel's distance to its nearest zero, by brute force over the zeros: the squared
    distance exactly (integers), the distance as float64 sqrt rounded once to float32."""
    from mattecli.trimap import distance_to_zero, squared_distance_to_zero

    rng = np.random.default_rng(sum(shape))
    mask = (rng.random(shape) > 0.1).astype(np.uint8)
    mask.flat[rng.integers(mask.size)] = 0
    zy, zx = np.nonzero(mask == 0)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    brute = ((yy[..., None] - zy) ** 2 + (xx[..., None] - zx) ** 2).min(axis=-1)
    np.testing.assert_array_equal(squared_distance_to_zero(mask), brute)
    np.testing.assert_array_equal(distance_to_zero(mask), np.sqrt(brute.astype(np.float64)).astype(np.float32))


def test_distances_are_the_same_bytes_call_after_call():
    """The maps SIM encodes are the exact distances, identical on every call (OpenCV's precise
    transform, which the official code calls, varied by an ulp from one call to the next)."""
    from mattecli.methods.sim.encode import distance_maps
    from mattecli.trimap import distance_to_zero

    rng = np.random.default_rng(3)
    trimap = np.full((97, 131), 128, np.uint8)
    trimap[rng.random(trimap.shape) < 0.05] = 0
    trimap[:20, :30] = 255
    first = distance_maps(trimap)
    np.testing.assert_array_equal(first[0], distance_to_zero(trimap != 0))
    np.testing.assert_array_equal(first[1], distance_to_zero(trimap != 255))
    for _ in range(5):
        again = distance_maps(trimap)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert distance_maps(np.full((4, 5), 128, np.uint8)) == [None, None]
