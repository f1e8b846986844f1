"""Metrics against independent, deliberately naive implementations of the two evaluation codes.

DIM convention (``mode="unknown"``): references written from the MATLAB code's steps as
``mattecli.benchmark.metrics`` documents them: pixel loops, an explicit double-loop convolution with
replicated borders, and a BFS flood fill that numbers components in MATLAB's column-major order.

AIM convention (``mode="whole"``): references that follow the AIM authors' ``core/evaluate.py``
(github.com/JizhiziLi/AIM @ 48e3dc8) step by step, with the same numpy / scipy calls and dtypes,
the threshold list ``np.arange(0, 1.1, 0.1)``, a float32 ``l_map``, and a BFS labeller that numbers
components as scikit-image's ``label`` does (by first pixel in row-major order). The inputs are
read as its ``core/test.py`` reads them (``np.array(Image.open(png)) / 255.``).

No reference shares code with ``mattecli.benchmark.metrics``.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest

from mattecli.benchmark import metrics
from mattecli.errors import InputError, TrimapError, UsageError


# ----------------------------------------------------------------------------- references
def ref_float(a):
    a = np.asarray(a)
    if a.dtype == np.uint8:
        return [[int(v) / 255.0 for v in row] for row in a]
    if a.dtype == np.uint16:
        return [[int(v) / 65535.0 for v in row] for row in a]
    return [[float(v) for v in row] for row in a]


def ref_sad_mse_mad(pred, gt, trimap=None):
    p, g = ref_float(pred), ref_float(gt)
    h, w = len(p), len(p[0])
    total_abs = 0.0
    total_sq = 0.0
    n = 0
    for y in range(h):
        for x in range(w):
            if trimap is not None and int(trimap[y][x]) != 128:
                continue
            d = p[y][x] - g[y][x]
            total_abs += abs(d)
            total_sq += d * d
            n += 1
    return total_abs / 1000.0, (total_sq / n if n else 0.0), (total_abs / n if n else 0.0)


def ref_kernel():
    sigma, eps = 1.4, 1e-2
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1

    def gauss(x):
        return math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))

    def dgauss(x):
        return -x * gauss(x) / (sigma * sigma)

    hx = [[gauss(i - half) * dgauss(j - half) for j in range(size)] for i in range(size)]
    norm = math.sqrt(sum(v * v for row in hx for v in row))
    return [[v / norm for v in row] for row in hx], half


def ref_conv_replicate(img, kernel, half):
    """imfilter(img, kernel, 'replicate', 'conv'): a true convolution, one pixel at a time."""
    h, w = len(img), len(img[0])
    out = [[0.0] * w for _ in range(h)]
    for y in range(h):
        for x in range(w):
            acc = 0.0
            for i in range(-half, half + 1):
                for j in range(-half, half + 1):
                    yy = min(max(y - i, 0), h - 1)
                    xx = min(max(x - j, 0), w - 1)
                    acc += img[yy][xx] * kernel[i + half][j + half]
            out[y][x] = acc
    return out


def ref_mat2gray(img):
    lo = min(min(r) for r in img)
    hi = max(max(r) for r in img)
    if hi == lo:
        return [[0.0] * len(r) for r in img]
    return [[(v - lo) / (hi - lo) for v in r] for r in img]


def ref_grad(pred, gt, trimap, norm="minmax"):
    p, g = ref_float(pred), ref_float(gt)
    if norm == "minmax":
        p, g = ref_mat2gray(p), ref_mat2gray(g)
    hx, half = ref_kernel()
    hy = [list(col) for col in zip(*hx, strict=True)]

    def amp(img):
        gx = ref_conv_replicate(img, hx, half)
        gy = ref_conv_replicate(img, hy, half)
        return [[math.sqrt(a * a + b * b) for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(gx, gy, strict=True)]

    ap, ag = amp(p), amp(g)
    total = 0.0
    for y in range(len(p)):
        for x in range(len(p[0])):
            if trimap is None or int(trimap[y][x]) == 128:
                total += (ap[y][x] - ag[y][x]) ** 2
    return total / 1000.0


def ref_components_column_major(mask):
    """4-connected components by BFS, numbered in MATLAB's column-major scan order."""
    h, w = len(mask), len(mask[0])
    label = [[0] * w for _ in range(h)]
    comps = []
    for x in range(w):
        for y in range(h):
            if mask[y][x] and not label[y][x]:
                lab = len(comps) + 1
                pixels = []
                queue = deque([(y, x)])
                label[y][x] = lab
                while queue:
                    cy, cx = queue.popleft()
                    pixels.append((cy, cx))
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny][nx] and not label[ny][nx]:
                            label[ny][nx] = lab
                            queue.append((ny, nx))
                comps.append(set(pixels))
    return comps


def ref_conn(pred, gt, trimap, *, empty="matlab", row_major_ties=False):
    p, g = ref_float(pred), ref_float(gt)
    h, w = len(p), len(p[0])
    thresholds = [k / 10 for k in range(11)]
    lmap = [[-1.0] * w for _ in range(h)]
    for i in range(1, 11):
        t = thresholds[i]
        both = [[p[y][x] >= t and g[y][x] >= t for x in range(w)] for y in range(h)]
        comps = ref_components_column_major(both)
        if not comps:
            if empty == "skip":
                continue
            omega = set()
        else:
            if row_major_ties:  # what a row-major labeller would pick: for contrast only
                comps = sorted(comps, key=lambda c: min(c))
            omega = comps[0]
            for c in comps[1:]:
                if len(c) > len(omega):  # strictly larger: the first found wins a tie
                    omega = c
        for y in range(h):
            for x in range(w):
                if lmap[y][x] == -1 and (y, x) not in omega:
                    lmap[y][x] = thresholds[i - 1]
    total = 0.0
    for y in range(h):
        for x in range(w):
            level = 1.0 if lmap[y][x] == -1 else lmap[y][x]
            dp = p[y][x] - level
            dg = g[y][x] - level
            phi_p = 1 - dp * (1 if dp >= 0.15 else 0)
            phi_g = 1 - dg * (1 if dg >= 0.15 else 0)
            if trimap is None or int(trimap[y][x]) == 128:
                total += abs(phi_p - phi_g)
    return total / 1000.0


# ----------------------------------------------------------------------------- AIM references
# Each follows the step of core/evaluate.py (AIM @ 48e3dc8) of the same name, with the same calls.
def aim_read(u8, tmp_path, name):
    """An 8-bit matte as core/test.py reads it: a PNG file through Pillow, divided by 255."""
    from PIL import Image

    path = tmp_path / f"{name}.png"
    Image.fromarray(u8).save(path)
    return np.array(Image.open(path)) / 255.0


def aim_calculate_sad_mse_mad_whole_img(predict, alpha):
    pixel = predict.shape[0] * predict.shape[1]
    sad_diff = np.sum(np.abs(predict - alpha)) / 1000
    mse_diff = np.sum((predict - alpha) ** 2) / pixel
    mad_diff = np.sum(np.abs(predict - alpha)) / pixel
    return sad_diff, mse_diff, mad_diff


def aim_calculate_sad_trimap(predict_old, alpha, trimap):
    """calculate_sad_mse_mad's SAD (the logged "SAD TRIMAP")."""
    predict = np.copy(predict_old)
    predict[trimap == 255] = 1.0
    predict[trimap == 0] = 0.0
    return np.sum(np.abs(predict - alpha)) / 1000


def aim_calculate_sad_fgbg(predict, alpha, trimap):
    sad_diff = np.abs(predict - alpha)
    weight_fg = np.zeros(predict.shape)
    weight_bg = np.zeros(predict.shape)
    weight_fg[trimap == 255] = 1.0
    weight_bg[trimap == 0] = 1.0
    return np.sum(sad_diff * weight_fg) / 1000, np.sum(sad_diff * weight_bg) / 1000


def aim_compute_gradient_whole_image(pd, gt):
    from scipy.ndimage import gaussian_filter

    pd_x = gaussian_filter(pd, sigma=1.4, order=[1, 0], output=np.float32)
    pd_y = gaussian_filter(pd, sigma=1.4, order=[0, 1], output=np.float32)
    gt_x = gaussian_filter(gt, sigma=1.4, order=[1, 0], output=np.float32)
    gt_y = gaussian_filter(gt, sigma=1.4, order=[0, 1], output=np.float32)
    pd_mag = np.sqrt(pd_x**2 + pd_y**2)
    gt_mag = np.sqrt(gt_x**2 + gt_y**2)
    error_map = np.square(pd_mag - gt_mag)
    # np.sum(error_map) / 10: under the authors' numpy 1.19 a float32 scalar divided by a Python
    # int is a float64 division (numpy 2 would keep float32), so the float64 is spelled out here.
    return np.float64(np.sum(error_map)) / 10


def ref_components_row_major(mask):
    """4-connected components by BFS, numbered by first pixel in row-major order (skimage's label)."""
    h, w = len(mask), len(mask[0])
    label = [[0] * w for _ in range(h)]
    comps = []
    for y in range(h):
        for x in range(w):
            if mask[y][x] and not label[y][x]:
                lab = len(comps) + 1
                pixels = []
                queue = deque([(y, x)])
                label[y][x] = lab
                while queue:
                    cy, cx = queue.popleft()
                    pixels.append((cy, cx))
                    for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                        if 0 <= ny < h and 0 <= nx < w and mask[ny][nx] and not label[ny][nx]:
                            label[ny][nx] = lab
                            queue.append((ny, nx))
                comps.append(pixels)
    return comps


def aim_compute_connectivity_loss_whole_image(pd, gt, step=0.1, *, column_major_ties=False):
    h, w = pd.shape
    thresh_steps = np.arange(0, 1.1, step)
    l_map = -1 * np.ones((h, w), dtype=np.float32)
    for i in range(1, thresh_steps.size):
        pd_th = pd >= thresh_steps[i]
        gt_th = gt >= thresh_steps[i]
        both = (pd_th & gt_th).tolist()
        if column_major_ties:  # for contrast only: the MATLAB numbering
            cc = [sorted(c) for c in ref_components_column_major(both)]
        else:
            cc = ref_components_row_major(both)  # label(..., connectivity=1) + regionprops
        size_vec = np.array([len(c) for c in cc])
        if len(size_vec) == 0:
            continue
        max_id = np.argmax(size_vec)
        coords = np.array(cc[max_id])
        omega = np.zeros((h, w), dtype=np.float32)
        omega[coords[:, 0], coords[:, 1]] = 1
        flag = (l_map == -1) & (omega == 0)
        l_map[flag == 1] = thresh_steps[i - 1]
    l_map[l_map == -1] = 1
    d_pd = pd - l_map
    d_gt = gt - l_map
    phi_pd = 1 - d_pd * (d_pd >= 0.15).astype(np.float32)
    phi_gt = 1 - d_gt * (d_gt >= 0.15).astype(np.float32)
    return np.sum(np.abs(phi_pd - phi_gt)) / 1000, l_map


def aim_test_row(predict, alpha, trimap):
    """The per-image numbers core/test.py logs, under mattecli's keys."""
    sad, mse, mad = aim_calculate_sad_mse_mad_whole_img(predict, alpha)
    out = {"sad": sad, "mse": mse, "mad": mad}
    out["grad"] = aim_compute_gradient_whole_image(predict, alpha)
    out["conn"] = aim_compute_connectivity_loss_whole_image(predict, alpha)[0]
    if trimap is not None:
        out["sad_trans"] = aim_calculate_sad_trimap(predict, alpha, trimap)
        out["sad_fg"], out["sad_bg"] = aim_calculate_sad_fgbg(predict, alpha, trimap)
    return out


# ----------------------------------------------------------------------------- test data
def random_case(h, w, seed, *, levels=None):
    """uint8 pred/GT with smooth structure, noise, plateaus at 0/255 and threshold values."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    gt = np.clip((xx - w * 0.3) / (w * 0.4) + 0.2 * np.sin(yy / 3.0), 0, 1)
    gt = np.round(gt * 255).astype(np.uint8)
    pred = np.clip(gt.astype(int) + rng.integers(-40, 41, (h, w)), 0, 255).astype(np.uint8)
    values = np.array(levels or [0, 51, 102, 153, 204, 255, 38, 39, 76, 77])
    pick = rng.random((h, w)) < 0.25
    pred[pick] = rng.choice(values, pick.sum())
    pick = rng.random((h, w)) < 0.15
    gt[pick] = rng.choice(values, pick.sum())
    trimap = np.full((h, w), 128, np.uint8)
    trimap[gt == 0] = 0
    trimap[gt == 255] = 255
    trimap[rng.random((h, w)) < 0.2] = 128
    return pred, gt, trimap


CASES = [
    pytest.param(*random_case(13, 21, 0), id="random-13x21"),
    pytest.param(*random_case(24, 17, 1), id="random-24x17"),
    pytest.param(*random_case(9, 9, 2, levels=[153, 152, 154, 51, 102, 204]), id="threshold-values"),
]


def blobs_case():
    """Two separate blobs (disconnected foreground pieces), a ring, soft edges; non-square."""
    h, w = 22, 31
    yy, xx = np.mgrid[0:h, 0:w]
    gt = np.zeros((h, w))
    gt[np.hypot(yy - 7, xx - 8) < 5] = 1.0
    gt[np.hypot(yy - 14, xx - 22) < 6] = 0.7
    ring = np.abs(np.hypot(yy - 11, xx - 15) - 9) < 1
    gt[ring] = 0.35
    pred = np.clip(gt + 0.15 * np.sin(xx / 2.0) * (gt > 0), 0, 1)
    pred[3:6, 25:29] = 0.9  # a false positive blob
    trimap = np.full((h, w), 128, np.uint8)
    trimap[:2] = 0
    trimap[-2:, :5] = 255
    return np.round(pred * 255).astype(np.uint8), np.round(gt * 255).astype(np.uint8), trimap


# ----------------------------------------------------------------------------- SAD / MSE / MAD
@pytest.mark.parametrize("pred,gt,trimap", CASES)
def test_sad_mse_mad_match_pixel_loops(pred, gt, trimap):
    sad, mse, mad = ref_sad_mse_mad(pred, gt, trimap)
    assert metrics.sad(pred, gt, trimap) == pytest.approx(sad, rel=1e-12, abs=1e-15)
    assert metrics.mse(pred, gt, trimap) == pytest.approx(mse, rel=1e-12, abs=1e-15)
    assert metrics.mad(pred, gt, trimap) == pytest.approx(mad, rel=1e-12, abs=1e-15)
    whole = ref_sad_mse_mad(pred, gt, None)
    assert metrics.sad(pred, gt) == pytest.approx(whole[0], rel=1e-12)
    assert metrics.mse(pred, gt) == pytest.approx(whole[1], rel=1e-12)
    assert metrics.mad(pred, gt) == pytest.approx(whole[2], rel=1e-12)


def test_unknown_is_exactly_128_and_normalize_trimap():
    pred = np.full((4, 4), 200, np.uint8)
    gt = np.zeros((4, 4), np.uint8)
    trimap = np.array([[0, 127, 128, 129]] * 4, np.uint8)
    # only the column of 128 counts, as in the MATLAB code
    assert metrics.sad(pred, gt, trimap) == pytest.approx(4 * 200 / 255 / 1000)
    norm = metrics.normalize_trimap(trimap)
    assert norm.tolist()[0] == [0, 128, 128, 128]
    assert metrics.sad(pred, gt, norm) == pytest.approx(12 * 200 / 255 / 1000)
    # pymatting-style 102 unknown, 16-bit and float trimaps
    assert metrics.normalize_trimap(np.array([[0, 102, 255]], np.uint8)).tolist() == [[0, 128, 255]]
    assert metrics.normalize_trimap(np.array([[0, 1, 65535]], np.uint16)).tolist() == [[0, 128, 255]]
    assert metrics.normalize_trimap(np.array([[0.0, 0.4, 1.0]])).tolist() == [[0, 128, 255]]


def test_empty_unknown_region_is_defined():
    pred, gt, _ = random_case(12, 15, 3)
    trimap = np.where(gt > 127, 255, 0).astype(np.uint8)  # all known
    out = metrics.evaluate(pred, gt, trimap)
    assert out["sad"] == 0.0 and out["grad"] == 0.0 and out["conn"] == 0.0
    assert out["mse"] == 0.0 and out["mad"] == 0.0  # defined as 0, not NaN
    assert out["unknown_px"] == 0
    for key in ("sad", "mse", "mad", "grad", "conn"):
        assert not math.isnan(out[key])


def test_uint8_uint16_and_float_inputs_agree_exactly():
    pred, gt, trimap = random_case(15, 19, 4)
    as16 = metrics.evaluate(pred.astype(np.uint16) * 257, gt.astype(np.uint16) * 257, trimap)
    as8 = metrics.evaluate(pred, gt, trimap)
    as_float = metrics.evaluate(pred / 255.0, gt / 255.0, trimap)
    for key in as8:
        assert as16[key] == pytest.approx(as8[key], rel=1e-12, abs=1e-15)
        assert as_float[key] == as8[key]
    # a channel axis is allowed: channel 0 is used (evaluate.m takes target(:,:,1))
    rgb = np.stack([gt, np.zeros_like(gt), np.zeros_like(gt)], axis=2)
    assert metrics.evaluate(pred, rgb, trimap) == as8


def test_bad_inputs_raise_typed_errors():
    a = np.zeros((4, 5))
    with pytest.raises(InputError):
        metrics.sad(a, np.zeros((5, 4)))
    with pytest.raises(InputError):
        metrics.sad(a + 1.5, a)
    with pytest.raises(InputError):
        metrics.sad(np.full((4, 5), np.nan), a)
    with pytest.raises(TrimapError):
        metrics.sad(a, a, np.zeros((3, 3), np.uint8))
    with pytest.raises(TrimapError):
        metrics.sad(a, a, np.full((4, 5), 0.5))
    with pytest.raises(UsageError):
        metrics.evaluate(a, a, None, mode="unknown")
    with pytest.raises(UsageError):
        metrics.evaluate(a, a, np.zeros((4, 5), np.uint8), mode="partial")
    with pytest.raises(UsageError):
        metrics.grad(a, a, norm="max")


# ----------------------------------------------------------------------------- Grad
def test_kernel_matches_the_documented_numbers():
    k = metrics.gauss_gradient_kernel()
    assert k.shape == (9, 9)
    centre = [0.0275, 0.1230, 0.2935, 0.3154, 0, -0.3154, -0.2935, -0.1230, -0.0275]
    np.testing.assert_allclose(k[4], centre, atol=1e-4)
    assert np.sqrt((k**2).sum()) == pytest.approx(1.0)
    ref, _ = ref_kernel()
    np.testing.assert_allclose(k, np.array(ref), rtol=1e-12, atol=1e-15)
    # raw (un-normalised) L2 norm about 0.10177
    u = np.arange(-4, 5.0)
    gauss = np.exp(-(u**2) / (2 * 1.4**2)) / (1.4 * np.sqrt(2 * np.pi))
    raw = np.outer(gauss, -u * gauss / 1.4**2)
    assert np.sqrt((raw**2).sum()) == pytest.approx(0.10177, abs=1e-5)


def test_unit_ramp_gain():
    ramp = np.tile(np.arange(30.0), (20, 1))
    mag = metrics.gradient_magnitude(ramp)
    assert mag[10, 15] == pytest.approx(9.684, abs=1e-3)
    assert metrics.gradient_magnitude(ramp.T)[15, 10] == pytest.approx(9.684, abs=1e-3)


def test_gradient_magnitude_matches_double_loop_convolution():
    rng = np.random.default_rng(5)
    img = rng.random((11, 16))
    hx, half = ref_kernel()
    hy = [list(col) for col in zip(*hx, strict=True)]
    gx = np.array(ref_conv_replicate(img.tolist(), hx, half))
    gy = np.array(ref_conv_replicate(img.tolist(), hy, half))
    np.testing.assert_allclose(metrics.gradient_magnitude(img), np.hypot(gx, gy), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("norm", ["minmax", "255"])
@pytest.mark.parametrize("pred,gt,trimap", CASES + [pytest.param(*blobs_case(), id="blobs-22x31")])
def test_grad_matches_reference(pred, gt, trimap, norm):
    expected = ref_grad(pred, gt, trimap, norm)
    assert metrics.grad(pred, gt, trimap, norm=norm) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert metrics.grad(pred, gt, None, norm=norm) == pytest.approx(ref_grad(pred, gt, None, norm), rel=1e-9)


def test_grad_crop_is_exact_near_and_far_from_borders():
    pred, gt, _ = random_case(20, 26, 6)
    for box in [(slice(0, 3), slice(0, 4)), (slice(9, 11), slice(11, 14)), (slice(17, 20), slice(20, 26))]:
        trimap = np.zeros((20, 26), np.uint8)
        trimap[box] = 128
        assert metrics.grad(pred, gt, trimap) == pytest.approx(ref_grad(pred, gt, trimap), rel=1e-9)


def test_minmax_equals_255_when_predictions_span_the_range():
    pred, gt, trimap = random_case(16, 20, 7)
    pred[0, 0], pred[0, 1] = 0, 255
    gt[0, 0], gt[0, 1] = 0, 255
    assert metrics.grad(pred, gt, trimap, norm="minmax") == pytest.approx(
        metrics.grad(pred, gt, trimap, norm="255"), rel=1e-12
    )
    squeezed = np.round(10 + pred.astype(float) * (230 / 255)).astype(np.uint8)
    a = metrics.grad(squeezed, gt, trimap, norm="minmax")
    b = metrics.grad(squeezed, gt, trimap, norm="255")
    assert a != pytest.approx(b, rel=1e-3)
    assert a == pytest.approx(ref_grad(squeezed, gt, trimap, "minmax"), rel=1e-9)


# ----------------------------------------------------------------------------- Conn
@pytest.mark.parametrize("pred,gt,trimap", CASES + [pytest.param(*blobs_case(), id="blobs-22x31")])
def test_conn_matches_reference(pred, gt, trimap):
    assert metrics.conn(pred, gt, trimap) == pytest.approx(ref_conn(pred, gt, trimap), rel=1e-12, abs=1e-15)
    assert metrics.conn(pred, gt) == pytest.approx(ref_conn(pred, gt, None), rel=1e-12, abs=1e-15)
    assert metrics.conn(pred, gt, empty="skip") == pytest.approx(
        ref_conn(pred, gt, None, empty="skip"), rel=1e-12, abs=1e-15
    )


def test_conn_float_inputs_match_reference():
    rng = np.random.default_rng(8)
    gt = np.clip(rng.random((14, 18)) * 1.4 - 0.2, 0, 1)
    pred = np.clip(gt + rng.normal(0, 0.2, gt.shape), 0, 1)
    trimap = np.full(gt.shape, 128, np.uint8)
    assert metrics.conn(pred, gt, trimap) == pytest.approx(ref_conn(pred, gt, trimap), rel=1e-12)


def test_153_counts_as_at_least_0_6():
    """MATLAB compares single(153)/255 >= 0.6 as true; np.arange thresholds would not."""
    assert 153 / 255 >= 6 / 10
    assert not 153 / 255 >= np.arange(0, 1.1, 0.1)[6]  # the ports' bug this guards against
    gt = np.zeros((5, 9), np.uint8)
    pred = np.zeros((5, 9), np.uint8)
    gt[1:4, 1:8] = 255
    pred[1:4, 1:8] = 153
    trimap = np.full(gt.shape, 128, np.uint8)
    levels = metrics.connectivity_levels(pred / 255.0, gt / 255.0)
    # connected through t = 0.6 (153 counts), cut at 0.7: level 0.6
    assert levels[2, 4] == pytest.approx(0.6)
    value = metrics.conn(pred, gt, trimap)
    assert value == pytest.approx(ref_conn(pred, gt, trimap))
    # d_gt = 1 - 0.6 = 0.4 >= 0.15: phi_gt = 0.6; d_pred = 0: phi_pred = 1
    assert value == pytest.approx(21 * 0.4 / 1000)


def test_conn_largest_component_excludes_background_and_ties_are_column_major():
    h, w = 9, 12
    gt = np.zeros((h, w), np.uint8)
    pred = np.zeros((h, w), np.uint8)
    # A: top right, B: bottom left; equal size. Row-major scanning finds A first,
    # MATLAB's column-major scanning finds B first.
    # Whichever blob loses the tie keeps level 0 and pays |pred - gt|; the winner pays 0
    # (its gt - level < 0.15), so the two choices give different errors.
    gt[0:2, 8:11], pred[0:2, 8:11] = 230, 204
    gt[6:8, 1:4], pred[6:8, 1:4] = 120, 102
    trimap = np.full((h, w), 128, np.uint8)
    col_major = ref_conn(pred, gt, trimap)
    row_major = ref_conn(pred, gt, trimap, row_major_ties=True)
    assert col_major != pytest.approx(row_major)  # the case really tells the two apart
    assert metrics.conn(pred, gt, trimap) == pytest.approx(col_major, rel=1e-12)
    # background (66 px) outnumbers each blob (6 px) but is never omega
    levels = metrics.connectivity_levels(pred / 255.0, gt / 255.0)
    assert levels[7, 2] == pytest.approx(0.4)  # B survives to 0.4 (102 >= 0.4), cut at 0.5
    assert levels[0, 9] == pytest.approx(0.0)  # A lost the tie at 0.1


def test_conn_empty_intersection_rules():
    # pred never reaches 0.5 where gt does: the intersection is empty from t = 0.5 on
    gt = np.zeros((6, 6), np.uint8)
    pred = np.zeros((6, 6), np.uint8)
    gt[1:5, 1:5] = 255
    pred[1:5, 1:5] = 110  # >= 0.4
    pred[0, :] = 255  # pred high where gt is 0
    trimap = np.full(gt.shape, 128, np.uint8)
    matlab = metrics.connectivity_levels(pred / 255.0, gt / 255.0, empty="matlab")
    skip = metrics.connectivity_levels(pred / 255.0, gt / 255.0, empty="skip")
    assert matlab[2, 2] == pytest.approx(0.4)  # empty omega at 0.5: every unassigned pixel gets 0.4
    assert skip[2, 2] == pytest.approx(1.0)  # AIM: thresholds skipped, survivors end at 1
    assert metrics.conn(pred, gt, trimap) == pytest.approx(ref_conn(pred, gt, trimap), rel=1e-12)
    assert metrics.conn(pred, gt, trimap, empty="skip") == pytest.approx(
        ref_conn(pred, gt, trimap, empty="skip"), rel=1e-12, abs=1e-15
    )
    # no overlap at all
    zero = np.zeros((5, 5), np.uint8)
    assert metrics.conn(zero, np.full((5, 5), 255, np.uint8), np.full((5, 5), 128, np.uint8)) == pytest.approx(
        ref_conn(zero, np.full((5, 5), 255, np.uint8), np.full((5, 5), 128, np.uint8))
    )


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_unknown_mode_collects_every_metric():
    pred, gt, trimap = blobs_case()
    out = metrics.evaluate(pred, gt, trimap, grad_norm="255")
    sad, mse, mad = ref_sad_mse_mad(pred, gt, trimap)
    assert out["sad"] == pytest.approx(sad, rel=1e-12)
    assert out["mse"] == pytest.approx(mse, rel=1e-12)
    assert out["mad"] == pytest.approx(mad, rel=1e-12)
    assert out["grad"] == pytest.approx(ref_grad(pred, gt, trimap, "255"), rel=1e-9)
    assert out["conn"] == pytest.approx(ref_conn(pred, gt, trimap), rel=1e-12)
    assert out["unknown_px"] == int((trimap == 128).sum())
    assert out["pixels"] == pred.size
    assert set(metrics.evaluate(pred, gt, trimap, metrics=["sad"])) == {"sad", "unknown_px", "pixels"}


# ----------------------------------------------------------------------------- AIM convention
def smooth_case(h=64, w=96, seed=9):
    """A soft disc with noise, quantised to 8 bit; a trimap from the GT as the AIM code builds one."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    gt = np.clip((22 - np.hypot(yy - h / 2, xx - w / 2)) / 6 + 0.5, 0, 1)
    pred = np.clip(gt + rng.normal(0, 0.08, gt.shape) * (gt > 0.05), 0, 1)
    gt, pred = np.round(gt * 255).astype(np.uint8), np.round(pred * 255).astype(np.uint8)
    pred[10:14, 5:40] = 153  # a plateau on the threshold the two codes disagree on
    trimap = np.full((h, w), 128, np.uint8)
    trimap[gt == 0] = 0
    trimap[gt == 255] = 255
    return pred, gt, trimap


WHOLE_CASES = CASES + [
    pytest.param(*blobs_case(), id="blobs-22x31"),
    pytest.param(*smooth_case(), id="smooth-64x96"),
]


@pytest.mark.parametrize("pred,gt,trimap", WHOLE_CASES)
def test_whole_mode_equals_the_aim_code(pred, gt, trimap, tmp_path):
    """Every number of core/test.py's row, bit for bit, from the same 8-bit PNG files."""
    predict, alpha = aim_read(pred, tmp_path, "pred"), aim_read(gt, tmp_path, "gt")
    expected = aim_test_row(predict, alpha, trimap)
    out = metrics.evaluate(pred, gt, trimap, mode="whole")
    assert {k: out[k] for k in expected} == {k: float(v) for k, v in expected.items()}
    assert out["unknown_px"] == int((trimap == 128).sum()) and out["pixels"] == pred.size
    # float inputs as core/test.py holds them give the same numbers as the uint8 arrays
    assert metrics.evaluate(predict, alpha, trimap, mode="whole") == out
    no_trimap = metrics.evaluate(pred, gt, None, mode="whole")
    assert "sad_trans" not in no_trimap and no_trimap["unknown_px"] == pred.size
    assert {k: no_trimap[k] for k in ("sad", "mse", "mad", "grad", "conn")} == {
        k: out[k] for k in ("sad", "mse", "mad", "grad", "conn")
    }
    assert metrics.conn_aim(pred, gt) == out["conn"] and metrics.grad_aim(pred, gt) == out["grad"]


def test_8bit_153_is_where_the_two_conventions_part():
    """153/255 is exactly 0.6: at or above the DIM t_6 = 6/10, below the AIM t_6 = 0.6000000000000001."""
    assert 153 / 255 == 0.6 and 153 / 255 >= 6 / 10
    assert np.arange(0, 1.1, 0.1)[6] == 0.6000000000000001 and not 153 / 255 >= np.arange(0, 1.1, 0.1)[6]
    # one object, GT 1 everywhere; the prediction is 1 on its left part (A) and 153 on its right (B)
    gt = np.zeros((5, 12), np.uint8)
    pred = np.zeros((5, 12), np.uint8)
    gt[1:4, 1:11] = 255
    pred[1:4, 1:7] = 255
    pred[1:4, 7:11] = 153
    trimap = np.full(gt.shape, 128, np.uint8)
    n_b = 3 * 4
    # DIM: A and B stay one component up to t_6 = 0.6; B leaves at t_7: level 0.6,
    # d_gt = 0.4 -> phi_gt = 0.6, d_pred = 0 -> phi_pred = 1: 0.4 per B pixel.
    dim_levels = metrics.connectivity_levels(pred / 255.0, gt / 255.0)
    assert dim_levels[2, 8] == 0.6 and dim_levels[2, 3] == 1.0
    dim = metrics.evaluate(pred, gt, trimap, mode="unknown")["conn"]
    assert dim == pytest.approx(ref_conn(pred, gt, trimap), rel=1e-12)
    assert dim == pytest.approx(n_b * 0.4 / 1000, rel=1e-12)
    # AIM: B already fails t_6 (153/255 < 0.6000000000000001): level t_5 = float32(0.5) = 0.5,
    # d_gt = 0.5 -> phi_gt = 0.5, d_pred = 0.1 < 0.15 -> phi_pred = 1: 0.5 per B pixel.
    aim_levels = metrics.connectivity_levels_aim(pred / 255.0, gt / 255.0)
    assert aim_levels[2, 8] == 0.5 and aim_levels[2, 3] == 1.0
    aim = metrics.evaluate(pred, gt, None, mode="whole")["conn"]
    reference, l_map = aim_compute_connectivity_loss_whole_image(pred / 255.0, gt / 255.0)
    assert aim == reference == pytest.approx(n_b * 0.5 / 1000, rel=1e-12)
    np.testing.assert_array_equal(aim_levels, l_map.astype(np.float64))
    # the thresholds make the difference, not the empty-intersection rule: the DIM thresholds
    # with AIM's rule still give 0.4 per B pixel
    assert metrics.conn(pred, gt, empty="skip") == pytest.approx(n_b * 0.4 / 1000, rel=1e-12)
    # 16 bit: 39321 / 65535 is 0.6 too
    assert metrics.conn_aim(pred.astype(np.uint16) * 257, gt.astype(np.uint16) * 257) == aim


def test_aim_levels_are_float32_and_ties_are_row_major():
    # float inputs: the float32 levels (float32(0.1) = 0.10000000149011612...) reach the sum
    rng = np.random.default_rng(8)
    gt = np.clip(rng.random((14, 18)) * 1.4 - 0.2, 0, 1)
    pred = np.clip(gt + rng.normal(0, 0.2, gt.shape), 0, 1)
    reference, l_map = aim_compute_connectivity_loss_whole_image(pred, gt)
    assert metrics.conn_aim(pred, gt) == reference
    levels = metrics.connectivity_levels_aim(pred, gt)
    np.testing.assert_array_equal(levels, l_map.astype(np.float64))
    assert set(np.unique(levels)) <= {float(np.float32(t)) for t in np.arange(0, 1.1, 0.1)}
    # equal-sized blobs: scikit-image numbers A (top right) first, MATLAB B (bottom left)
    h, w = 9, 12
    gt = np.zeros((h, w), np.uint8)
    pred = np.zeros((h, w), np.uint8)
    gt[0:2, 8:11], pred[0:2, 8:11] = 230, 204
    gt[6:8, 1:4], pred[6:8, 1:4] = 120, 102
    p, g = pred / 255.0, gt / 255.0
    row_major = aim_compute_connectivity_loss_whole_image(p, g)[0]
    column_major = aim_compute_connectivity_loss_whole_image(p, g, column_major_ties=True)[0]
    assert row_major != pytest.approx(column_major)  # the case tells the two apart
    assert metrics.conn_aim(pred, gt) == row_major
    levels = metrics.connectivity_levels_aim(p, g)
    # A wins the tie at 0.1 and is alone from 0.5 on; the intersection is empty from 0.9: skipped
    assert levels[0, 9] == 1.0 and levels[7, 2] == 0.0
    assert metrics.conn(pred, gt) == pytest.approx(ref_conn(pred, gt, None), rel=1e-12)  # DIM: B won


def test_aim_empty_intersections_are_skipped():
    gt = np.zeros((6, 6), np.uint8)
    pred = np.zeros((6, 6), np.uint8)
    gt[1:5, 1:5] = 255
    pred[1:5, 1:5] = 110  # >= 0.4; the intersection is empty from t = 0.5 on
    pred[0, :] = 255
    assert metrics.connectivity_levels_aim(pred / 255.0, gt / 255.0)[2, 2] == 1.0  # survivors end at 1
    assert metrics.conn_aim(pred, gt) == aim_compute_connectivity_loss_whole_image(pred / 255.0, gt / 255.0)[0]
    zero, one = np.zeros((5, 5), np.uint8), np.full((5, 5), 255, np.uint8)
    assert metrics.conn_aim(zero, one) == aim_compute_connectivity_loss_whole_image(zero / 255.0, one / 255.0)[0]


def test_aim_sad_trans_sets_the_known_regions_from_the_trimap():
    """sad_trans is the code's "SAD TRIMAP": prediction forced to 1 / 0 on trimap 255 / 0, whole image."""
    pred, gt, _ = smooth_case()
    trimap = np.full(gt.shape, 128, np.uint8)
    trimap[gt < 40] = 0  # known regions whose GT is not exactly 0 / 1
    trimap[gt > 215] = 255
    out = metrics.evaluate(pred, gt, trimap, mode="whole")
    p, g = pred / 255.0, gt / 255.0
    assert out["sad_trans"] == aim_calculate_sad_trimap(p, g, trimap)
    over_128 = np.abs(p - g)[trimap == 128].sum() / 1000
    assert out["sad_trans"] != pytest.approx(over_128)  # it also counts |1 - g| and |0 - g| there
    assert (out["sad_fg"], out["sad_bg"]) == aim_calculate_sad_fgbg(p, g, trimap)
    # with a GT that is exactly 1 / 0 where the trimap is known (AIM-500's and AM-2k's trimaps are
    # made from the GT), it is the SAD over the transition region, and the three parts add up
    pred, gt, trimap = smooth_case()
    out = metrics.evaluate(pred, gt, trimap, mode="whole")
    over_128 = np.abs(pred / 255.0 - gt / 255.0)[trimap == 128].sum() / 1000
    assert out["sad_trans"] == pytest.approx(over_128, rel=1e-12)
    assert out["sad_trans"] + out["sad_fg"] + out["sad_bg"] == pytest.approx(out["sad"], rel=1e-12)


def test_aim_grad_is_float32_and_divided_by_10():
    pred, gt, trimap = blobs_case()
    p, g = pred / 255.0, gt / 255.0
    assert metrics.grad_aim(pred, gt) == aim_compute_gradient_whole_image(p, g)
    # the float32 steps matter: the same filter in float64 gives another number
    from scipy import ndimage

    def mag64(x):
        return np.hypot(ndimage.gaussian_filter(x, 1.4, order=(1, 0)), ndimage.gaussian_filter(x, 1.4, order=(0, 1)))

    in_float64 = np.sum((mag64(p) - mag64(g)) ** 2) / 10.0
    assert metrics.grad_aim(pred, gt) != in_float64
    assert metrics.grad_aim(pred, gt) == pytest.approx(in_float64, rel=1e-5)
    # a trimap restricts the sum to trimap == 128 (an extension)
    assert metrics.grad_aim(pred, gt, trimap) == pytest.approx(
        np.sum(((mag64(p) - mag64(g)) ** 2)[trimap == 128]) / 10.0, rel=1e-5
    )
