"""Compositing identities, colour and background parsing, foreground estimation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_scene, write_rgb

from mattecli.composite import (
    composite,
    cover_resize,
    estimate_foreground,
    make_background,
    parse_background,
    parse_color,
)
from mattecli.errors import BadOptionError, InputError

RNG = np.random.default_rng(7)


def test_alpha_one_gives_foreground_alpha_zero_gives_background():
    fg = RNG.random((6, 7, 3)).astype(np.float32)
    bg = RNG.random((6, 7, 3)).astype(np.float32)
    np.testing.assert_array_equal(composite(fg, np.ones((6, 7), np.float32), bg), fg)
    np.testing.assert_array_equal(composite(fg, np.zeros((6, 7), np.float32), bg), bg)
    half = composite(fg, np.full((6, 7), 0.25, np.float32), bg)
    np.testing.assert_allclose(half, 0.25 * fg + 0.75 * bg, atol=1e-6)


def test_foreground_estimation_removes_old_background_colour():
    image, alpha, _ = synthetic_scene(seed=5)
    true_fg = image[alpha == 1][0]
    fg = estimate_foreground(image, alpha)
    soft = (alpha > 0.1) & (alpha < 0.9)
    # in soft pixels the image mixes in the background; the estimate is the pure foreground colour
    assert np.abs(image[soft] - true_fg).max() > 0.1
    assert np.abs(fg[soft] - true_fg).max() < 0.02
    np.testing.assert_allclose(fg[alpha == 1], image[alpha == 1], atol=1e-3)
    # and re-compositing over the original background reproduces the image
    true_bg = image[alpha == 0][0]
    recon = composite(fg, alpha, np.broadcast_to(true_bg, image.shape))
    assert np.abs(recon - image).max() < 0.02


def test_foreground_size_mismatch():
    with pytest.raises(InputError, match="alpha is 3x2 but the image is 4x2"):
        estimate_foreground(np.zeros((2, 4, 3)), np.zeros((2, 3)))


@pytest.mark.parametrize(
    "spec,rgb",
    [
        ("#ff8000", (255, 128, 0)),
        ("#0f0", (0, 255, 0)),
        ("white", (255, 255, 255)),
        ("Navy", (0, 0, 128)),
        ("10,20,30", (10, 20, 30)),
        ("rgb(1, 2, 3)", (1, 2, 3)),
    ],
)
def test_parse_color(spec, rgb):
    np.testing.assert_allclose(parse_color(spec), np.array(rgb) / 255)


def test_parse_background_kinds(tmp_path):
    assert parse_background("blur") == ("blur", None)
    assert parse_background("blur:4.5") == ("blur", 4.5)
    assert parse_background("red")[0] == "color"
    path = write_rgb(tmp_path / "bg.png", np.zeros((3, 3, 3), np.float32))
    assert parse_background(str(path)) == ("image", path)
    for bad in ("not-a-colour", "blur:x", "blur:-1", str(tmp_path / "missing.png")):
        with pytest.raises(BadOptionError):
            parse_background(bad)


def test_cover_resize_fills_and_keeps_aspect():
    # a 10x40 image with a marker column in its centre, covering a 20x20 target
    img = np.zeros((10, 40, 3), np.float32)
    img[:, 19:21] = 1.0
    out = cover_resize(img, (20, 20))
    assert out.shape == (20, 20, 3)
    # scale 2 -> 20x80, centre crop keeps columns 30..50: the marker lands in the middle
    assert out[:, 9:11].mean() > 0.8 and out[:, :5].max() < 0.05


def test_make_background_blur_and_image(tmp_path):
    image = RNG.random((16, 24, 3)).astype(np.float32)
    blurred = make_background("blur:3", image)
    assert blurred.shape == image.shape and blurred.std() < image.std()
    const = np.full((16, 24, 3), 0.3, np.float32)
    np.testing.assert_allclose(make_background("blur", image, estimated_background=const), const, atol=1e-6)
    path = write_rgb(tmp_path / "bg.png", np.full((5, 5, 3), 0.2, np.float32))
    np.testing.assert_allclose(make_background(str(path), image), 51 / 255, atol=1e-3)
    np.testing.assert_allclose(make_background("#000000", image), 0.0)
