"""AIM: official key layout, checkpoint import with duplicate aliases, fusion, test strategy, CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import EXAMPLES, REPO, invoke
from helpers import assert_equals_at_16_bits, crops, matter, random_net

from mattecli import io, methods
from mattecli.errors import CheckpointMismatchError
from mattecli.methods.aim.convert import remap_official
from mattecli.methods.aim.net import AimNet, fuse_glance_focus
from mattecli.methods.aim.processor import AimProcessor, hybrid_fuse, resize_zero_border, scaled_size
from mattecli.methods.base import IMAGENET, MethodOptions
from mattecli.methods.loading import make_context
from mattecli.runtime import device as rdevice
from mattecli.runtime import tensors
from mattecli.runtime.executor import TilePolicy

OFFICIAL_KEYS = REPO.parent / "shared" / "refs" / "aim_state_dict_keys.txt"
ALIASES = [
    ("resnet.conv1.", "encoder0.0."),
    ("resnet.bn1.", "encoder0.1."),
    ("resnet.layer1.", "encoder1.0."),
    ("resnet.layer2.", "encoder2."),
    ("resnet.layer3.", "encoder3."),
    ("resnet.layer4.", "encoder4."),
]


def _random_net(seed: int = 0) -> AimNet:
    return random_net(AimNet(), seed)


def official_state_dict(net: AimNet) -> dict:
    """What the authors' AimNet.state_dict() holds: the backbone twice (resnet.* and encoder*.*) plus resnet.fc."""
    sd = dict(net.state_dict())
    for key, value in list(sd.items()):
        for ours, theirs in ALIASES:
            if key.startswith(ours):
                sd[theirs + key[len(ours) :]] = value
    sd["resnet.fc.weight"] = torch.randn(1000, 512)
    sd["resnet.fc.bias"] = torch.randn(1000)
    return sd


def test_official_layout_has_700_keys_and_matches_the_digest():
    sd = official_state_dict(_random_net())
    assert len(sd) == 700  # 218 resnet.* + 216 encoder*.* aliases + 266 decoder keys (shared/refs/aim.md)
    assert sum(k.startswith("resnet.") for k in sd) == 218
    assert sum(k.startswith("encoder") for k in sd) == 216
    if OFFICIAL_KEYS.exists():  # the recorded key list of the official module, when the refs are present
        recorded = {}
        for line in OFFICIAL_KEYS.read_text().splitlines():
            key, shape = line.split("\t")
            recorded[key] = json.loads(shape)
        assert {k: list(v.shape) for k, v in sd.items()} == recorded


def test_remap_folds_aliases_and_drops_fc():
    net = _random_net()
    remapped = remap_official(official_state_dict(net))
    ours = net.state_dict()
    assert set(remapped) == set(ours)
    assert all(torch.equal(remapped[k], ours[k]) for k in ours)
    # a file holding only the aliases (no resnet.* copy) maps too
    only_aliases = {k: v for k, v in official_state_dict(net).items() if not k.startswith("resnet.")}
    assert set(remap_official(only_aliases)) == set(ours)


def test_remap_rejects_aliases_that_disagree():
    sd = official_state_dict(_random_net())
    sd["encoder2.0.conv1.weight"] = sd["encoder2.0.conv1.weight"] + 1
    with pytest.raises(CheckpointMismatchError, match="encoder2.0.conv1.weight differs"):
        remap_official(sd)


def test_import_then_strict_load_reproduces_the_network(tmp_path):
    from mattecli.weights import import_checkpoint, load_model

    net = _random_net(1)
    path = tmp_path / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in official_state_dict(net).items()}}, path)
    import_checkpoint("aim", path)
    loaded = load_model("aim", "cpu")
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        for a, b in zip(net(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b)


def test_forward_shapes_and_fusion_rule():
    net = _random_net()
    with torch.inference_mode():
        glance, focus, fusion = net(torch.randn(2, 3, 64, 96))
    assert glance.shape == (2, 3, 64, 96) and focus.shape == fusion.shape == (2, 1, 64, 96)
    assert 0 <= float(glance.min()) and float(glance.max()) <= 1  # per-channel sigmoid, not softmax
    g, f, fu = glance.numpy(), focus.numpy()[:, 0], fusion.numpy()[:, 0]
    cls = g.argmax(axis=1)
    expected = np.where(cls == 2, 1.0, np.where(cls == 1, f, 0.0))
    np.testing.assert_allclose(fu, expected, atol=1e-6)


def test_fuse_glance_focus_by_hand():
    glance = torch.zeros(1, 3, 1, 3)
    glance[0, 0, 0, 0] = 0.9  # bg
    glance[0, 1, 0, 1] = 0.9  # transition
    glance[0, 2, 0, 2] = 0.9  # fg
    focus = torch.full((1, 1, 1, 3), 0.3)
    assert fuse_glance_focus(glance, focus).flatten().tolist() == pytest.approx([0.0, 0.3, 1.0])


def test_hybrid_fuse_by_hand():
    trimap_up = np.array([[0.0, 0.2, 0.5, 0.99, 1.0]], np.float32)
    focus_up = np.full((1, 5), 0.7, np.float32)
    np.testing.assert_allclose(hybrid_fuse(trimap_up, focus_up), [[0.0, 0.7, 0.7, 0.7, 1.0]])


@pytest.mark.parametrize(
    "h,w,ratio,expected",
    [
        (1800, 2880, 1 / 4, (448, 704)),  # int(450)->448, int(720)->704
        (1800, 2880, 1 / 2, (896, 1440)),
        (6000, 4000, 1 / 2, (1600, 1600)),  # each side capped independently, as the official code does
        (333, 517, 1 / 4, (64, 128)),
        (100, 90, 1 / 4, (32, 32)),  # official rounding would give 0: raised to one stride
    ],
)
def test_scaled_sizes(h, w, ratio, expected):
    assert scaled_size(h, w, ratio) == expected


def _skimage_bilinear_zero(src: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Reference: bilinear with half-pixel centres, samples outside the input are 0 (loops)."""
    h, w = src.shape
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            y = (i + 0.5) * h / oh - 0.5
            x = (j + 0.5) * w / ow - 0.5
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            acc = 0.0
            for yy in (y0, y0 + 1):
                for xx in (x0, x0 + 1):
                    weight = (1 - abs(y - yy)) * (1 - abs(x - xx))
                    if 0 <= yy < h and 0 <= xx < w:
                        acc += weight * src[yy, xx]
            out[i, j] = acc
    return out


@pytest.mark.parametrize("shape,size", [((4, 6), (13, 17)), ((5, 5), (20, 20)), ((8, 10), (5, 7))])
def test_resize_zero_border_matches_reference(shape, size):
    src = np.random.default_rng(0).random(shape).astype(np.float32)
    got = resize_zero_border(torch.from_numpy(src)[None, None], size)[0, 0].numpy()
    np.testing.assert_allclose(got, _skimage_bilinear_zero(src, *size), atol=1e-5)


class _FakeNet(torch.nn.Module):
    """Glance: foreground in the left 40%, background in the right 40%, transition between; focus 0.25."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def forward(self, x):
        n, _, h, w = x.shape
        self.sizes.append((h, w))
        glance = torch.zeros(n, 3, h, w)
        cut1, cut2 = int(w * 0.4), int(w * 0.6)
        glance[:, 2, :, :cut1] = 1
        glance[:, 1, :, cut1:cut2] = 1
        glance[:, 0, :, cut2:] = 1
        focus = torch.full((n, 1, h, w), 0.25)
        return glance, focus, fuse_glance_focus(glance, focus)


@pytest.mark.parametrize("strategy", ["hybrid", "resize"])
def test_strategy_wiring_on_odd_sizes(strategy):
    fake = _FakeNet()
    matter = AimProcessor(fake, make_context(), strategy)
    image = np.random.default_rng(0).random((333, 517, 3)).astype(np.float32)
    out = matter.process(image)
    alpha, trimap = out.alpha, out.trimap
    assert alpha.shape == trimap.shape == (333, 517) and alpha.dtype == np.float32
    expected_sizes = [(64, 128), (160, 256)] if strategy == "hybrid" else [(64, 128)]
    assert fake.sizes == expected_sizes
    mid = 166
    assert alpha[mid, 20] == 1.0 and alpha[mid, 500] == 0.0 and alpha[mid, 258] == pytest.approx(0.25)
    assert trimap[mid, 20] == 255 and trimap[mid, 258] == 128 and trimap[mid, 500] == 0
    # scikit-image 0.14's zero border: the outermost upsampled pixels are never "exactly foreground",
    # and in the hybrid strategy they take the focus alpha, itself faded by the border (row 0 weight)
    assert trimap[0, 20] == 128
    if strategy == "hybrid":
        assert alpha[0, 20] == pytest.approx(0.25 * (0.5 + 0.5 * 160 / 333), abs=1e-5)


def test_registry_entry():
    spec = methods.get("aim")
    assert not spec.needs_trimap and [v.name for v in spec.variants] == ["aim"] and spec.stride == 32
    assert spec.capabilities.predicts_trimap and spec.default_strategy == "hybrid"


@pytest.fixture(scope="module")
def _aim_cache(tmp_path_factory):
    """An HF cache holding imported random AIM weights, built once for this module."""
    from huggingface_hub import constants as hf_constants

    from mattecli.weights import import_checkpoint

    root = tmp_path_factory.mktemp("aim_weights")
    path = root / "aimnet_pretrained_matting.pth"
    torch.save({"state_dict": official_state_dict(_random_net(2))}, path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(root / "hub"))
        import_checkpoint("aim", path)
    return root / "hub"


@pytest.fixture
def aim_weights(_aim_cache, monkeypatch):
    """Point the (test-isolated) HF cache at the module's imported AIM weights."""
    from huggingface_hub import constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(_aim_cache))


def test_cli_matte_aim_equals_the_library_at_16_bits(runner, tmp_path, aim_weights):
    """The CLI's alpha and glance trimap are the library's prediction (``Matter.predict``), within
    1/65535 at 16 bits: the CLI adds reading, writing and nothing else."""
    images, _ = crops(tmp_path, (192, 256))  # glance 32x64, focus 96x128: the official sizes' rounding shows
    out = tmp_path / "out"
    args = ["matte", images, out, "--save-trimap", "--cutout", "--json", "--bit-depth", "16"]
    result = invoke(runner, args + ["--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["method"] == "aim"
    matter = methods.get("aim").create(MethodOptions(device="cpu"))
    for name in ("fluffy", "veil"):
        want = matter.predict(io.read_image(images / f"{name}.png"))
        assert_equals_at_16_bits(out / f"{name}.png", want.alpha)
        np.testing.assert_array_equal(io.read_trimap(out / f"{name}_trimap.png"), want.trimap)
        assert (out / f"{name}_cutout.png").exists()


def test_cli_weights_file_is_the_network_that_runs(runner, tmp_path, aim_weights):
    """``--weights FILE`` (an official checkpoint, not imported) replaces the cached weights: the CLI
    gives the library's alpha with that file, which differs from the cached weights' alpha."""
    other = tmp_path / "other_aim.pth"
    torch.save({"state_dict": official_state_dict(_random_net(7))}, other)
    image_path = tmp_path / "small.png"
    io.write_image(image_path, io.read_image(EXAMPLES / "images" / "fluffy.png")[:128, :160])
    image = io.read_image(image_path)
    args = ["matte", image_path, tmp_path / "o.png", "--bit-depth", "16", "--device", "cpu"]
    result = invoke(runner, args + ["--weights", other])
    assert result.exit_code == 0, result.output
    with_file = methods.get("aim").create(MethodOptions(device="cpu", weights=other)).predict(image).alpha
    cached = methods.get("aim").create(MethodOptions(device="cpu")).predict(image).alpha
    assert_equals_at_16_bits(tmp_path / "o.png", with_file)
    assert np.abs(with_file - cached).max() > 0.01  # two random networks: the file decides what runs


def test_cli_matte_aim_without_weights_says_how_to_import(runner, tmp_path):
    result = invoke(runner, ["matte", EXAMPLES / "images", tmp_path / "out", "--method", "aim"])
    assert result.exit_code == 2
    assert "mattecli weights import aim" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_aim_refuses_a_trimap_and_missing_cuda(runner, tmp_path, aim_weights, monkeypatch):
    result = invoke(runner, ["matte", EXAMPLES / "images", tmp_path / "o", "-t", EXAMPLES / "trimaps"])
    assert result.exit_code == 2 and "trimap-free" in result.stderr
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without CUDA, even on a GPU host
    result = invoke(runner, ["matte", EXAMPLES / "images", tmp_path / "o", "--device", "cuda"])
    assert result.exit_code == 2 and "CUDA is not available" in result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_tiled_strategy_with_a_pointwise_net_matches_full_resolution():
    """With a per-pixel focus, tiling must give exactly the full-resolution answer: checks padding and blending."""

    class Pointwise(_FakeNet):
        def forward(self, x):
            glance, _, _ = super().forward(x)
            focus = torch.sigmoid(x[:, :1])  # depends on the pixel only
            return glance, focus, fuse_glance_focus(glance, focus)

    image = np.random.default_rng(1).random((150, 211, 3)).astype(np.float32)
    net = Pointwise()
    policy = TilePolicy(stride=32, halo=8, blend=8, tile_size=64, batch_size=3)
    tiled = AimProcessor(net, make_context(tiles=policy), "tiled")
    out = tiled.process(image)
    alpha, trimap = np.clip(out.alpha, 0, 1), out.trimap
    x = tensors.image_to_tensor(image, torch.device("cpu"), IMAGENET.mean, IMAGENET.std)
    direct = torch.sigmoid(x[:, :1])[0, 0].numpy()
    transition = trimap == 128
    np.testing.assert_allclose(alpha[transition], direct[transition], atol=1e-5)
    assert (alpha[trimap == 255] == 1).all() and (alpha[trimap == 0] == 0).all()
    assert all(s[0] % 32 == 0 and s[1] % 32 == 0 for s in net.sizes)


def test_tiled_with_one_big_tile_equals_a_full_resolution_pass():
    net = _random_net(3)
    image = np.random.default_rng(2).random((70, 90, 3)).astype(np.float32)
    policy = TilePolicy(stride=32, halo=64, tile_size=512, batch_size=1)
    matter = AimProcessor(net, make_context(tiles=policy), "tiled")
    x = tensors.image_to_tensor(image, torch.device("cpu"), IMAGENET.mean, IMAGENET.std)
    got = matter._focus_tiles(x, None)[0, 0].numpy()
    padded = torch.nn.functional.pad(x, (0, 6, 0, 26), mode="replicate")
    with torch.inference_mode():
        want = net(rdevice.channels_last(padded))[1][0, 0, :70, :90].numpy()
    # a random-weight ResNet amplifies float rounding: oneDNN's kernel choice alone moves it ~1e-3
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_cli_trimap_from_image(runner, tmp_path, aim_weights):
    out = tmp_path / "tris"
    result = invoke(runner, ["trimap", "--from-image", "--method", "aim", EXAMPLES / "images", out, "--json"])
    assert result.exit_code == 0, result.output
    matter = methods.get("aim").create(MethodOptions(device="cpu"))
    for name in ("fluffy", "veil"):
        raw = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert raw.dtype == np.uint8 and set(np.unique(raw)) <= {0, 128, 255}
        # the glance trimap the library predicts, unchanged
        np.testing.assert_array_equal(raw, matter.predict(io.read_image(EXAMPLES / "images" / f"{name}.png")).trimap)
    result = invoke(runner, ["trimap", "--from-image", "--method", "cf", EXAMPLES / "images", out])
    assert result.exit_code == 2 and "method cf cannot predict a trimap (it needs one itself)" in result.stderr


def test_memory_cap_forces_small_tiles_and_keeps_the_result():
    """A tiny --max-memory budget makes the tiled strategy plan small tiles; a per-pixel net shows nothing changed."""

    class Pointwise(_FakeNet):
        def __init__(self):
            super().__init__()
            self.pick = torch.nn.Conv2d(3, 1, 1)  # focus = sigmoid(first channel), 4 bytes of activation per pixel
            with torch.no_grad():
                self.pick.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
                self.pick.bias.zero_()

        def forward(self, x):
            glance, _, _ = super().forward(x)
            focus = torch.sigmoid(self.pick(x))
            return glance, focus, fuse_glance_focus(glance, focus)

    net = Pointwise()
    image = np.random.default_rng(5).random((130, 170, 3)).astype(np.float32)
    # declared figures: nothing fixed, 4 bytes per focus pixel; a cap leaving room for one 64 x 64 tile
    from mattecli.runtime.memory import PLAN_MARGIN, Budget, Footprint, MemoryPlan

    figures = Footprint(fixed=0, image=0.0, passes={"glance": 0.0, "focus": 4.0})
    plan = MemoryPlan(figures, Budget(int(64 * 64 * 4 / PLAN_MARGIN) + 1, "--max-memory"))
    policy = TilePolicy(stride=32, halo=8, blend=8)
    matter = AimProcessor(net, make_context(tiles=policy, memory=plan), "tiled")
    out = matter.process(image)
    alpha, trimap = out.alpha, out.trimap
    tile_sizes = set(net.sizes[1:])  # after the glance pass
    assert tile_sizes == {(64, 64)}
    direct = torch.sigmoid(tensors.image_to_tensor(image, torch.device("cpu"), IMAGENET.mean, IMAGENET.std)[:, :1])
    direct = direct[0, 0].numpy()
    np.testing.assert_allclose(alpha[trimap == 128], direct[trimap == 128], atol=1e-5)


def test_hybrid_focus_out_of_memory_falls_back_to_tiles():
    class BigInputsOOM(_FakeNet):
        def forward(self, x):
            if x.shape[-1] > 128:
                raise torch.OutOfMemoryError("CUDA out of memory")
            glance, _, _ = super().forward(x)
            focus = torch.sigmoid(x[:, :1])
            return glance, focus, fuse_glance_focus(glance, focus)

    net = BigInputsOOM()
    image = np.random.default_rng(6).random((333, 517, 3)).astype(np.float32)
    policy = TilePolicy(stride=32, halo=16, tile_size=128, batch_size=2)
    # on the CPU an out-of-memory error is not caught: the plan, not a reading of free memory, decides
    with pytest.raises(torch.OutOfMemoryError):
        AimProcessor(net, make_context(tiles=policy), "hybrid").process(image)
    # on CUDA a real one is retried on tiles, with a warning that the result records
    proc = AimProcessor(net, make_context(tiles=policy), "hybrid")
    proc.executor.device = torch.device("cuda")  # the executor's view; the network stays on the CPU
    net.sizes.clear()
    result = matter("aim", proc).predict(image)
    assert result.alpha.shape == (333, 517)
    assert (160, 256) not in net.sizes[2:]  # the 1/2-scale focus was computed on tiles
    assert "AIM focus pass ran out of GPU memory" in result.plan["fallback"] and result.plan["strategy"] == "hybrid"
