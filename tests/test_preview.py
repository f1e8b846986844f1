"""``matte --preview``: input | trimap | alpha | cut-out over a checkerboard, at most 2048 px wide."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, invoke, synthetic_scene

from mattecli import io
from mattecli.preview import CHECKER_COLORS, GAP, GAP_COLOR, MAX_WIDTH, checkerboard, layout, render_preview, resize_panel


@pytest.mark.parametrize(
    "h, w, n, panel",
    [
        (40, 56, 4, (120, 168)),  # tiny: enlarged by a whole factor (3: 40 -> 120 >= 96)
        (300, 400, 4, (300, 400)),  # fits: native size
        (1000, 4000, 4, (127, 509)),  # wide: reduced so that 4 panels + 3 gaps fit 2048
        (6000, 500, 4, (6000, 500)),  # tall and narrow: native (the width is what is bounded)
        (6000, 1000, 3, (4080, 680)),
        (1, 1, 4, (96, 96)),
        (2, 30000, 4, (1, 509)),  # a thin strip: at least one pixel high
    ],
)
def test_layout_sizes(h, w, n, panel):
    lay = layout(h, w, n)
    assert (lay.height, lay.width) == panel
    assert lay.x == tuple(i * (lay.width + GAP) for i in range(n))
    assert lay.total_width == n * lay.width + (n - 1) * GAP <= MAX_WIDTH
    assert abs(lay.height * w - lay.width * h) <= max(h, w) or lay.height == 1  # the aspect, within a pixel


def _scene(h=40, w=56):
    image, alpha, trimap = synthetic_scene(h, w)
    return image, alpha, trimap


def test_panels_are_the_input_trimap_alpha_and_cutout_side_by_side():
    image, alpha, trimap = _scene(120, 200)  # fits natively
    fg = np.zeros_like(image)
    fg[:] = (1.0, 0.0, 0.0)
    pic = render_preview(image, alpha, trimap, foreground=fg)
    lay = layout(120, 200, 4)
    assert pic.dtype == np.uint8 and pic.shape == (120, 4 * 200 + 3 * GAP, 3)
    panels = [pic[:, x : x + lay.width] for x in lay.x]
    np.testing.assert_array_equal(panels[0], np.rint(image * 255).astype(np.uint8))
    np.testing.assert_array_equal(panels[1], np.repeat(trimap[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(panels[2][:, :, 0], np.rint(alpha * 255).astype(np.uint8))
    assert (panels[2][:, :, 0] == panels[2][:, :, 2]).all()
    # the cut-out: the checkerboard where alpha is 0, the foreground where it is 1, a blend between
    board = np.rint(checkerboard(120, 200) * 255).astype(np.uint8)
    cut = panels[3]
    np.testing.assert_array_equal(cut[alpha == 0], board[alpha == 0])
    assert (cut[alpha == 1] == (255, 0, 0)).all()
    assert set(np.unique(board)) == set(CHECKER_COLORS) and board[0, 0, 0] == CHECKER_COLORS[0]
    assert board[0, 8, 0] == CHECKER_COLORS[1] and board[8, 8, 0] == CHECKER_COLORS[0]
    # the gaps between the panels
    for x in lay.x[1:]:
        assert (pic[:, x - GAP : x] == GAP_COLOR).all()


def test_a_wide_image_is_reduced_and_the_alpha_panel_is_the_alpha_resized():
    rng = np.random.default_rng(0)
    h, w = 90, 1500
    image = rng.random((h, w, 3), dtype=np.float32)
    alpha = np.clip(np.linspace(-0.5, 1.5, w, dtype=np.float32)[None].repeat(h, 0), 0, 1)
    pic = render_preview(image, alpha, None)  # no trimap: three panels, foreground estimated at panel size
    lay = layout(h, w, 3)
    assert lay.width < w and pic.shape == (lay.height, lay.total_width, 3) and pic.shape[1] <= MAX_WIDTH
    want = np.rint(np.clip(resize_panel(alpha, (lay.height, lay.width)), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pic[:, lay.x[1] : lay.x[1] + lay.width, 1], want)
    cut = pic[:, lay.x[2] :]
    small = resize_panel(alpha, (lay.height, lay.width))
    board = np.rint(checkerboard(lay.height, lay.width) * 255).astype(np.uint8)
    np.testing.assert_array_equal(cut[small == 0], board[small == 0])  # the checkerboard shows through


def test_a_tiny_image_is_enlarged_with_sharp_pixels():
    image, alpha, trimap = _scene(3, 5)
    pic = render_preview(image, alpha, trimap)
    lay = layout(3, 5, 4)
    assert lay.height >= 96 and lay.height % 3 == 0 and lay.width == 5 * lay.height // 3
    k = lay.height // 3
    tri_panel = pic[:, lay.x[1] : lay.x[1] + lay.width, 0]
    np.testing.assert_array_equal(tri_panel, np.kron(trimap, np.ones((k, k), np.uint8)))


def test_a_large_trimap_keeps_three_levels_when_reduced():
    trimap = np.zeros((500, 3000), np.uint8)
    trimap[:, 1000:2000] = 128
    trimap[:, 2000:] = 255
    lay = layout(500, 3000, 4)
    small = resize_panel(trimap, (lay.height, lay.width), nearest=True)
    assert set(np.unique(small)) == {0, 128, 255}


def test_matte_preview_through_the_cli(runner, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        runner, ["matte", "-m", "cf", EXAMPLES / "images" / "veil.png", out, "-t", EXAMPLES / "trimaps" / "veil.png",
                 "--preview", "--cutout"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    pic = cv2.imread(str(out / "veil_preview.png"))[:, :, ::-1]
    lay = layout(320, 320, 4)
    assert pic.shape == (320, 4 * 320 + 3 * GAP, 3)
    image = io.read_image(EXAMPLES / "images" / "veil.png")
    np.testing.assert_array_equal(pic[:, : lay.width], np.rint(image * 255).astype(np.uint8))
    tri = io.read_trimap(EXAMPLES / "trimaps" / "veil.png")
    np.testing.assert_array_equal(pic[:, lay.x[1] : lay.x[1] + lay.width, 0], tri)
    alpha = cv2.imread(str(out / "veil.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(pic[:, lay.x[2] : lay.x[2] + lay.width, 0], alpha)
    # the cut-out panel uses the --cutout foreground; where the alpha is 0 the checkerboard shows
    cut = pic[:, lay.x[3] :]
    board = np.rint(checkerboard(320, 320) * 255).astype(np.uint8)
    np.testing.assert_array_equal(cut[alpha == 0], board[alpha == 0])
    rgba = cv2.imread(str(out / "veil_cutout.png"), cv2.IMREAD_UNCHANGED)
    opaque = tri == 255  # alpha exactly 1 there
    np.testing.assert_array_equal(cut[opaque], rgba[:, :, 2::-1][opaque])
    # a rerun skips: the preview is one of the job's outputs
    again = invoke(runner, ["matte", "-m", "cf", EXAMPLES / "images" / "veil.png", out, "-t",
                            EXAMPLES / "trimaps" / "veil.png", "--preview", "--cutout", "--json"])  # fmt: skip
    assert '"skipped"' in again.stdout
