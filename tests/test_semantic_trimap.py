"""Semantic trimaps: official patch grid, stitching, normalisation, writers, preview, the semantic-trimap command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import EXAMPLES
from test_sim import blob_trimap, import_into, install_weights, invoke, official_semantic, random_net
from test_sim import save_official_classifier as _save_classifier

from mattecli import io
from mattecli.methods.sim.net import SIMClassifier
from mattecli.methods.sim.semantic import (
    CLASS_NAMES,
    KNOWN_INDEX,
    PALETTE,
    PatchAnalyzer,
    SemanticTrimap,
    class_index,
    class_shares,
    encode_scores,
    normalize_scores,
    parse_patch_sizes,
    patch_boxes,
    patch_span,
    patch_starts,
    read_semantic_trimap,
    render_preview,
    stitch_cams,
)


class _TinyCam:
    """A cheap, position-dependent stand-in classifier: 1x1 conv to 20 classes, 32x32 average pooling."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.weight = torch.randn(20, 4, 1, 1, generator=g)
        self.inputs: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(tuple(x.shape))
        return F.avg_pool2d(F.conv2d(x, self.weight), 32, ceil_mode=True)


def _tensors(h: int, w: int, trimap: np.ndarray, seed: int = 0):
    image_n = torch.from_numpy(np.random.default_rng(seed).normal(size=(1, 3, h, w)).astype(np.float32))
    return image_n, torch.from_numpy(trimap.astype(np.float32))[None, None]


# ----------------------------------------------------------------------------- patch grid (sim.md 4.3)
@pytest.mark.parametrize(
    "size,step,spans",
    [
        (328, 320, [(0, 320), (8, 328)]),
        (1000, 800, [(0, 800), (200, 1000)]),
        (320, 320, [(0, 320)]),
        (600, 800, [(400, 600)]),  # negative start: Python slicing keeps only the last 2*600-800 rows
        (312, 320, [(304, 312)]),
        (100, 320, [(0, 100)]),
        (700, 320, [(0, 320), (160, 480), (320, 640), (380, 700)]),
    ],
)
def test_patch_grid_follows_python_slicing(size, step, spans):
    got = [patch_span(s, step, size) for s in patch_starts(size, step)]
    assert got == spans
    axis = np.arange(size)
    for s, (lo, hi) in zip(patch_starts(size, step), got, strict=True):
        sl = axis[s : s + step]  # what the official code selects
        assert (sl[0], sl[-1] + 1) == (lo, hi)


def test_all_unknown_600x1000_gives_the_patches_of_the_digest():
    # sim.md 11: 18 patches of 320x320 and two 200x800 patches (rows 400..600) in the 800 pass
    assert len(patch_boxes(600, 1000, 320)) == 18
    assert patch_boxes(600, 1000, 800) == [(400, 600, 0, 800), (400, 600, 200, 1000)]
    cam = _TinyCam()
    image_n, trimap = _tensors(600, 1000, np.full((600, 1000), 128, np.uint8))
    stitch_cams(cam, image_n, trimap, batch_size=5)
    assert cam.inputs == [(5, 4, 320, 320)] * 3 + [(3, 4, 320, 320), (2, 4, 200, 800)]


# ----------------------------------------------------------------------------- stitching and normalisation
def test_stitching_a_constant_field_gives_back_the_constant():
    def constant(x):
        return torch.full((x.shape[0], 20, 3, 5), 0.37)

    tri = np.zeros((500, 900), np.uint8)
    tri[100:110, 50:850] = 128
    image_n, trimap = _tensors(500, 900, tri)
    cam, count = stitch_cams(constant, image_n, trimap, patch_sizes=(320, 800), batch_size=3)
    covered = count[0, 0] > 0
    assert covered.any() and covered[100:110, 50:850].all()
    torch.testing.assert_close(cam[0][:, covered], torch.full((20, int(covered.sum())), 0.37))
    assert (cam[0][:, ~covered] == 0).all() and int(count.max()) > 1  # overlaps were averaged


def test_stitch_and_normalise_match_the_official_loop_at_any_batch_size():
    rng = np.random.default_rng(4)
    tri = np.zeros((352, 856), np.uint8)
    tri[rng.random(tri.shape) < 0.002] = 128
    tri[:100, :200] = 0  # patches without unknown pixels are skipped
    tri[200:220, 300:700] = 255
    tri[200:205, 300:700] = 128
    image_n, trimap = _tensors(352, 856, tri, seed=5)
    expected = official_semantic(_TinyCam(1), image_n, trimap)
    for batch_size in (1, 4, 64):
        cam = _TinyCam(1)
        got = normalize_scores(stitch_cams(cam, image_n, trimap, batch_size=batch_size)[0], trimap)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert 0.0 <= float(got.min()) and float(got.max()) <= 1.0 and (got[0][:, tri != 128] == 0).all()


def test_normalisation_is_one_global_min_max():
    cam = torch.tensor([[[[1.0, 3.0], [5.0, -1.0]], [[0.0, 2.0], [9.0, 4.0]]]])  # (1,2,2,2)
    trimap = torch.tensor([[[[128.0, 128.0], [0.0, 128.0]]]])
    got = normalize_scores(cam, trimap)
    expected = (cam + 1.0) / 10.0 * torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(got, expected)
    assert (normalize_scores(torch.ones(1, 20, 4, 4), torch.full((1, 1, 4, 4), 128.0)) == 0).all()  # no NaN


# ----------------------------------------------------------------------------- results and writers
def _semantic(h: int = 40, w: int = 60, seed: int = 0) -> SemanticTrimap:
    tri = blob_trimap(h, w)
    scores = np.zeros((20, h, w), np.float32)
    scores[[2, 5, 13, 18]] = np.random.default_rng(seed).random((4, h, w))  # fur, hair_hard, sharp, water_drop
    scores[:, tri != 128] = 0
    scores[5, :, : w // 2] += 2.0  # hair_hard wins the left half
    scores[5, tri != 128] = 0
    return SemanticTrimap(scores, tri)


def test_class_index_and_shares():
    st = _semantic()
    idx = class_index(st)
    assert idx.dtype == np.uint8 and (idx[st.trimap != 128] == KNOWN_INDEX).all()
    np.testing.assert_array_equal(idx[st.unknown], st.scores[:, st.unknown].argmax(axis=0))
    assert (idx[:, :30][st.unknown[:, :30]] == CLASS_NAMES.index("hair_hard")).all()
    shares = class_shares(st)
    assert next(iter(shares)) == "hair_hard" and abs(sum(shares.values()) - 1.0) < 1e-3
    ties = SemanticTrimap(np.zeros((20, 2, 2), np.float32), np.full((2, 2), 128, np.uint8))
    assert (class_index(ties) == 0).all()


def test_scores_file_round_trip(tmp_path):
    st = _semantic()
    path = tmp_path / "x_semantic.safetensors"
    io.atomic_write_bytes(path, encode_scores(st, {"source": "x.png"}))
    back, meta = read_semantic_trimap(path)
    np.testing.assert_array_equal(back.scores, st.scores)
    np.testing.assert_array_equal(back.trimap, st.trimap)
    assert back.scores.dtype == np.float32 and back.trimap.dtype == np.uint8
    assert json.loads(meta["classes"]) == list(CLASS_NAMES) and meta["source"] == "x.png"
    assert meta["class_index_known_value"] == "255"


def test_preview_dims_the_image_colours_the_unknown_region_and_has_a_legend():
    st = _semantic(200, 240)
    image = np.full((200, 240, 3), 0.8, np.float32)
    pic = render_preview(image, st)
    assert pic.dtype == np.uint8 and pic.shape[0] == 200 and pic.shape[1] > 240 + 100
    assert len(class_shares(st)) == 4
    assert (pic[:200, :240][st.trimap == 0] < 0.8 * 255).all()  # dimmed
    idx = class_index(st)
    for i in np.unique(idx[st.unknown]):  # unknown pixels carry their class colour
        blend = np.round(0.8 * 255 * 0.3 + np.array(PALETTE[i]) * 0.7)
        sel = (idx == i) & st.unknown
        np.testing.assert_allclose(pic[:200, :240][sel], np.broadcast_to(blend, (int(sel.sum()), 3)), atol=1)
    legend = pic[:, 240:].reshape(-1, 3)
    for name in class_shares(st):  # a swatch of every class present
        assert (legend == np.array(PALETTE[CLASS_NAMES.index(name)], np.uint8)).all(axis=1).sum() >= 25
    absent = [i for i in range(20) if CLASS_NAMES[i] not in class_shares(st)]
    assert not (legend == np.array(PALETTE[absent[0]], np.uint8)).all(axis=1).any()


def test_parse_patch_sizes():
    assert parse_patch_sizes(None) == (320, 800) and parse_patch_sizes("800") == (800,)
    assert parse_patch_sizes("320, 800") == (320, 800)
    for bad in ("", "a,b", "0", "-320"):
        with pytest.raises(ValueError):
            parse_patch_sizes(bad)


def test_analyzer_with_the_real_classifier_matches_the_official_loop():
    from mattecli.methods.base import IMAGENET
    from mattecli.runtime.tensors import image_to_tensor

    clf = random_net(SIMClassifier(), 7)
    rng = np.random.default_rng(8)
    image = rng.random((67, 93, 3)).astype(np.float32)
    tri = blob_trimap(67, 93)
    st = PatchAnalyzer(clf, torch.device("cpu"), batch_size=2).analyze(image, tri)
    padded = cv2.copyMakeBorder(image, 0, 5, 0, 3, cv2.BORDER_REFLECT)
    padded_tri = cv2.copyMakeBorder(tri, 0, 5, 0, 3, cv2.BORDER_REFLECT)
    image_n = image_to_tensor(padded, torch.device("cpu"), IMAGENET.mean, IMAGENET.std)
    with torch.no_grad():
        expected = official_semantic(lambda x: clf(x)[1], image_n, torch.from_numpy(padded_tri)[None, None].float())
    assert st.scores.shape == (20, 67, 93) and st.scores.dtype == np.float32
    np.testing.assert_allclose(st.scores, expected[0, :, :67, :93].numpy(), atol=1e-5)
    np.testing.assert_array_equal(st.trimap, tri)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_classifier")
    path = _save_classifier(random_net(SIMClassifier(), 9), root / "classifier_resnet50_best.pth.tar")
    return import_into(root, {"sim-classifier": path}), path


def test_cli_semantic_trimap_on_the_examples(tmp_path, classifier_file):
    install_weights(classifier_file[0], ("sim-classifier",))
    out = tmp_path / "out"
    args = ["semantic-trimap", EXAMPLES / "images", out, "--trimap", EXAMPLES / "trimaps", "--preview", "--json"]
    result = invoke(args + ["--device", "cpu", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["output"] == str(out / "fluffy_semantic.safetensors")
    for row, name in zip(rows, ("fluffy", "veil"), strict=True):
        tri = io.read_trimap(EXAMPLES / "trimaps" / f"{name}.png")
        st, meta = read_semantic_trimap(out / f"{name}_semantic.safetensors")
        assert st.scores.shape == (20, 320, 320) and meta["patch_sizes"] == "320,800"
        np.testing.assert_array_equal(st.trimap, tri)
        assert (st.scores[:, tri != 128] == 0).all() and 0 <= st.scores.min() and st.scores.max() <= 1
        classes = cv2.imread(str(out / f"{name}_classes.png"), cv2.IMREAD_UNCHANGED)
        assert classes.dtype == np.uint8 and classes.shape == (320, 320)
        np.testing.assert_array_equal(classes, class_index(st))
        preview = io.read_image(out / f"{name}_preview.png")
        assert preview.shape[0] == 320 and preview.shape[1] > 320
        # the shares of the classes the written maps hold, largest first, summing to one
        assert row["classes"] == class_shares(st) and list(row["classes"])[0] in CLASS_NAMES
        assert sum(row["classes"].values()) == pytest.approx(1.0, abs=len(row["classes"]) * 5e-5)
        assert row["unknown_fraction"] == round(float((tri == 128).mean()), 4)
    # a second run skips everything
    again = invoke(args)
    assert again.exit_code == 0 and [json.loads(x)["status"] for x in again.stdout.splitlines()] == ["skipped"] * 2


def test_cli_single_file_outputs_stdin_and_weights_override(tmp_path, classifier_file):
    image, tri = EXAMPLES / "images" / "veil.png", EXAMPLES / "trimaps" / "veil.png"
    # --weights takes the official file directly (no import needed); sizes reduced to keep the test fast
    common = ["--trimap", tri, "--weights", classifier_file[1], "--patch-sizes", "800", "-q"]
    result = invoke(["semantic-trimap", image, tmp_path / "a" / "veil_map.png", "--no-scores"] + common)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["veil_map.png"]
    result = invoke(["semantic-trimap", image, tmp_path / "b" / "v.safetensors", "--preview"] + common)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["v.safetensors", "v_classes.png", "v_preview.png"]
    # "-" reads paths from stdin
    from test_sim import cli_app
    from typer.testing import CliRunner

    folder = tmp_path / "c"
    shutil.copy(image, tmp_path / "veil.png")
    res = CliRunner().invoke(
        cli_app(), ["semantic-trimap", "-", str(folder)] + [str(a) for a in common], input=f"{tmp_path / 'veil.png'}\n"
    )
    assert res.exit_code == 0, res.output
    assert (folder / "veil_semantic.safetensors").exists() and (folder / "veil_classes.png").exists()


def test_cli_semantic_trimap_shards_and_exit_1_for_a_bad_input(tmp_path, classifier_file):
    """--shard K/N splits the inputs (disjoint, complete); an unreadable image among good ones is that
    file's error: the others of its shard are written and that shard's exit code is 1."""
    from conftest import synthetic_scene, write_gray, write_rgb

    install_weights(classifier_file[0], ("sim-classifier",))
    names = [f"s{i}" for i in range(6)]
    for i, name in enumerate(names):
        image, _, tri = synthetic_scene(40, 56, seed=i)
        write_rgb(tmp_path / "images" / f"{name}.png", image)
        write_gray(tmp_path / "trimaps" / f"{name}.png", tri)
    (tmp_path / "images" / "s2.png").write_bytes(b"\x89PNG\r\n\x1a\ncorrupt")
    args = ["semantic-trimap", tmp_path / "images", tmp_path / "out", "-t", tmp_path / "trimaps"]
    args += ["--patch-sizes", "800", "--device", "cpu", "--no-scores", "--json"]
    parts = []
    for k in (1, 2, 3):
        result = invoke([*args, "--shard", f"{k}/3"])
        rows = {Path(r["input"]).stem: r for r in map(json.loads, result.stdout.splitlines())}
        assert set(rows) == {n for n in names if io.in_shard(f"{n}.png", (k, 3))}
        if "s2" in rows:
            assert result.exit_code == 1, result.output
            assert rows["s2"]["status"] == "error" and "not a readable image" in rows["s2"]["error"]
            assert "Traceback" not in result.output
        else:
            assert result.exit_code == 0, result.output
        assert all(r["status"] == "ok" for n, r in rows.items() if n != "s2")
        parts.append(set(rows))
    assert sum(map(len, parts)) == len(names) and set().union(*parts) == set(names)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{n}_classes.png" for n in names if n != "s2")


def test_cli_semantic_trimap_without_weights_says_how_to_import(tmp_path):
    out = tmp_path / "out"
    result = invoke(["semantic-trimap", EXAMPLES / "images", out, "-t", EXAMPLES / "trimaps"])
    assert result.exit_code == 2
    assert "mattecli weights import sim-classifier" in result.stderr and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_cli_semantic_trimap_usage_errors(tmp_path):
    images, trimaps = EXAMPLES / "images", EXAMPLES / "trimaps"
    assert invoke(["semantic-trimap", images, tmp_path / "o"]).exit_code == 2  # --trimap is required
    result = invoke(["semantic-trimap", images, tmp_path / "o", "-t", trimaps, "--patch-sizes", "x"])
    assert result.exit_code == 2 and "patch sizes" in result.stderr
    result = invoke(["semantic-trimap", images, tmp_path / "o.safetensors", "-t", trimaps])
    assert result.exit_code == 2 and "looks like a file" in result.stderr
    result = invoke(["semantic-trimap", images, tmp_path / "o", "-t", tmp_path / "missing"])
    assert result.exit_code == 2 and "trimap not found" in result.stderr
