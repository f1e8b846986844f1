"""``--trimap auto``: a trimap method (AIM's glance, SHM's T-Net) predicts each trimap, a trimap-based
method mattes with it in the same run; ``predict_trimap`` equals the trimap ``process`` returns.

Networks have random weights calibrated to unit activations (``helpers.calibrate``), so their
trimaps hold background, unknown and foreground; they are imported into private HF caches as the
authors' checkpoints would be. Images are small (64 px) to keep the suite fast.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLES, invoke
from helpers import calibrate, make_context, matter
from test_aim import _random_net as _aim_net
from test_aim import official_state_dict
from test_shm import MS_FILENAME, _ms_net, write_official_ckpt

from mattecli import io, methods
from mattecli.errors import TrimapError
from mattecli.methods.aim.processor import AimProcessor
from mattecli.methods.base import IMAGENET, MethodSpec, Prediction
from mattecli.methods.shm import processor as shm
from mattecli.runtime import tensors


def _small(name: str, size=(64, 64)) -> np.ndarray:
    return cv2.resize(io.read_image(EXAMPLES / "images" / f"{name}.png"), size[::-1], interpolation=cv2.INTER_AREA)


def _calibrated_shm(seed: int = 4):
    net = _ms_net(seed)
    x = torch.from_numpy(shm.encode(shm.resize_8bit(io.read_image(EXAMPLES / "images" / "fluffy.png"), 320), "mindspore"))
    return calibrate(net, x.permute(2, 0, 1)[None])


def _calibrated_aim(seed: int = 2):
    torch.manual_seed(seed)  # the convolutions' initial weights too (random_net seeds only the batch norms)
    net = _aim_net(seed)
    x = tensors.image_to_tensor(_small("fluffy", (96, 96)), torch.device("cpu"), IMAGENET.mean, IMAGENET.std)
    return calibrate(net, x)


def _import_into(root: Path, variant: str, path: Path) -> Path:
    from huggingface_hub import constants as hf_constants

    from mattecli.weights import import_checkpoint

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(root / "hub"))
        import_checkpoint(variant, path)
    return root / "hub"


@pytest.fixture(scope="module")
def _shm_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("shm_weights")
    return _import_into(root, "shm-mindspore", write_official_ckpt(root / MS_FILENAME, _calibrated_shm()))


@pytest.fixture(scope="module")
def _aim_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("aim_weights")
    path = root / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": official_state_dict(_calibrated_aim())}, path)
    return _import_into(root, "aim", path)


def _use_cache(monkeypatch, cache: Path) -> None:
    from huggingface_hub import constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))


@pytest.fixture
def shm_weights(_shm_cache, monkeypatch):
    _use_cache(monkeypatch, _shm_cache)


@pytest.fixture
def aim_weights(_aim_cache, monkeypatch):
    _use_cache(monkeypatch, _aim_cache)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Three small photos (64 px) in one folder."""
    folder = tmp_path_factory.mktemp("photos")
    for name, image in (
        ("fluffy", _small("fluffy")),
        ("veil", _small("veil", (48, 64))),
        ("mirrored", _small("fluffy")[:, ::-1]),
    ):
        cv2.imwrite(str(folder / f"{name}.png"), np.round(image[:, :, ::-1] * 255).astype(np.uint8))
    return folder


STEMS = ("fluffy", "mirrored", "veil")


# ----------------------------------------------------------------------------- predict_trimap == process().trimap
@pytest.mark.parametrize("strategy", ["resize", "paper", "whole", "tiled"])
def test_shm_predict_trimap_is_the_t_net_trimap_of_process(strategy):
    net = _calibrated_shm()
    proc = shm.ShmProcessor(net, make_context(), strategy, "mindspore")
    for image in (_small("fluffy", (48, 64)), _small("veil", (37, 53))):
        trimap = proc.predict_trimap(image)
        assert trimap.dtype == np.uint8 and trimap.shape == image.shape[:2]
        np.testing.assert_array_equal(trimap, proc.process(image).trimap)
    assert set(np.unique(trimap)) == {0, 128, 255}  # the calibrated net predicts all three regions


@pytest.mark.parametrize("strategy", ["hybrid", "resize", "whole"])
def test_aim_predict_trimap_is_the_glance_trimap_of_process(strategy):
    proc = AimProcessor(_calibrated_aim(), make_context(), strategy)
    image = _small("veil", (64, 80))
    trimap = proc.predict_trimap(image)
    np.testing.assert_array_equal(trimap, proc.process(image).trimap)
    assert set(np.unique(trimap)) == {0, 128, 255}


def test_matter_predict_trimap_falls_back_to_process_and_refuses_methods_that_predict_none():
    class Whole:
        calls = 0

        def process(self, image, trimap, *, extras=False):
            Whole.calls += 1
            tri = np.full(image.shape[:2], 128, np.uint8)
            tri[:, :3] = 0
            return Prediction(np.zeros(image.shape[:2], np.float32), tri)

    m = matter("shm", Whole())
    image = np.zeros((5, 7, 3), np.float32)
    assert m.predict_trimap(image)[:, :3].max() == 0 and Whole.calls == 1
    with pytest.raises(TrimapError, match="predicts no trimap"):
        matter("cf", Whole()).predict_trimap(image)


# ----------------------------------------------------------------------------- the CLI
def _count_creates(monkeypatch) -> dict[str, int]:
    """How many times each method is built (``MethodSpec.create``) and its processor loaded (``spec.load``)."""
    counts: dict[str, int] = {}
    real = MethodSpec.create

    def create(self, options=None):
        counts[self.name] = counts.get(self.name, 0) + 1
        return real(self, options)

    monkeypatch.setattr(MethodSpec, "create", create)
    for mod in ("mattecli.methods.shm.processor", "mattecli.methods.aim.processor", "mattecli.methods.classical.processor"):
        module = __import__(mod, fromlist=["load"])
        if hasattr(module, "load"):
            real_load = module.load

            def load(resolved, _real=real_load):
                key = f"load:{resolved.spec.name}"
                counts[key] = counts.get(key, 0) + 1
                return _real(resolved)

            monkeypatch.setattr(module, "load", load)
    return counts


def _check_auto_run(runner, tmp_path, photos, trimap_method: list[str], counts: dict[str, int], predictor: str):
    auto = tmp_path / "auto"
    result = invoke(runner, ["matte", "-m", "cf", photos, auto, "--trimap", "auto", *trimap_method, "--save-trimap", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok"] * 3
    # the two-model run builds each model once for the three images
    assert counts == {predictor: 1, "cf": 1, f"load:{predictor}": 1, "load:cf": 1}
    levels = set()
    for stem in STEMS:
        alpha = cv2.imread(str(auto / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        trimap = cv2.imread(str(auto / f"{stem}_trimap.png"), cv2.IMREAD_UNCHANGED)
        assert alpha.shape == trimap.shape and set(np.unique(trimap)) <= {0, 128, 255}
        levels |= set(np.unique(trimap).tolist())
        assert (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 255).all()
    assert levels == {0, 128, 255}

    # the same as predicting the trimaps first, then matting with them: byte for byte
    tris = tmp_path / "tris"
    result = invoke(runner, ["trimap", "--from-image", photos, tris, *(["--method", predictor])])
    assert result.exit_code == 0, result.output
    chained = tmp_path / "chained"
    result = invoke(runner, ["matte", "-m", "cf", photos, chained, "--trimap", tris])
    assert result.exit_code == 0, result.output
    for stem in STEMS:
        assert (tris / f"{stem}.png").read_bytes() == (auto / f"{stem}_trimap.png").read_bytes()
        assert (chained / f"{stem}.png").read_bytes() == (auto / f"{stem}.png").read_bytes()


def test_cf_with_shm_trimaps_is_0_1_where_known_and_equals_the_two_command_chain(
    runner, tmp_path, photos, shm_weights, monkeypatch
):
    counts = _count_creates(monkeypatch)
    _check_auto_run(runner, tmp_path, photos, ["--trimap-method", "shm"], counts, "shm")


def test_cf_with_the_default_aim_trimaps_equals_the_two_command_chain(runner, tmp_path, photos, aim_weights, monkeypatch):
    counts = _count_creates(monkeypatch)
    _check_auto_run(runner, tmp_path, photos, [], counts, "aim")


def test_both_methods_weights_are_fetched_before_the_first_image(runner, tmp_path, photos, shm_weights, monkeypatch):
    import mattecli.weights as weights

    events = []
    real_prefetch, real_create = weights.prefetch, MethodSpec.create
    monkeypatch.setattr(weights, "prefetch", lambda names, **kw: (events.append(tuple(names)), real_prefetch(names, **kw))[1])
    monkeypatch.setattr(
        MethodSpec, "create", lambda self, o=None: (events.append(f"create {self.name}"), real_create(self, o))[1]
    )
    monkeypatch.setattr(io, "read_image", lambda *a, _r=io.read_image, **k: (events.append("read"), _r(*a, **k))[1])
    result = invoke(runner, ["matte", "-m", "knn", photos, tmp_path / "o", "--trimap", "auto", "--trimap-method", "shm"])
    assert result.exit_code == 0, result.output
    first_read = events.index("read")
    assert ("shm-mindspore",) in events[:first_read] and () in events[:first_read]  # knn loads no weights
    assert events.count("create shm") == 1 and events.count("create knn") == 1


def test_save_trimap_and_preview_show_the_predicted_trimap(runner, tmp_path, photos, shm_weights):
    out = tmp_path / "o"
    args = ["matte", "-m", "cf", photos / "veil.png", out, "-t", "auto", "--trimap-method", "shm", "--save-trimap", "--preview"]
    result = invoke(runner, args)
    assert result.exit_code == 0, result.output
    trimap = io.read_trimap(out / "veil_trimap.png")
    preview = cv2.imread(str(out / "veil_preview.png"))[:, :, ::-1]
    from mattecli.preview import layout, resize_panel

    lay = layout(48, 64, 4)
    assert preview.shape == (lay.height, lay.total_width, 3)
    panel = preview[:, lay.x[1] : lay.x[1] + lay.width, 0]
    np.testing.assert_array_equal(panel, resize_panel(trimap, (lay.height, lay.width), nearest=True))


def test_semantic_trimap_auto_analyses_the_predicted_trimap(runner, tmp_path, photos, shm_weights):
    """SIM's patch classifier (random weights, the authors' file format given with --weights) on the trimap
    SHM's T-Net predicts: the stored trimap is that prediction, also written by --save-trimap."""
    from test_sim import save_official_classifier

    from mattecli.methods.sim.semantic import read_semantic_trimap

    clf = save_official_classifier(_random_clf(), tmp_path / "classifier_resnet50_best.pth.tar")
    out = tmp_path / "sem"
    args = ["semantic-trimap", photos / "veil.png", out, "--trimap", "auto", "--trimap-method", "shm", "--save-trimap",
            "--weights", clf, "--device", "cpu", "--patch-sizes", "320", "--json"]  # fmt: skip
    result = invoke(runner, args)
    assert result.exit_code == 0, result.output
    spec = methods.get("shm")
    direct = spec.create(spec.resolve(None)).predict_trimap(io.read_image(photos / "veil.png"))
    np.testing.assert_array_equal(io.read_trimap(out / "veil_trimap.png"), direct)
    st, meta = read_semantic_trimap(out / "veil_semantic.safetensors")
    np.testing.assert_array_equal(st.trimap, direct)
    assert meta["trimap"] == "predicted by shm"


def _random_clf():
    from helpers import random_net

    from mattecli.methods.sim.net import SIMClassifier

    return random_net(SIMClassifier(), 2)


# ----------------------------------------------------------------------------- usage errors, before any work
@pytest.mark.parametrize(
    "args, message",
    [
        # no --trimap: auto, said in one note; offline without AIM's weights that is one line, before any image
        (["-m", "sim"], "note: sim needs a trimap and none was given: predicting each image's trimap with aim"),
        (["-m", "cf"], "mattecli weights import aim"),
        (["-m", "aim", "--trimap", "auto"], "method aim is trimap-free and takes no trimap, predicted or given"),
        (["-m", "cf", "--trimap", "auto", "--trimap-method", "cf"], "--trimap-method cf predicts no trimap"),
        (["-m", "cf", "--trimap", "auto", "--trimap-method", "nope"], "nope"),
        (["-m", "cf", "--trimap", EXAMPLES / "trimaps", "--trimap-method", "shm"], "--trimap-method applies only with"),
        (["-m", "aim", "--trimap-method", "shm"], "--trimap-method applies only with --trimap auto"),
        (["-m", "cf", "--trimap", "auto", "--trimap-method", "shm", "--trimap-variant", "x"], "--trimap-variant of method shm"),
        (["-m", "cf", "--trimap", EXAMPLES / "trimaps", "--save-trimap"], "with --trimap auto, --save-trimap writes"),
    ],
)
def test_bad_combinations_are_usage_errors_before_any_image(runner, tmp_path, args, message):
    out = tmp_path / "out"
    result = invoke(runner, ["matte", EXAMPLES / "images", out, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split()) and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_semantic_trimap_without_a_trimap_names_trimap_auto(runner, tmp_path):
    result = invoke(runner, ["semantic-trimap", EXAMPLES / "images", tmp_path / "o"])
    assert result.exit_code == 2 and "--trimap auto" in result.stderr


def test_no_trimap_means_auto_with_one_note(runner, tmp_path, photos, aim_weights):
    """A trimap-based method run on photos alone predicts the trimaps (AIM's glance), says so once, and
    writes what ``--trimap auto`` writes; ``--quiet`` drops the note."""
    plain = invoke(runner, ["matte", "-m", "cf", photos, tmp_path / "plain", "--json"])
    assert plain.exit_code == 0, plain.output
    notes = [line for line in plain.stderr.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: cf needs a trimap and none was given: predicting each image's trimap with aim (--trimap auto); "
        "pass --trimap FILE_OR_FOLDER to use your own"
    ]
    assert [json.loads(line)["status"] for line in plain.stdout.splitlines()] == ["ok"] * 3
    auto = invoke(runner, ["matte", "-m", "cf", photos, tmp_path / "auto", "--trimap", "auto", "--quiet"])
    assert auto.exit_code == 0 and "note:" not in auto.stderr
    for stem in STEMS:
        assert (tmp_path / "plain" / f"{stem}.png").read_bytes() == (tmp_path / "auto" / f"{stem}.png").read_bytes()


def test_a_folder_named_auto_is_still_a_folder(runner, tmp_path, monkeypatch):
    from mattecli.cli.matte import split_trimap

    assert split_trimap("auto", None, None) == (None, "aim")
    assert split_trimap("AUTO", "shm", None) == (None, "shm")
    assert split_trimap("./auto", None, None) == (Path("auto"), None)
    assert split_trimap(None, None, None) == (None, None)
    assert split_trimap(None, None, None, needs_trimap="cf", quiet=True) == (None, "aim")
    assert split_trimap(None, "shm", None, needs_trimap="cf", quiet=True) == (None, "shm")


def test_offline_without_the_trimap_methods_weights_is_one_line_before_any_image(runner, tmp_path, photos):
    result = invoke(runner, ["matte", "-m", "cf", photos, tmp_path / "o", "--trimap", "auto"])
    assert result.exit_code == 2
    assert "aim" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_first_use_fetches_the_trimap_methods_weights(tmp_path):
    """A fresh machine: `matte -m cf --trimap auto --trimap-method shm` downloads SHM first, then mattes."""
    from drive_server import FakeDrive
    from test_first_use import fresh_env, manifest_with, run

    checkpoint = write_official_ckpt(tmp_path / MS_FILENAME, _calibrated_shm()).read_bytes()
    image = tmp_path / "in" / "veil.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.round(_small("veil")[:, :, ::-1] * 255).astype(np.uint8))
    with FakeDrive() as server:
        url = server.add_plain(MS_FILENAME, checkpoint)
        manifest = manifest_with(tmp_path, url, hashlib.sha256(checkpoint).hexdigest())
        done = run(
            ["matte", "-m", "cf", image, tmp_path / "out", "--trimap", "auto", "--trimap-method", "shm", "--json"],
            fresh_env(tmp_path / "home", manifest),
        )
    assert done.returncode == 0, done.stderr
    assert "downloading shm-mindspore" in done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["ok"]


def test_one_worker_per_device_gives_the_local_outputs(runner, tmp_path, photos, _shm_cache, monkeypatch):
    """``--trimap auto`` is settings: the device workers (spawned processes) run it as the local path does."""
    import os
    import subprocess
    import sys

    _use_cache(monkeypatch, _shm_cache)
    local = tmp_path / "local"
    args = ["matte", "-m", "cf", photos, "--trimap", "auto", "--trimap-method", "shm", "--save-trimap"]
    assert invoke(runner, [*args[:4], local, *args[4:]]).exit_code == 0
    env = {**os.environ, "HF_HUB_CACHE": str(_shm_cache), "MATTECLI_OFFLINE": "1"}
    multi = tmp_path / "multi"
    proc = subprocess.run(
        [sys.executable, "-m", "mattecli", *map(str, [*args[:4], multi, *args[4:], "--device", "cpu,cpu", "--json"])],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(line)["status"] for line in proc.stdout.splitlines()) == ["ok"] * 3
    for stem in STEMS:
        for name in (f"{stem}.png", f"{stem}_trimap.png"):
            assert (multi / name).read_bytes() == (local / name).read_bytes()


def test_sim_runs_fully_automatically(runner, tmp_path, photos, _shm_cache):
    """SIM on a photo alone: SHM's predicted trimap, SIM's semantic trimap, its matting network; the same
    bytes as `trimap --from-image` then `matte --trimap` (random SIM weights, the authors' file formats)."""
    from test_sim import SIMClassifier, SIMNet, import_into, install_weights, random_net, save_official_classifier
    from test_sim import save_official_matting

    root = tmp_path / "sim_weights"
    root.mkdir()
    hub = import_into(root, {
        "sim-comp1k": save_official_matting(random_net(SIMNet(), 1), root / "ckpt_best.pth"),
        "sim-classifier": save_official_classifier(random_net(SIMClassifier(), 2), root / "classifier_resnet50_best.pth.tar"),
    })  # fmt: skip
    install_weights(hub, ("sim-comp1k", "sim-classifier"))
    install_weights(_shm_cache, ("shm-mindspore",))
    image = photos / "fluffy.png"
    auto = tmp_path / "auto"
    common = ["--method", "sim", "--device", "cpu", "--bit-depth", "16"]
    result = invoke(runner, ["matte", image, auto, *common, "--trimap", "auto", "--trimap-method", "shm", "--save-trimap"])
    assert result.exit_code == 0, result.output
    tri = tmp_path / "tri.png"
    assert invoke(runner, ["trimap", "--from-image", "--method", "shm", image, tri]).exit_code == 0
    chained = tmp_path / "chained"
    assert invoke(runner, ["matte", image, chained, *common, "--trimap", tri]).exit_code == 0
    assert (auto / "fluffy_trimap.png").read_bytes() == tri.read_bytes()
    assert (auto / "fluffy.png").read_bytes() == (chained / "fluffy.png").read_bytes()
    alpha, trimap = io.read_gray(auto / "fluffy.png"), io.read_trimap(tri)
    assert (trimap == 128).any() and (alpha[trimap == 0] == 0).all() and (alpha[trimap == 255] == 1).all()
