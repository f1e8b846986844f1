"""Dataset loaders on miniature trees built here, and the Composition-1k recipe against a pixel loop."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mattecli import io
from mattecli.benchmark.composition import compose, compose_files
from mattecli.benchmark.datasets import export_prebuilt, load_dataset
from mattecli.benchmark.layouts import BGS_PER_FG
from mattecli.benchmark.samples import exact_uint
from mattecli.errors import DatasetError

FG_NAMES = ("hair.png", "glass.jpg")  # a .jpg name exercises the recipe's "strip 4 characters" rule


# ----------------------------------------------------------------------------- builders
def _soft_alpha(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.clip((xx - w * 0.25) / (w * 0.5) + 0.1 * np.sin(yy), 0, 1)
    a = np.round(a * 255).astype(np.uint8)
    a[rng.random((h, w)) < 0.05] = 1  # the smallest non-zero alpha
    a[:, -3:] = 255
    return a


def _trimap_from(alpha: np.ndarray) -> np.ndarray:
    tri = np.full(alpha.shape, 128, np.uint8)
    tri[alpha == 0] = 0
    tri[alpha == 255] = 255
    return tri


def build_mini_comp1k(root: Path, *, fg_size=(40, 40), seed: int = 0) -> Path:
    """The official Adobe Test_set layout in miniature: 2 foregrounds x 20 backgrounds.

    Backgrounds vary in size (smaller than the FG in one or both directions, larger,
    non-square) and format (JPEG like VOC, PNG, a grey PNG). Returns the Test_set folder.
    """
    rng = np.random.default_rng(seed)
    test_set = root / "Combined_Dataset" / "Test_set"
    adobe = test_set / "Adobe-licensed images"
    h, w = fg_size
    bg_names = []
    for i, fg_name in enumerate(FG_NAMES):
        fg = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        (adobe / "fg").mkdir(parents=True, exist_ok=True)
        (adobe / "alpha").mkdir(parents=True, exist_ok=True)
        if fg_name.endswith(".jpg"):
            Image.fromarray(fg).save(adobe / "fg" / fg_name, quality=90)
        else:
            Image.fromarray(fg).save(adobe / "fg" / fg_name)
        alpha = _soft_alpha(h, w, seed + i)
        # the alpha keeps the fg's file name (even .jpg in the name list), stored losslessly
        Image.fromarray(alpha).save(adobe / "alpha" / fg_name, format="PNG")
        stem = fg_name[:-4]
        for k in range(BGS_PER_FG):
            tri_dir = adobe / "trimaps"
            tri_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_trimap_from(alpha)).save(tri_dir / f"{stem}_{k}.png")
            bh = int(rng.integers(h // 2, 2 * h))
            bw = int(rng.integers(w // 2, 2 * w))
            bg = rng.integers(0, 256, (bh, bw, 3), dtype=np.uint8)
            bg_dir = root / "bg"
            bg_dir.mkdir(parents=True, exist_ok=True)
            if k % 5 == 3:
                name = f"bg_{i}_{k}.png"
                Image.fromarray(bg[:, :, 0]).save(bg_dir / name)  # greyscale: converted to RGB
            elif k % 2:
                name = f"bg_{i}_{k}.png"
                Image.fromarray(bg).save(bg_dir / name)
            else:
                name = f"bg_{i}_{k}.jpg"
                Image.fromarray(bg).save(bg_dir / name, quality=85)
            bg_names.append(name)
    (test_set / "test_fg_names.txt").write_text("\n".join(FG_NAMES) + "\n")
    (test_set / "test_bg_names.txt").write_text("\n".join(bg_names) + "\n")
    return test_set


def recipe_by_pixel_loop(fg_path: Path, alpha_path: Path, bg_path: Path) -> np.ndarray:
    """Adobe's Composition_code.py written out as its per-pixel loop (Python 3 arithmetic)."""
    im = Image.open(fg_path)
    a = Image.open(alpha_path)
    w, h = im.size
    if im.mode != "RGB" and im.mode != "RGBA":
        im = im.convert("RGB")
    bg = Image.open(bg_path)
    if bg.mode != "RGB":
        bg = bg.convert("RGB")
    bw, bh = bg.size
    wratio = w / bw
    hratio = h / bh
    ratio = wratio if wratio > hratio else hratio
    if ratio > 1:
        bg = bg.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)), Image.BICUBIC)
    bg = bg.crop((0, 0, w, h))
    fg_list = im.load()
    bg_list = bg.load()
    a_list = a.load()
    for y in range(h):
        for x in range(w):
            value = a_list[x, y]
            alpha = (value[0] if isinstance(value, tuple) else value) / 255
            if alpha >= 1:
                bg_list[x, y] = tuple(int(fg_list[x, y][c]) for c in range(3))
            elif alpha > 0:
                bg_list[x, y] = tuple(int(alpha * fg_list[x, y][c] + (1 - alpha) * bg_list[x, y][c]) for c in range(3))
    return np.asarray(bg)


# ----------------------------------------------------------------------------- Composition-1k
def test_compose_is_bit_exact_to_the_recipe_loop(tmp_path):
    test_set = build_mini_comp1k(tmp_path, fg_size=(18, 23))
    ds = load_dataset("comp1k", tmp_path)
    assert ds.layout == "compose"
    checked = 0
    sizes = set()
    for s in ds.samples[::3]:
        c = s.composition
        with Image.open(c.bg) as bg:
            sizes.add(("smaller" if bg.width < 23 or bg.height < 18 else "larger", bg.mode))
        expected = recipe_by_pixel_loop(c.fg, c.alpha, c.bg)
        np.testing.assert_array_equal(compose_files(c.fg, c.alpha, c.bg), expected)
        checked += 1
    assert checked >= 10
    assert {s for s, _ in sizes} == {"smaller", "larger"}  # upscaled and cropped backgrounds
    assert {m for _, m in sizes} == {"RGB", "L"}
    assert test_set.exists()


def test_compose_edge_rules():
    fg = np.full((4, 5, 3), 200, np.uint8)
    bg = np.full((6, 7, 3), 10, np.uint8)
    bg[0, 0] = (1, 2, 3)
    alpha = np.array([[0, 1, 128, 254, 255]] * 4, np.uint8)
    out = compose(fg, alpha, bg)
    assert out.shape == (4, 5, 3)
    assert out[0, 0].tolist() == [1, 2, 3]  # alpha 0 keeps the (top-left cropped) background
    a = 128 / 255
    assert out[1, 2, 0] == int(a * 200 + (1 - a) * 10)  # truncation
    assert out[1, 4].tolist() == [200, 200, 200]
    with pytest.raises(DatasetError):
        compose(fg, alpha, bg[:3])


def test_two_comp1k_layouts_give_identical_samples(tmp_path):
    build_mini_comp1k(tmp_path / "official")
    composed = load_dataset("comp1k", tmp_path / "official")
    assert composed.layout == "compose"
    assert len(composed) == len(FG_NAMES) * BGS_PER_FG
    assert composed.metric_mode == "unknown" and composed.exact_trimap
    names = [s.name for s in composed]
    assert names == sorted(names) and "glass_0" in names and "hair_19" in names

    assert export_prebuilt(composed, tmp_path / "prebuilt") == 3 * len(composed)
    assert export_prebuilt(composed, tmp_path / "prebuilt") == 0  # existing files are kept
    prebuilt = load_dataset("comp1k", tmp_path / "prebuilt")
    assert prebuilt.layout == "merged"
    assert [s.name for s in prebuilt] == names
    for a, b in zip(composed, prebuilt, strict=True):
        np.testing.assert_array_equal(a.load_image(), b.load_image())
        np.testing.assert_array_equal(a.load_alpha(), b.load_alpha())
        ta, tb = a.load_trimap(exact=True), b.load_trimap(exact=True)
        np.testing.assert_array_equal(ta[0], tb[0])
    # the composed float image is exactly what io.read_image gives for the PNG
    s = composed.samples[5]
    np.testing.assert_array_equal(s.load_image(), io.read_image(tmp_path / "prebuilt" / "merged" / f"{s.name}.png"))
    assert s.load_image().dtype == np.float32


def test_prebuilt_alpha_per_foreground_and_limit(tmp_path):
    build_mini_comp1k(tmp_path / "official")
    export_prebuilt(load_dataset("comp1k", tmp_path / "official"), tmp_path / "pre")
    # replace alpha_copy/ by alpha/ with one file per foreground (SIM's "alpha" folder style)
    for p in (tmp_path / "pre" / "alpha_copy").iterdir():
        p.unlink()
    (tmp_path / "pre" / "alpha_copy").rmdir()
    (tmp_path / "pre" / "alpha").mkdir()
    for fg in FG_NAMES:
        src = tmp_path / "official" / "Combined_Dataset" / "Test_set" / "Adobe-licensed images" / "alpha" / fg
        (tmp_path / "pre" / "alpha" / (fg[:-4] + ".png")).write_bytes(src.read_bytes())
    ds = load_dataset("comp1k", tmp_path / "pre", limit=3)
    assert len(ds) == 3
    assert ds[0].alpha.name == "glass.png" and ds[0].name == "glass_0"


def test_forced_layout_and_bg_dir(tmp_path):
    build_mini_comp1k(tmp_path)
    (tmp_path / "bg").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="background"):
        load_dataset("comp1k", tmp_path)
    ds = load_dataset("comp1k", tmp_path, layout="compose", bg_dir=tmp_path / "elsewhere")
    assert ds[0].composition.bg.parent == tmp_path / "elsewhere"
    with pytest.raises(DatasetError, match="merged"):
        load_dataset("comp1k", tmp_path, layout="merged")


def test_comp1k_layout_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("comp1k", tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as err:
        load_dataset("comp1k", tmp_path / "empty")
    assert "merged/" in err.value.message and "test_fg_names.txt" in err.value.message
    assert "is empty" in err.value.message

    # merged/ without trimaps: says what is missing and lists what is there
    bad = tmp_path / "bad"
    (bad / "merged").mkdir(parents=True)
    (bad / "alpha_copy").mkdir()
    (bad / "notes.txt").write_text("x")
    with pytest.raises(DatasetError) as err:
        load_dataset("comp1k", bad)
    assert "trimaps/" in err.value.message and "notes.txt" in (err.value.hint or "")

    # images without GT are listed
    img = np.zeros((4, 4, 3), np.uint8)
    for name in ("a", "b", "c"):
        cv2.imwrite(str(bad / "merged" / f"{name}.png"), img)
    (bad / "trimaps").mkdir()
    for name in ("a", "b", "c"):
        cv2.imwrite(str(bad / "trimaps" / f"{name}.png"), img[:, :, 0])
    cv2.imwrite(str(bad / "alpha_copy" / "a.png"), img[:, :, 0])
    with pytest.raises(DatasetError) as err:
        load_dataset("comp1k", bad)
    assert "2 of 3 images have no alpha" in err.value.message and "b, c" in err.value.message

    # official layout with a missing background
    build_mini_comp1k(tmp_path / "official")
    next((tmp_path / "official" / "bg").iterdir()).unlink()
    with pytest.raises(DatasetError, match="backgrounds"):
        load_dataset("comp1k", tmp_path / "official")


def test_unknown_dataset_and_bad_layout_option(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("coco", tmp_path)
    with pytest.raises(DatasetError):
        load_dataset("aim500", tmp_path, layout="compose")


# ----------------------------------------------------------------------------- other datasets
def _write_triplets(base: Path, names, *, image="image", alpha="alpha", trimap="trimap", size=(6, 8)):
    h, w = size
    for i, name in enumerate(names):
        rgb = np.full((h, w, 3), i * 10 % 256, np.uint8)
        a = np.zeros((h, w), np.uint8)
        a[:, w // 2 :] = 255
        a[:, w // 2 - 1] = 100
        for folder, arr, ext in ((image, rgb, ".jpg"), (alpha, a, ".png"), (trimap, _trimap_from(a), ".png")):
            if folder is None:
                continue
            (base / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(base / folder / f"{name}{ext}"), arr)


def test_aim500_types_and_categories(tmp_path):
    root = tmp_path / "AIM-500"
    _write_triplets(root, ["p_1", "p_2", "o_3"], image="original", alpha="mask", trimap="trimap")
    (root / "aim_category_type.json").write_text(
        json.dumps(
            {
                "p_1": {"type": "SO", "category": "portrait"},
                "p_2": {"type": "STM", "category": "animal"},
                "o_3": {"type": "NS", "category": "plant"},
            }
        )
    )
    ds = load_dataset("aim500", root)
    assert ds.metric_mode == "whole" and ds.group_keys == ("type", "category")
    groups = {s.name: s.groups for s in ds}
    assert groups["p_2"] == {"type": "STM", "category": "animal"}
    assert ds[0].category == "NS"
    assert all(s.trimap is not None for s in ds)
    # a validation/ sub-folder is found too; trimaps are optional for whole-image scoring
    _write_triplets(tmp_path / "x" / "validation", ["a"], image="original", alpha="mask", trimap=None)
    ds2 = load_dataset("aim500", tmp_path / "x")
    assert ds2[0].trimap is None and ds2[0].groups == {}


def test_am2k_and_errors(tmp_path):
    _write_triplets(tmp_path / "AM-2k" / "validation", ["m_1", "m_2"], image="original", alpha="mask")
    ds = load_dataset("am2k", tmp_path / "AM-2k")
    assert len(ds) == 2 and ds.metric_mode == "whole"
    (tmp_path / "x" / "original").mkdir(parents=True)
    with pytest.raises(DatasetError, match="mask/"):
        load_dataset("am2k", tmp_path / "x")
    with pytest.raises(DatasetError, match="original/"):
        load_dataset("aim500", tmp_path / "AM-2k" / "validation" / "mask")


def test_dist646_under_test_folder(tmp_path):
    _write_triplets(tmp_path / "Test", ["d_0", "d_1"], image="merged", alpha="GT", trimap="trimaps")
    ds = load_dataset("dist646", tmp_path)
    assert ds.metric_mode == "unknown" and [s.name for s in ds] == ["d_0", "d_1"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="FG/ and GT/ only"):
        load_dataset("dist646", tmp_path / "empty")


def test_simd_class_folders_and_flat_layout(tmp_path):
    for cls in ("fur", "net"):
        _write_triplets(tmp_path / "simd" / cls, [f"{cls}1_bg{k}" for k in range(2)], image="merged")
    ds = load_dataset("simd", tmp_path / "simd")
    assert ds.layout == "classes" and len(ds) == 4
    assert ds[0].name == "fur/fur1_bg0" and ds[0].groups == {"class": "fur"}
    assert {s.category for s in ds} == {"fur", "net"}

    _write_triplets(
        tmp_path / "flat", ["plant_leaf_x_1", "hair_easy_y_2"], image="merged", alpha="alpha_copy", trimap="trimaps"
    )
    flat = load_dataset("simd", tmp_path / "flat")
    assert flat.layout == "merged"
    assert {s.name: s.category for s in flat} == {"hair_easy_y_2": "hair_easy", "plant_leaf_x_1": "plant_leaf"}


def test_folder_layout_autodetect_and_explicit(tmp_path):
    _write_triplets(tmp_path / "f", ["x", "y"], image="images", alpha="masks", trimap="trimaps")
    ds = load_dataset("folder", tmp_path / "f")
    assert ds.metric_mode == "unknown" and not ds.exact_trimap and len(ds) == 2
    # explicit folder names, no trimaps: scored over the whole image
    _write_triplets(tmp_path / "g", ["x"], image="rgb_in", alpha="gt_out", trimap=None)
    ds2 = load_dataset("folder", tmp_path / "g", image_dir="rgb_in", alpha_dir=tmp_path / "g" / "gt_out")
    assert ds2.metric_mode == "whole" and ds2[0].trimap is None
    with pytest.raises(DatasetError) as err:
        load_dataset("folder", tmp_path / "g")
    assert "image folder" in err.value.message and "gt_out/" in err.value.message
    with pytest.raises(DatasetError, match="trimap folder"):
        load_dataset("folder", tmp_path / "f", trimap_dir="missing")


def test_folder_trimaps_are_normalised_but_dim_ones_exact(tmp_path):
    _write_triplets(tmp_path / "f", ["x"], image="images", alpha="alpha", trimap="trimaps")
    tri = np.array([[0, 102, 128, 255] * 2] * 6, np.uint8)
    cv2.imwrite(str(tmp_path / "f" / "trimaps" / "x.png"), tri)
    folder = load_dataset("folder", tmp_path / "f")
    metric_tri, model_tri = folder[0].load_trimap(exact=folder.exact_trimap)
    assert metric_tri[0].tolist() == [0, 128, 128, 255] * 2
    exact_tri, model_tri = folder[0].load_trimap(exact=True)
    assert exact_tri[0].tolist() == [0, 102, 128, 255] * 2  # DIM datasets: only 128 is unknown
    assert model_tri[0].tolist() == [0, 128, 128, 255] * 2


def test_alpha_is_loaded_exactly():
    a = np.arange(256, dtype=np.uint8).reshape(16, 16)
    as_read = a.astype(np.float32) / 255.0  # what io.read_gray returns for an 8-bit file
    np.testing.assert_array_equal(exact_uint(as_read), a)
    b = (np.arange(256, dtype=np.uint16) * 251).reshape(16, 16)
    np.testing.assert_array_equal(exact_uint(b.astype(np.float32) / 65535.0), b)
    soft = np.array([[0.1234567]], np.float32)
    assert exact_uint(soft).dtype == np.float32


def test_duplicate_stems_are_an_error(tmp_path):
    _write_triplets(tmp_path, ["x"], image="images", alpha="alpha", trimap=None)
    cv2.imwrite(str(tmp_path / "images" / "x.png"), np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="two files named x"):
        load_dataset("folder", tmp_path)
