"""MSIA: network structure, information assembly, padding on odd sizes, safetensors import, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from conftest import EXAMPLES
from helpers import assert_equals_at_16_bits, crops, make_context, matter, random_net
from typer.testing import CliRunner

from mattecli import io, methods
from mattecli.methods.base import EngineOptions, MethodOptions
from mattecli.errors import BadOptionError, TrimapError
from mattecli.methods.msia.net import InformationAssembly, MSIANet, ResNeXt101
from mattecli.methods.msia.processor import MsiaProcessor


@pytest.fixture(scope="module")
def net() -> MSIANet:
    torch.manual_seed(0)
    return random_net(MSIANet())


@pytest.fixture(scope="module")
def weights_file(net, tmp_path_factory):
    """A plain safetensors file of our layout, as a user's own training would save it."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("msia") / "msia_trained.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def tagged_weights_file(net, tmp_path_factory):
    """The same weights as a converted file that names its variant (what ``weights export`` writes):
    imported verbatim, which keeps the CLI test quick."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("msia") / "msia.safetensors"
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"mattecli.variant": "msia"})
    return path


# ----------------------------------------------------------------------------- network
def test_backbone_is_resnext101_32x4d_with_torchvision_names():
    trunk = ResNeXt101()
    sd = trunk.state_dict()
    assert [len(getattr(trunk, f"layer{i}")) for i in range(1, 5)] == [3, 4, 23, 3]
    assert sd["layer1.0.conv2.weight"].shape == (128, 4, 3, 3)  # 32 groups x 4 channels
    assert sd["layer4.2.conv3.weight"].shape == (2048, 1024, 1, 1)  # width 32 x 4 x 8
    # ResNeXt-101 32x4d has 44,177,704 parameters with its 2048->1000 classifier (2,049,000)
    assert sum(p.numel() for p in trunk.parameters()) == 44_177_704 - 2_049_000
    assert trunk.layer4[0].conv2.dilation == (1, 1) and trunk.layer4[1].conv2.dilation == (2, 2)


def test_feature_strides_and_output(net):
    shapes = {}

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape)

        return hook

    names = ("ini_st", "sed_st", "aspp", "assembly", "ia_conv", "head")
    hooks = [getattr(net, name).register_forward_hook(record(name)) for name in names]
    try:
        with torch.inference_mode():
            alpha = net(torch.randn(1, 3, 32, 48))
    finally:
        for h in hooks:
            h.remove()
    assert shapes == {
        "ini_st": (1, 64, 8, 12),  # F_ini, stride 4
        "sed_st": (1, 256, 4, 6),  # F_sed, stride 8
        "aspp": (1, 256, 2, 3),  # F_aspp, stride 16
        "assembly": (1, 512, 4, 6),  # F_IA = Cat(W_aspp F_aspp, W_sed F_sed) at stride 8
        "ia_conv": (1, 256, 4, 6),
        "head": (1, 1, 8, 12),  # from F_cat at stride 4, before the sigmoid and x4 upsampling
    }
    assert alpha.shape == (1, 1, 32, 48) and 0 <= float(alpha.min()) and float(alpha.max()) <= 1


def test_adaptive_assembly_matches_numpy():
    rng = np.random.default_rng(0)
    f_aspp = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    f_sed = rng.normal(size=(2, 2, 4, 5)).astype(np.float32)
    wa, ba = np.array([0.5, -1.0, 2.0], np.float32), np.float32(0.3)
    ws, bs = np.array([1.5, 0.25], np.float32), np.float32(-0.2)
    ia = InformationAssembly(3, 2)
    with torch.no_grad():
        ia.score_aspp.weight.copy_(torch.from_numpy(wa).view(1, 3, 1, 1))
        ia.score_aspp.bias.fill_(float(ba))
        ia.score_sed.weight.copy_(torch.from_numpy(ws).view(1, 2, 1, 1))
        ia.score_sed.bias.fill_(float(bs))
        got = ia(torch.from_numpy(f_aspp), torch.from_numpy(f_sed)).numpy()
    raw_a = np.maximum(f_aspp.mean(axis=(2, 3)) @ wa + ba, 0)  # per image
    raw_s = np.maximum(f_sed.mean(axis=(2, 3)) @ ws + bs, 0)
    total = raw_a + raw_s + 1e-4
    expected = np.concatenate(
        [(raw_a / total)[:, None, None, None] * f_aspp, (raw_s / total)[:, None, None, None] * f_sed], axis=1
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_static_assembly_weights_are_relu_normalised():
    ia = InformationAssembly(1, 1, adaptive=False)
    with torch.no_grad():
        ia.weight.copy_(torch.tensor([2.0, -1.0]))
    out = ia(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    assert out[0, 0, 0, 0].item() == pytest.approx(2 / (2 + 1e-4)) and out[0, 1, 0, 0].item() == 0.0


def test_odd_sizes_are_padded_to_16_and_cropped_back(net):
    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inputs = []

        def forward(self, x):
            self.inputs.append(x.clone())
            return torch.sigmoid(x[:, :1])

    image = np.random.default_rng(0).random((67, 93, 3)).astype(np.float32)
    trimap = np.full((67, 93), 128, np.uint8)
    rec = Recorder()
    alpha = matter("msia", MsiaProcessor(rec, make_context(strategy="whole"))).predict(image, trimap).alpha
    x = rec.inputs[0]
    assert tuple(x.shape) == (1, 3, 80, 96) and alpha.shape == (67, 93) and alpha.dtype == np.float32
    red = (image[:, :, 0] - 0.485) / 0.229  # ImageNet normalisation, crop from the top-left
    np.testing.assert_allclose(alpha, 1 / (1 + np.exp(-red)), atol=1e-5)
    torch.testing.assert_close(x[0, :, 67], x[0, :, 65])  # reflection padding
    real = matter("msia", MsiaProcessor(net, make_context())).predict(image, trimap).alpha
    assert real.shape == (67, 93) and 0 <= real.min() and real.max() <= 1


def test_trimap_is_optional_but_must_match(net):
    ready = matter("msia", MsiaProcessor(net, make_context()))
    image = np.zeros((16, 16, 3), np.float32)
    assert ready.predict(image, None).alpha.shape == (16, 16)  # trimap-free, as in the paper
    with pytest.raises(TrimapError, match="trimap is 8x16"):
        ready.predict(image, np.zeros((16, 8), np.uint8))


# ----------------------------------------------------------------------------- weights
def test_import_our_safetensors_then_strict_load(net, weights_file):
    from mattecli.weights import import_checkpoint, load_model

    result = import_checkpoint("msia", weights_file)
    assert result.source_format == "safetensors" and result.tensors == len(net.state_dict())
    loaded = load_model("msia", "cpu")
    x = torch.randn(1, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(net(x), loaded(x))


def test_registry_entry_and_options():
    spec = methods.get("msia")
    caps = spec.capabilities
    assert not caps.needs_trimap and caps.accepts_trimap and not caps.predicts_trimap
    assert [v.name for v in spec.variants] == ["msia"] and spec.stride == 16
    with pytest.raises(BadOptionError, match="strategy of method msia must be one of auto, whole, tiled"):
        spec.create(MethodOptions(device="cpu", engine=EngineOptions(strategy="hybrid")))
    with pytest.raises(BadOptionError, match="--variant of method msia must be one of msia, not 'shm'"):
        spec.create(MethodOptions(device="cpu", variant="shm"))


# ----------------------------------------------------------------------------- CLI
def _app() -> typer.Typer:
    from mattecli.cli.matte import matte

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    app.command("matte")(matte)
    return app


def test_cli_matte_msia_equals_the_library_at_16_bits(tagged_weights_file, tmp_path):
    """With a trimap (which only clamps the known regions) and without one, the CLI's alpha is the
    library's ``Matter.predict`` within 1/65535 at 16 bits. Small crops: the full ResNeXt-101 is slow
    on the CPU, and the padding to 16 still shows (72 -> 80, 88 -> 96)."""
    from mattecli.weights import import_checkpoint

    import_checkpoint("msia", tagged_weights_file)
    images, trimaps = crops(tmp_path, (72, 88))
    out = tmp_path / "out"
    args = ["matte", images, out, "-m", "msia", "-t", trimaps, "--cutout", "--json", "--bit-depth", "16"]
    result = CliRunner().invoke(_app(), [str(a) for a in args + ["--device", "cpu"]])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["method"] == "msia"
    ready = methods.get("msia").create(MethodOptions(device="cpu"))
    image = io.read_image(images / "fluffy.png")
    trimap = io.read_trimap(trimaps / "fluffy.png")
    assert (trimap == 0).any() and (trimap == 255).any() and (trimap == 128).any()
    assert_equals_at_16_bits(out / "fluffy.png", ready.predict(image, trimap).alpha)
    assert (out / "fluffy_cutout.png").exists()
    alpha = io.read_gray(out / "fluffy.png")
    assert np.all(alpha[trimap == 0] == 0) and np.all(alpha[trimap == 255] == 1)  # clamped by the matter
    # trimap-free, as in the paper
    result = CliRunner().invoke(_app(), [str(a) for a in ["matte", images / "fluffy.png", tmp_path / "free.png",
                                                           "-m", "msia", "--bit-depth", "16", "--device", "cpu"]])
    assert result.exit_code == 0, result.output
    free = ready.predict(image).alpha
    assert_equals_at_16_bits(tmp_path / "free.png", free)
    assert not np.all(free[trimap == 255] == 1)  # random weights: the trimap above did the clamping


def test_cli_msia_without_weights_says_how_to_import(tmp_path):
    app = _app()
    args = ["matte", str(EXAMPLES / "images"), str(tmp_path / "o"), "-m", "msia"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "mattecli weights import msia" in result.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_msia_with_a_trimap_without_weights(tmp_path):
    app = _app()
    args = ["matte", str(EXAMPLES / "images"), str(tmp_path / "o"), "-m", "msia", "-t", str(EXAMPLES / "trimaps")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "mattecli weights import msia" in result.stderr and "Traceback" not in result.output


def test_cli_tiled_strategy_matches_the_library(tagged_weights_file, tmp_path, monkeypatch):
    """--strategy tiled with explicit tile flags through the CLI gives what the library computes with
    them (within 1/65535 at 16 bits), and the network ran on those tiles."""
    from mattecli.methods import loading
    from mattecli.weights import import_checkpoint

    import_checkpoint("msia", tagged_weights_file)
    image_path = tmp_path / "crop.png"
    io.write_image(image_path, io.read_image(EXAMPLES / "images" / "fluffy.png")[60:172, 40:168])
    shapes = []
    real = loading.load_network

    def recording(*args, **kwargs):
        net, weights = real(*args, **kwargs)
        net.register_forward_pre_hook(lambda _m, inputs: shapes.append(tuple(inputs[0].shape)))
        return net, weights

    monkeypatch.setattr(loading, "load_network", recording)
    out = tmp_path / "out"
    args = ["matte", image_path, out, "-m", "msia", "--strategy", "tiled", "--tile-size", "96"]
    args += ["--tile-overlap", "16", "--batch-size", "2", "--max-memory", "1T", "--device", "cpu", "--bit-depth", "16"]
    result = CliRunner().invoke(_app(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    # the context pass on the whole (padded) 112x128 image, then 2 x 2 tiles of 96 px (overlapping by
    # 2 x 16 px of halo + 32 px of blend), two at a time
    assert shapes[0] == (1, 3, 112, 128) and len(shapes) == 3
    assert all(s[-2:] == (96, 96) for s in shapes[1:]) and [s[0] for s in shapes[1:]] == [2, 2]
    # --max-memory counts the whole process's RSS (a long pytest process may hold more than a few GB):
    # a budget that cannot bind, so that the explicit tile flags alone decide the passes
    engine = EngineOptions(strategy="tiled", tile_size=96, tile_overlap=16, batch_size=2, max_memory=1 << 40)
    want = methods.get("msia").create(MethodOptions(device="cpu", engine=engine))
    assert_equals_at_16_bits(out / "crop.png", want.predict(io.read_image(image_path)).alpha)
