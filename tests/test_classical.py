"""Closed-form / KNN matting: known-alpha synthetic scenes, the crop shortcut, errors, a real photo."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_scene

from mattecli import io, models
from mattecli.classical import estimate_alpha
from mattecli.errors import TrimapError, UnknownMethodError


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


@pytest.mark.parametrize("fill,message", [(0, "no foreground"), (255, "no background")])
def test_degenerate_trimaps(fill, message):
    tri = np.full((8, 8), fill, np.uint8)
    tri[3:5, 3:5] = 128
    with pytest.raises(TrimapError, match=message):
        estimate_alpha(np.zeros((8, 8, 3), np.float32), tri, "cf")


def test_size_mismatch():
    with pytest.raises(TrimapError, match="trimap is 4x3 but the image is 5x3"):
        estimate_alpha(np.zeros((3, 5, 3), np.float32), np.zeros((3, 4), np.uint8))


def test_registry():
    assert models.list_methods()[:3] == ["aim", "cf", "knn"]
    spec = models.get("cf")
    assert spec.needs_trimap
    matter = spec.create(models.MethodConfig())
    image, alpha, trimap = synthetic_scene()
    assert np.abs(matter.predict(image, trimap) - alpha).mean() < 0.003
    with pytest.raises(TrimapError, match="needs a trimap"):
        matter.predict(image, None)
    with pytest.raises(UnknownMethodError, match="known methods: aim, cf, knn"):
        models.get("nope")


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
