"""SHM: fusion, both networks, MindSpore checkpoint import, test strategies on odd sizes, CLI."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import typer
from conftest import EXAMPLES
from helpers import assert_equals_at_16_bits, make_context, matter, mindspore_ckpt, random_net
from typer.testing import CliRunner

import mattecli.methods.shm.convert as convert
import mattecli.methods.shm.processor as shm
from mattecli import io, methods
from mattecli.methods.base import EngineOptions, MethodOptions
from mattecli.errors import BadOptionError, UnknownCheckpointError, WeightsNotCachedError, WeightsUnavailableError
from mattecli.methods.shm.net import MindSporeMNet, SHMMindSporeNet, SHMNet, fuse

MS_FILENAME = "semantichumanmatting_ascend_v180_MattingHumanDatasets_official_cv_avesad5.49.ckpt"


def _ms_net(seed: int = 0) -> SHMMindSporeNet:
    torch.manual_seed(seed)
    return random_net(SHMMindSporeNet(), seed)


_TO_MS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


def mindspore_names(net: SHMMindSporeNet) -> dict[str, np.ndarray]:
    """What MindSpore's ``save_checkpoint(net)`` holds for this network: same cell paths, BN leaves renamed,
    no ``num_batches_tracked``."""
    bn = {name for name, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    out = {}
    for key, value in net.state_dict().items():
        head, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        out[f"{head}.{_TO_MS[leaf]}" if head in bn else key] = value.numpy()
    return out


def write_official_ckpt(path, net: SHMMindSporeNet, *, junk: bool = True):
    tensors = mindspore_names(net)
    if junk:  # optimizer state and counters a training checkpoint may carry
        tensors["moment1.t_net.last_conv.weight"] = np.zeros((3, 16, 3, 3), np.float32)
        tensors["moment2.m_net.conv.weight"] = np.zeros((1, 16, 5, 5), np.float32)
        tensors["beta1_power"] = np.array([0.9], np.float32)
        tensors["learning_rate"] = np.array(1e-4, np.float32)
        tensors["global_step"] = np.array([1000], np.int32)
    path.write_bytes(mindspore_ckpt(tensors))
    return path


# ----------------------------------------------------------------------------- fusion
def test_fuse_matches_numpy_on_hand_made_tensors():
    fs = np.array([[0.9, 0.1, 0.0], [0.5, 0.2, 0.3]], np.float32)
    us = np.array([[0.05, 0.8, 0.1], [0.4, 0.3, 0.6]], np.float32)
    alpha_r = np.array([[0.3, 0.5, 1.0], [0.0, 0.7, 0.25]], np.float32)
    got = fuse(*(torch.from_numpy(a)[None, None] for a in (fs, us, alpha_r)))[0, 0].numpy()
    np.testing.assert_allclose(got, fs + us * alpha_r, atol=1e-7)
    assert got[0, 0] == pytest.approx(0.915) and got[1, 2] == pytest.approx(0.45)


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_mindspore_net_fuses_channel_1_plus_channel_2_times_alpha_r():
    with torch.inference_mode():
        trimap, alpha_r, alpha_p = _ms_net()(torch.randn(2, 3, 32, 48))
    assert trimap.shape == (2, 3, 32, 48) and alpha_r.shape == alpha_p.shape == (2, 1, 32, 48)
    p = _softmax(trimap.double().numpy())
    expected = p[:, 1] + p[:, 2] * alpha_r.double().numpy()[:, 0]  # network.py: _, fg, unsure = split(softmax)
    np.testing.assert_allclose(alpha_p.numpy()[:, 0], expected, atol=1e-5)


def test_paper_net_shapes_sigmoid_alpha_r_and_fusion():
    torch.manual_seed(0)
    net = random_net(SHMNet())
    with torch.inference_mode():
        trimap, alpha_r, alpha_p = net(torch.randn(1, 3, 32, 48))
    assert trimap.shape == (1, 3, 32, 48) and alpha_r.shape == alpha_p.shape == (1, 1, 32, 48)
    assert 0 <= float(alpha_r.min()) and float(alpha_r.max()) <= 1
    p = _softmax(trimap.double().numpy())
    expected = p[:, 2] + p[:, 1] * alpha_r.double().numpy()[:, 0]  # classes (bg, unknown, fg)
    np.testing.assert_allclose(alpha_p.numpy()[:, 0], expected, atol=1e-5)


def test_paper_net_layout():
    sd = SHMNet().state_dict()
    # M-Net encoder: torchvision vgg16_bn.features indices with a 6-channel first conv; 13 convs
    assert sd["m_net.features.0.weight"].shape == (64, 6, 3, 3)
    assert sd["m_net.features.40.weight"].shape == (512, 512, 3, 3)
    assert sum(1 for k in sd if k.startswith("m_net.features.") and k.endswith(".weight") and sd[k].ndim == 4) == 13
    assert sd["m_net.pred.weight"].shape == (1, 64, 5, 5)
    # T-Net: PSPNet-50 on a torchvision ResNet-50 trunk
    assert sd["t_net.backbone.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert sd["t_net.cls.0.weight"].shape == (512, 4096, 3, 3) and sd["t_net.cls.4.weight"].shape == (3, 512, 1, 1)


def test_mindspore_transposed_conv_equals_pad_deconv_crop():
    """MindSpore pads bottom/right by one, runs the 5x5/2 deconv with padding 2 and crops the last row/column."""
    deconv = MindSporeMNet().deconv_2
    x = torch.randn(1, 64, 5, 7)
    manual = torch.nn.functional.conv_transpose2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), deconv.weight, None, 2, 2)
    torch.testing.assert_close(deconv(x), manual[:, :, :-1, :-1])
    assert deconv(x).shape == (1, 64, 10, 14)


# ----------------------------------------------------------------------------- MindSpore layout + import
# (name, shape) read off the MindSpore model zoo's src/model/t_net.py and m_net.py (branch r1.8)
MINDSPORE_REFERENCE = {
    "t_net.feature.head_conv.0.weight": (32, 3, 3, 3),
    "t_net.feature.head_conv.1.gamma": (32,),
    "t_net.feature.block_1.conv.0.weight": (32, 32, 1, 1),  # expansion 1 still has its 1x1 conv
    "t_net.feature.block_1.conv.3.weight": (32, 1, 3, 3),  # depthwise
    "t_net.feature.block_1.conv.6.weight": (16, 32, 1, 1),
    "t_net.feature.block_1.conv.7.moving_variance": (16,),
    "t_net.feature.block_4.3.conv.0.weight": (384, 64, 1, 1),
    "t_net.feature.block_7.conv.6.weight": (320, 960, 1, 1),
    "t_net.s5_up_conv.1.weight": (96, 320, 3, 3),
    "t_net.s5_up_conv.1.bias": (96,),
    "t_net.s5_up_conv.2.moving_mean": (96,),
    "t_net.s4_fusion.0.weight": (96, 96, 3, 3),
    "t_net.s1_fusion.1.beta": (16,),
    "t_net.last_conv.weight": (3, 16, 3, 3),
    "t_net.last_conv.bias": (3,),
    "m_net.en_conv_bn_relu_1.0.weight": (16, 6, 3, 3),
    "m_net.en_conv_bn_relu_4.1.moving_variance": (128,),
    "m_net.de_conv_bn_relu_2.0.weight": (64, 128, 3, 3),
    "m_net.deconv_1.weight": (128, 128, 5, 5),
    "m_net.deconv_4.weight": (16, 16, 5, 5),
    "m_net.conv.weight": (1, 16, 5, 5),
}


def test_mindspore_layout_matches_the_reference_code_and_the_published_file_size():
    names = {k: tuple(v.shape) for k, v in mindspore_names(SHMMindSporeNet()).items()}
    for key, shape in MINDSPORE_REFERENCE.items():
        assert names.get(key) == shape, key
    assert "m_net.conv.bias" not in names and "m_net.deconv_1.bias" not in names  # has_bias=False
    # the model zoo README gives the fine-tuned checkpoint as 12.03M: float32 weights only, no optimizer state
    floats = sum(int(np.prod(s)) for s in names.values())
    assert floats == 3_148_851
    assert floats * 4 / 2**20 == pytest.approx(12.03, abs=0.03)


def test_remap_and_detect_mindspore():
    net = _ms_net()
    sd = {k: torch.from_numpy(v) for k, v in mindspore_names(net).items()}
    sd["moment1.t_net.last_conv.weight"] = torch.zeros(3, 16, 3, 3)
    sd["global_step"] = torch.tensor([7], dtype=torch.int32)
    assert convert.is_mindspore(sd)
    remapped = convert.remap_mindspore(sd)
    ours = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(remapped) == set(ours)
    assert all(torch.equal(remapped[k], ours[k]) for k in ours)
    wrapped = {"network." + k: v for k, v in sd.items() if k.startswith(("t_net.", "m_net."))}
    assert convert.is_mindspore(wrapped) and set(convert.remap_mindspore(wrapped)) == set(ours)
    assert not convert.is_mindspore(SHMMindSporeNet().state_dict())  # our own names are not the MindSpore layout


def test_import_mindspore_ckpt_then_strict_load_reproduces_the_network(tmp_path):
    from mattecli.weights import import_checkpoint, load_model

    net = _ms_net(1)
    path = write_official_ckpt(tmp_path / MS_FILENAME, net)
    result = import_checkpoint("shm-mindspore", path)
    assert result.source_format == "mindspore-ckpt" and result.official_match is False  # not the real file
    loaded = load_model("shm-mindspore", "cpu")
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        for a, b in zip(net(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b)


def test_import_refuses_a_file_that_is_not_the_mindspore_shm(tmp_path):
    from mattecli.weights import import_checkpoint

    path = tmp_path / "other.ckpt"
    path.write_bytes(mindspore_ckpt({"conv.weight": np.zeros((4, 3, 3, 3), np.float32)}))
    with pytest.raises(UnknownCheckpointError, match="not an official shm-mindspore checkpoint"):
        import_checkpoint("shm-mindspore", path)


# ----------------------------------------------------------------------------- test strategies
class _FakeNet(torch.nn.Module):
    """T-Net: foreground in the left 40%, unknown between, background in the right 40%; alpha_r 0.25."""

    fg_channel, unknown_channel = 2, 1

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.clone())
        n, _, h, w = x.shape
        logits = torch.zeros(n, 3, h, w)
        cut1, cut2 = int(w * 0.4), int(w * 0.6)
        logits[:, 2, :, :cut1] = 30
        logits[:, 1, :, cut1:cut2] = 30
        logits[:, 0, :, cut2:] = 30
        p = torch.softmax(logits, 1)
        alpha_r = torch.full((n, 1, h, w), 0.25)
        return logits, alpha_r, fuse(p[:, 2:3], p[:, 1:2], alpha_r)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _predict(processor, image):
    """Alpha and predicted trimap through the method contract (clipped, as ``matte`` writes them)."""
    result = matter("shm", processor).predict(image)
    return result.alpha, result.trimap


def test_paper_strategy_pads_to_16_and_crops_back_on_odd_sizes():
    fake = _FakeNet()
    image = _image(67, 93)
    alpha, trimap = _predict(shm.ShmProcessor(fake, make_context(), strategy="paper", encoding="imagenet"), image)
    assert alpha.shape == trimap.shape == (67, 93) and alpha.dtype == np.float32 and trimap.dtype == np.uint8
    x = fake.inputs[0]
    assert tuple(x.shape) == (1, 3, 80, 96)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((image - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0, :, :67, :93].numpy(), expected, atol=1e-5)
    torch.testing.assert_close(x[0, :, 67], x[0, :, 65])  # reflection padding at the bottom
    torch.testing.assert_close(x[0, :, :, 93], x[0, :, :, 91])  # and at the right
    assert alpha[30, 10] == pytest.approx(1.0) and alpha[30, 45] == pytest.approx(0.25)
    assert alpha[30, 80] == pytest.approx(0, abs=1e-6)
    assert (trimap[30, 10], trimap[30, 45], trimap[30, 80]) == (255, 128, 0)


def test_paper_strategy_scales_the_longer_side_to_1500():
    assert shm.paper_size(1600, 100) == (1500, 94) and shm.paper_size(1500, 900) == (1500, 900)
    fake = _FakeNet()
    alpha, trimap = _predict(shm.ShmProcessor(fake, make_context(), strategy="paper"), _image(1600, 100))
    assert tuple(fake.inputs[0].shape) == (1, 3, 1504, 96)  # 1500x94 padded to multiples of 16
    assert alpha.shape == trimap.shape == (1600, 100)


def _image8(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random 8-bit RGB image and its float decoding (what ``io.read_image`` gives for an 8-bit file)."""
    rgb8 = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rgb8, rgb8.astype(np.float32) / 255.0


def test_resize_strategy_is_the_mindspore_evaluation():
    fake = _FakeNet()
    rgb8, image = _image8(67, 93, seed=1)
    alpha, trimap = _predict(shm.ShmProcessor(fake, make_context(), strategy="resize", encoding="mindspore"), image)
    assert alpha.shape == trimap.shape == (67, 93)
    x = fake.inputs[0]
    assert tuple(x.shape) == (1, 3, 320, 320)
    # eval.py: cv2.imread (BGR uint8) -> cv2.resize of the uint8 image, 320x320 bicubic -> (img - (104, 112, 121)) / 255
    bgr8 = cv2.resize(np.ascontiguousarray(rgb8[:, :, ::-1]), (320, 320), interpolation=cv2.INTER_CUBIC)
    expected = ((bgr8 - np.array([104.0, 112.0, 121.0])) / 255.0).transpose(2, 0, 1)
    np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-6)
    assert alpha[30, 5] == pytest.approx(1.0, abs=1e-3) and alpha[30, 46] == pytest.approx(0.25, abs=1e-3)
    assert (trimap[30, 5], trimap[30, 46], trimap[30, 90]) == (255, 128, 0)


def _tie_image() -> np.ndarray:
    """160x160 uint8 whose 2x bicubic upscale puts exact .5 ties on a quarter of the 320x320 values
    (OpenCV's weights at phase 1/4 are -27/256, 225/256, 67/256, -9/256; the rows repeat, the
    columns cycle (233, 106, 119, 92), shifted by one per channel)."""
    row = np.tile(np.array([233, 106, 119, 92], np.uint8), 40)
    row = np.stack([np.roll(row, k) for k in range(3)], axis=1)
    return np.ascontiguousarray(np.broadcast_to(row[None], (160, 160, 3)))


def _float_resize_rounded(rgb8: np.ndarray) -> np.ndarray:
    """The input before issue 21: the float image resized on the 0..255 scale, then rounded."""
    small = cv2.resize(rgb8.astype(np.float32) / 255.0 * 255.0, (320, 320), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("optimized", [True, False], ids=["opencv-optimized", "opencv-generic"])
def test_resize_8bit_is_opencvs_8bit_resize_on_tie_values(optimized):
    """The 320x320 input is OpenCV's 8-bit resize of the 8-bit image, bit for bit, on exact .5 ties
    and on values within float noise of one, whichever 8-bit kernel OpenCV dispatches to (its
    optimised one, or the generic fixed-point one, which rounds other values than a float resize)."""
    was = cv2.useOptimized()
    cv2.setUseOptimized(optimized)
    try:
        ties = _tie_image()
        f = cv2.resize(ties.astype(np.float32), (320, 320), interpolation=cv2.INTER_CUBIC)
        assert (f - np.floor(f) == 0.5).sum() > 50_000  # the tie image really lands on ties
        photo_sized = _image8(1384 // 8, 1900 // 8, seed=3)[0]  # 2.jpg's aspect, downscaled and upscaled
        for rgb8 in (ties, photo_sized, _image8(701, 503, seed=4)[0]):
            official = cv2.resize(rgb8, (320, 320), interpolation=cv2.INTER_CUBIC)
            got = shm.resize_8bit(rgb8.astype(np.float32) / 255.0, 320)
            assert got.dtype == np.float32 and got.shape == (320, 320, 3)
            np.testing.assert_array_equal(got, official.astype(np.float32) / 255.0)
        if not optimized:  # where the old float path and OpenCV's 8-bit arithmetic disagree
            official = cv2.resize(photo_sized, (320, 320), interpolation=cv2.INTER_CUBIC)
            assert (_float_resize_rounded(photo_sized) != official).sum() > 100
    finally:
        cv2.setUseOptimized(was)


def test_to_8bit_recovers_8bit_files_and_rounds_16bit_values():
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(shm.to_8bit(u8.astype(np.float32) / 255.0), u8)
    v16 = np.arange(65536, dtype=np.uint32).reshape(256, 256)
    got = shm.to_8bit(v16.astype(np.float32) / 65535.0).astype(np.int64)
    np.testing.assert_array_equal(got, (v16 * 255 + 32767) // 65535)  # the nearest 8-bit level
    assert shm.to_8bit(np.array([-0.2, 1.3], np.float32)).tolist() == [0, 255]


@pytest.mark.parametrize("strategy", ["paper", "resize"])
def test_real_networks_round_trip_odd_sizes(strategy):
    image = _image(67, 93, seed=2)
    for net, encoding in ((_ms_net(), "mindspore"), (random_net(SHMNet()), "imagenet")):
        if strategy == "resize" and encoding == "imagenet":
            continue  # the paper net at 320x320 is slow on CPU and adds nothing here
        alpha, trimap = _predict(shm.ShmProcessor(net, make_context(), strategy=strategy, encoding=encoding), image)
        assert alpha.shape == trimap.shape == (67, 93)
        assert 0 <= alpha.min() and alpha.max() <= 1 and set(np.unique(trimap)) <= {0, 128, 255}


# ----------------------------------------------------------------------------- method spec + variants
def test_registry_entry():
    spec = methods.get("shm")
    assert not spec.needs_trimap and [v.name for v in spec.variants] == ["shm-mindspore", "shm"] and spec.stride == 16
    assert [v.default_strategy for v in spec.variants] == ["resize", "paper"] and spec.capabilities.predicts_trimap


def test_variants_and_strategies_are_checked_and_named_in_weight_errors():
    spec = methods.get("shm")
    with pytest.raises(BadOptionError, match="variant"):
        spec.create(MethodOptions(device="cpu", variant="msia"))
    with pytest.raises(BadOptionError, match="strategy"):
        spec.create(MethodOptions(device="cpu", engine=EngineOptions(strategy="hybrid")))
    with pytest.raises(WeightsUnavailableError, match="mattecli weights import shm "):
        spec.create(MethodOptions(device="cpu", variant="shm"))
    # shm-mindspore has a published download: offline, it is "not cached", and the error still names the import
    with pytest.raises(WeightsNotCachedError, match="mattecli weights import shm-mindspore"):
        spec.create(MethodOptions(device="cpu"))


# ----------------------------------------------------------------------------- CLI
def _app() -> typer.Typer:
    from mattecli.cli.matte import matte

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    app.command("matte")(matte)
    return app


def test_cli_matte_shm_equals_the_library_at_16_bits(tmp_path):
    """The model zoo's 320x320 evaluation through the CLI equals the library's ``Matter.predict``
    (alpha within 1/65535 at 16 bits, the T-Net trimap exactly)."""
    from mattecli.weights import import_checkpoint

    import_checkpoint("shm-mindspore", write_official_ckpt(tmp_path / MS_FILENAME, _ms_net(2)))
    out = tmp_path / "out"
    args = ["matte", str(EXAMPLES / "images"), str(out), "-m", "shm", "--save-trimap", "--cutout", "--json"]
    result = CliRunner().invoke(_app(), args + ["--bit-depth", "16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["method"] == "shm"
    ready = methods.get("shm").create(MethodOptions(device="cpu"))
    for name in ("fluffy", "veil"):
        want = ready.predict(io.read_image(EXAMPLES / "images" / f"{name}.png"))
        assert_equals_at_16_bits(out / f"{name}.png", want.alpha)
        trimap = cv2.imread(str(out / f"{name}_trimap.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(trimap, want.trimap)
        assert (out / f"{name}_cutout.png").exists()


def test_cli_matte_shm_without_weights_says_how_to_import(tmp_path):
    result = CliRunner().invoke(_app(), ["matte", str(EXAMPLES / "images"), str(tmp_path / "out"), "-m", "shm"])
    assert result.exit_code == 2
    assert "mattecli weights import shm-mindspore" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
