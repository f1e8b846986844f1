"""``--method vitmatte`` end to end: equal to transformers' pipeline, tiles only around unknown pixels,
automatic trimaps when none is given, weights refused offline in one line, bench's published numbers.

The network is built with seeded random weights in the hub's key layout (``tests/test_vitmatte_net.py``'s
transformers model, copied strictly); the file is given with ``--weights`` (the hub's files are pinned
by sha256, so a random one cannot be imported as them: ``tests/test_weights_vitmatte.py`` covers that).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLES, invoke
from safetensors.torch import save_file

from mattecli import io, methods
from mattecli.methods.base import EngineOptions, MethodOptions

transformers = pytest.importorskip("transformers")

from test_auto_trimap import _aim_cache, aim_weights  # noqa: E402,F401  (fixtures: random AIM weights)
from test_vitmatte_net import _HUB_PROCESSOR, _hf_model  # noqa: E402


@pytest.fixture(scope="module")
def hub_model():
    return _hf_model("small", seed=3)


@pytest.fixture(scope="module")
def weights(hub_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("vitmatte") / "model.safetensors"
    save_file({k: t.contiguous() for k, t in hub_model.state_dict().items()}, str(path))
    return path


def _scene(h: int, w: int):
    image = cv2.resize(io.read_image(EXAMPLES / "images" / "fluffy.png"), (w, h), interpolation=cv2.INTER_AREA)
    trimap = cv2.resize(io.read_trimap(EXAMPLES / "trimaps" / "fluffy.png"), (w, h), interpolation=cv2.INTER_NEAREST)
    image8 = np.round(image * 255).astype(np.uint8)
    return image8, trimap


def _transformers_alpha(model, image8: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    processor = transformers.VitMatteImageProcessor(**_HUB_PROCESSOR)
    inputs = processor(images=image8, trimaps=trimap, return_tensors="pt")
    with torch.no_grad():
        alphas = model(**inputs).alphas
    h, w = trimap.shape
    return alphas[0, 0, :h, :w].numpy()


@pytest.mark.parametrize("size", [(97, 131), (181, 263)])
def test_matte_equals_transformers_pipeline(hub_model, weights, size):
    image8, trimap = _scene(*size)
    matter = methods.get("vitmatte").create(MethodOptions(device="cpu", weights=weights))
    result = matter.predict(image8.astype(np.float32) / 255.0, trimap)
    want = _transformers_alpha(hub_model, image8, trimap)
    unknown = (trimap != 0) & (trimap != 255)
    assert np.abs(result.alpha - np.clip(want, 0, 1))[unknown].max() <= 1e-5
    assert (result.alpha[trimap == 0] == 0).all() and (result.alpha[trimap == 255] == 1).all()
    assert result.plan["strategy"] == "whole" and matter.provenance.weights[0].path == weights


def test_tiles_run_only_around_unknown_pixels_and_come_close_to_the_whole_pass(weights):
    image8, trimap = _scene(320, 480)
    image = image8.astype(np.float32) / 255.0
    half = trimap.copy()
    half[:, :240] = np.where(half[:, :240] == 128, 0, half[:, :240])  # the left half: known pixels only
    engine = EngineOptions(strategy="tiled", tile_size=224, tile_overlap=32)

    def tiled(tri):
        matter = methods.get("vitmatte").create(MethodOptions(device="cpu", weights=weights, engine=engine))
        batches = []
        matter.processor.net.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
        return matter.predict(image, tri), sum(batches)

    full, ran_full = tiled(trimap)
    result, ran_half = tiled(half)
    assert full.plan["strategy"] == "tiled" and full.plan["tiles"] == ran_full and result.plan["tiles"] == ran_half
    assert 0 < ran_half < ran_full  # tiles holding only known pixels do not run
    whole = methods.get("vitmatte").create(MethodOptions(device="cpu", weights=weights)).predict(image, trimap)
    unknown = trimap == 128
    diff = np.abs(full.alpha - whole.alpha)[unknown]
    assert diff.mean() < 0.1  # random weights; bench/RESULTS.md measures tiles against the whole pass
    assert (result.alpha[half == 0] == 0).all() and (result.alpha[half == 255] == 1).all()


def test_a_large_image_tiles_under_a_cap_and_the_same_cap_plans_the_same(weights):
    image8, trimap = _scene(384, 512)
    image = image8.astype(np.float32) / 255.0
    fp = methods.get("vitmatte").variants[0].footprint
    from mattecli.runtime.memory import PLAN_MARGIN

    # a cap that holds the method, its full-size maps and a 400 x 400 px tile, not the whole pass
    cap = int(fp.fixed + fp.image_bytes() * 384 * 512 + fp.passes["whole"] * 400 * 400 / PLAN_MARGIN) + 1
    engine = EngineOptions(max_memory=cap)
    runs = [
        methods.get("vitmatte")
        .create(MethodOptions(device="cpu", weights=weights, engine=engine))
        .predict(image, trimap)
        for _ in range(2)
    ]
    assert runs[0].plan["strategy"] == "tiled" and runs[0].plan["tile"][0] * runs[0].plan["tile"][1] <= 400 * 400
    assert runs[0].plan == runs[1].plan and runs[0].alpha.tobytes() == runs[1].alpha.tobytes()


def test_no_trimap_predicts_it_with_aim_and_says_so(runner, tmp_path, weights, aim_weights):  # noqa: F811
    photos = tmp_path / "photos"
    for name in ("fluffy", "veil"):
        small = cv2.resize(cv2.imread(str(EXAMPLES / "images" / f"{name}.png")), (96, 64))
        photos.mkdir(exist_ok=True)
        cv2.imwrite(str(photos / f"{name}.png"), small)
    out = tmp_path / "out"
    done = invoke(
        runner, ["matte", "--method", "vitmatte", photos, out, "--weights", weights, "--json", "--save-trimap"]
    )
    assert done.exit_code == 0, done.output
    assert [line for line in done.stderr.splitlines() if line.startswith("note:")] == [
        "note: vitmatte needs a trimap and none was given: predicting each image's trimap with aim (--trimap auto); "
        "pass --trimap FILE_OR_FOLDER to use your own"
    ]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["strategy"] == "whole" for r in rows)
    for name in ("fluffy", "veil"):  # matted with the trimap AIM predicted
        alpha, tri = io.read_gray(out / f"{name}.png"), io.read_trimap(out / f"{name}_trimap.png")
        assert (alpha[tri == 0] == 0).all() and (alpha[tri == 255] == 1).all()


def test_offline_without_weights_is_one_line_before_any_image(runner, tmp_path):
    out = tmp_path / "o"
    done = invoke(runner, ["matte", "-m", "vitmatte", EXAMPLES / "images", out, "--trimap", EXAMPLES / "trimaps"])
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert "mattecli weights pull vitmatte-s-comp1k" in " ".join(done.stderr.split()) or "weights import" in done.stderr
    assert not out.exists() or not any(out.iterdir())


def test_bench_shows_the_variants_published_numbers():
    from mattecli.benchmark.reports import published_for

    small = published_for("vitmatte", "comp1k")
    base = published_for("vitmatte", "comp1k", "vitmatte-b-comp1k")
    assert [p.metrics["sad"] for p in small] == [21.46] and [p.metrics["sad"] for p in base] == [20.33]
    assert [p.metrics["sad"] for p in published_for("vitmatte", "dist646", "vitmatte-b-d646")] == [17.05]
    assert all("MATLAB" in p.note for p in small + base)
