"""Issue 20: every engine option given on the command line reaches what runs.

The CLI runs in-process (CliRunner) with each method's network replaced by a recording fake
(``mattecli.methods.loading.load_network`` patched, weights fetching skipped), so a test sees the
inputs the network was called with -- their sizes, the autocast state, the variant built -- and
fails if an option is parsed but dropped on its way to the engine. Each test also runs the same
command without the option (or with another value) and checks that what ran differs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import invoke, synthetic_scene, write_gray, write_rgb

from mattecli.methods import loading
from mattecli.methods.base import WeightsFile

# ----------------------------------------------------------------------------- recording fakes


class _Calls:
    """What one fake network saw: per forward, (input shape, autocast on the CPU, its dtype, a conv's output dtype)."""

    def __init__(self):
        self.shapes: list[tuple[int, ...]] = []
        self.autocast: list[tuple[bool, torch.dtype]] = []
        self.conv_dtypes: list[torch.dtype] = []

    def record(self, x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        self.autocast.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        y = conv(x[:, :3])
        self.conv_dtypes.append(y.dtype)
        return y.float()


class _Pick(torch.nn.Conv2d):
    """1x1 conv returning the first channel: real autocast-eligible work."""

    def __init__(self):
        super().__init__(3, 1, 1)
        with torch.no_grad():
            self.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.bias.zero_()


class FakeAim(torch.nn.Module):
    """AimNet's interface: glance (fg left, transition middle, bg right), focus = sigmoid(red)."""

    def __init__(self, calls: _Calls):
        super().__init__()
        self.calls, self.pick = calls, _Pick()

    def run(self, x, *, glance: bool = True, focus: bool = True):
        """AimNet.run: only the decoders asked for (the other is None)."""
        f = torch.sigmoid(self.calls.record(x, self.pick))
        n, _, h, w = x.shape
        g = torch.zeros(n, 3, h, w)
        g[:, 2, :, : int(w * 0.4)] = 1
        g[:, 1, :, int(w * 0.4) : int(w * 0.6)] = 1
        g[:, 0, :, int(w * 0.6) :] = 1
        return (g if glance else None), (f if focus else None)

    def forward(self, x):
        from mattecli.methods.aim.net import fuse_glance_focus

        g, f = self.run(x)
        return g, f, fuse_glance_focus(g, f)


class FakeMsia(torch.nn.Module):
    def __init__(self, calls: _Calls):
        super().__init__()
        self.calls, self.pick = calls, _Pick()

    def forward(self, x):
        return torch.sigmoid(self.calls.record(x, self.pick))


class FakeShm(torch.nn.Module):
    """SHM's interface (T-Net, M-Net, fused forward); the T-Net input is what the tests look at."""

    fg_channel, unknown_channel = 2, 1

    def __init__(self, calls: _Calls):
        super().__init__()
        self.calls, self.pick = calls, _Pick()

    def t_net(self, x):
        self.calls.record(x, self.pick)
        return torch.zeros(x.shape[0], 3, *x.shape[2:])

    def m_net(self, x):
        return torch.full((x.shape[0], 1, *x.shape[2:]), 0.5)

    def forward(self, x):
        trimap = self.t_net(x)
        alpha = torch.full((x.shape[0], 1, *x.shape[2:]), 0.5)
        return trimap, alpha, alpha


class FakeSim(torch.nn.Module):
    def __init__(self, calls: _Calls):
        super().__init__()
        self.calls, self.pick = calls, _Pick()

    def fold_weight_standardization(self):
        return self

    def forward(self, image, two, image_n, clicks, smap):
        return torch.sigmoid(self.calls.record(image, self.pick))


class FakeSimClassifier(torch.nn.Module):
    def __init__(self, calls: _Calls):
        super().__init__()
        self.calls, self.pick = calls, _Pick()

    def cam(self, x):
        y = self.calls.record(x, self.pick)
        return F.avg_pool2d(y, 32, ceil_mode=True).repeat(1, 20, 1, 1)


_FAKES = {
    "aim": FakeAim,
    "msia": FakeMsia,
    "shm-mindspore": FakeShm,
    "shm": FakeShm,
    "sim-comp1k": FakeSim,
    "sim-simd": FakeSim,
    "sim-classifier": FakeSimClassifier,
}


class Recorder:
    """``loads``: (variant, --weights file) per network built; ``calls[variant]``: what it was fed."""

    def __init__(self):
        self.loads: list[tuple[str, object]] = []
        self.calls: dict[str, _Calls] = {}

    def load_network(self, resolved, variant, device, *, file=None, **_):
        self.loads.append((variant.name, file))
        calls = self.calls.setdefault(variant.name, _Calls())
        return _FAKES[variant.name](calls).to(device).eval(), WeightsFile(variant.name, None, None)

    def reset(self) -> None:
        self.loads.clear()
        self.calls.clear()


@pytest.fixture
def fakes(monkeypatch) -> Recorder:
    import mattecli.weights

    rec = Recorder()
    monkeypatch.setattr(loading, "load_network", rec.load_network)
    monkeypatch.setattr(mattecli.weights, "prefetch", lambda *a, **k: None)  # nothing to fetch for fakes
    return rec


@pytest.fixture
def photo(tmp_path):
    """A 333x517 image (odd sizes: AIM's official rounding and the padding both show) and its trimap."""
    image, _, trimap = synthetic_scene(333, 517, seed=1)
    return write_rgb(tmp_path / "in" / "p.png", image), write_gray(tmp_path / "tri" / "p.png", trimap)


def _matte(runner, photo, out, *args):
    result = invoke(runner, ["matte", photo[0], out, "--device", "cpu", "--overwrite", *args])
    assert result.exit_code == 0, result.output
    return result


# ----------------------------------------------------------------------------- --scales
def test_aim_scales_set_the_glance_and_focus_sizes(runner, fakes, photo, tmp_path):
    _matte(runner, photo, tmp_path / "a.png", "-m", "aim")
    official = fakes.calls["aim"].shapes
    # the official hybrid: glance at int(side / 4) floored to 32, focus at int(side / 2) floored to 32
    assert [s[-2:] for s in official] == [(64, 128), (160, 256)]
    fakes.reset()
    _matte(runner, photo, tmp_path / "b.png", "-m", "aim", "--scales", "0.5,1")
    # glance 333/2 -> 160, 517/2 -> 256; a focus ratio of 1 is the image itself, padded to 32
    assert [s[-2:] for s in fakes.calls["aim"].shapes] == [(160, 256), (352, 544)]


def test_sim_scales_set_the_patch_analysis_passes(runner, fakes, tmp_path):
    image, _, trimap = synthetic_scene(120, 150, seed=2)
    photo = write_rgb(tmp_path / "s.png", image), write_gray(tmp_path / "st.png", trimap)
    _matte(runner, photo, tmp_path / "a.png", "-m", "sim", "-t", photo[1])
    # official 320 and 800 px patches: both larger than this 128x152 (padded) image, so each pass is
    # one patch of the image's own size (Python slicing, as the authors' code); equal patches share a batch
    shapes = fakes.calls["sim-classifier"].shapes
    assert {s[1:] for s in shapes} == {(4, 128, 152)} and sum(s[0] for s in shapes) == 2
    fakes.reset()
    _matte(runner, photo, tmp_path / "b.png", "-m", "sim", "-t", photo[1], "--scales", "0.25")
    # one scale of 0.25 x 320 = 80 px patches: a grid of 80x80 patches, one pass
    shapes = fakes.calls["sim-classifier"].shapes
    assert {s[-2:] for s in shapes} == {(80, 80)} and sum(s[0] for s in shapes) > 1


# ----------------------------------------------------------------------------- --max-memory
def test_max_memory_sets_the_tiles_the_engine_plans(runner, fakes, photo, tmp_path):
    """msia's default ``auto`` runs one whole pass when the budget holds it; under a cap that holds its
    fixed memory, its full-size maps and a 200 x 200 px tile (by the declared figures), tiles of at
    most that many pixels; a cap below its fixed memory is refused."""
    from mattecli import io, methods
    from mattecli.runtime.memory import PLAN_MARGIN

    whole = (1, 3, 336, 528)  # the image padded to 16
    _matte(runner, photo, tmp_path / "a.png", "-m", "msia", "--max-memory", "1000G")
    shapes = fakes.calls["msia"].shapes
    assert shapes[-1] == whole and shapes.count(whole) == 1 and len(shapes) == 1
    fakes.reset()
    fp = methods.get("msia").variants[0].footprint
    h, w = io.read_image(photo[0]).shape[:2]
    cap = int(fp.fixed + fp.image_bytes() * h * w + fp.passes["whole"] * 200 * 200 / PLAN_MARGIN) + 1
    _matte(runner, photo, tmp_path / "b.png", "-m", "msia", "--max-memory", str(cap))
    tiles = fakes.calls["msia"].shapes  # the fake pools nothing globally: no context pass, tiles only
    assert whole not in tiles and len(tiles) >= 4
    assert all(t[2] * t[3] <= 200 * 200 and t[2] % 16 == t[3] % 16 == 0 for t in tiles)
    refused = invoke(runner, ["matte", photo[0], tmp_path / "c.png", "-m", "msia", "--max-memory", "100K"])
    assert refused.exit_code == 2 and "--max-memory 100K cannot hold this run" in refused.stderr


# ----------------------------------------------------------------------------- --precision
@pytest.mark.parametrize("method,variant", [("aim", "aim"), ("msia", "msia"), ("shm", "shm-mindspore")])
def test_precision_bf16_runs_the_network_under_cpu_autocast(runner, fakes, photo, tmp_path, method, variant):
    _matte(runner, photo, tmp_path / "a.png", "-m", method)
    assert {c[0] for c in fakes.calls[variant].autocast} == {False}
    assert set(fakes.calls[variant].conv_dtypes) == {torch.float32}
    fakes.reset()
    _matte(runner, photo, tmp_path / "b.png", "-m", method, "--precision", "bf16")
    assert set(fakes.calls[variant].autocast) == {(True, torch.bfloat16)}
    assert set(fakes.calls[variant].conv_dtypes) == {torch.bfloat16}


def test_precision_bf16_reaches_both_sim_networks(runner, fakes, tmp_path):
    image, _, trimap = synthetic_scene(64, 80, seed=3)
    photo = write_rgb(tmp_path / "s.png", image), write_gray(tmp_path / "st.png", trimap)
    _matte(runner, photo, tmp_path / "b.png", "-m", "sim", "-t", photo[1], "--precision", "bf16")
    for variant in ("sim-comp1k", "sim-classifier"):
        assert set(fakes.calls[variant].conv_dtypes) == {torch.bfloat16}, variant


# ----------------------------------------------------------------------------- --variant
def test_variant_picks_the_network_and_its_test_rule(runner, fakes, photo, tmp_path):
    _matte(runner, photo, tmp_path / "a.png", "-m", "shm")
    assert [v for v, _ in fakes.loads] == ["shm-mindspore"]
    assert fakes.calls["shm-mindspore"].shapes == [(1, 3, 320, 320)]  # the model zoo's 320x320 evaluation
    fakes.reset()
    _matte(runner, photo, tmp_path / "b.png", "-m", "shm", "--variant", "shm")
    assert [v for v, _ in fakes.loads] == ["shm"]
    assert fakes.calls["shm"].shapes == [(1, 3, 336, 528)]  # the paper's rule: the whole image, padded to 16
    from mattecli import methods

    # and what load_network builds for that variant is the paper's network
    built = methods.get("shm").variant_named("shm").architecture.build()
    from mattecli.methods.shm.net import SHMNet

    assert isinstance(built, SHMNet)


def test_sim_variant_and_weights_files_reach_the_loader(runner, fakes, tmp_path):
    image, _, trimap = synthetic_scene(40, 56, seed=4)
    photo = write_rgb(tmp_path / "s.png", image), write_gray(tmp_path / "st.png", trimap)
    _matte(runner, photo, tmp_path / "a.png", "-m", "sim", "-t", photo[1])
    assert fakes.loads == [("sim-comp1k", None), ("sim-classifier", None)]
    fakes.reset()
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"x")  # the fake loader does not read it; --weights must only exist
    _matte(runner, photo, tmp_path / "b.png", "-m", "sim", "-t", photo[1], "--variant", "sim-simd", "--weights", mine)
    assert fakes.loads == [("sim-simd", mine), ("sim-classifier", None)]


# ----------------------------------------------------------------------------- --compile, --device, --ray-address
def test_compile_compiles_the_network(runner, fakes, photo, tmp_path, monkeypatch):
    compiled = []

    def fake_compile(model, *args, **kwargs):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    _matte(runner, photo, tmp_path / "a.png", "-m", "aim")
    assert compiled == []
    _matte(runner, photo, tmp_path / "b.png", "-m", "aim", "--compile")
    # the network, or the method of it that the processor calls
    assert len(compiled) == 1 and isinstance(getattr(compiled[0], "__self__", compiled[0]), FakeAim)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--ray-address", "ray://head:10001"], "--ray-address needs --ray"),
        (["--ray", "--device", "cpu,cpu"], "do not combine"),
        (["--shard", "1/2", "--device", "cpu,cpu"], "--shard and several --device values do not combine"),
    ],
)
def test_backend_options_that_do_not_combine_are_usage_errors(runner, tmp_path, args, message):
    image, _, trimap = synthetic_scene(16, 20)
    img, tri = write_rgb(tmp_path / "i.png", image), write_gray(tmp_path / "t.png", trimap)
    out = tmp_path / "out"
    result = invoke(runner, ["matte", "-m", "cf", img, out, "-t", tri, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()


def test_device_all_without_cuda_is_a_usage_error(runner, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    image = write_rgb(tmp_path / "i.png", np.zeros((8, 8, 3), np.float32))
    result = invoke(runner, ["matte", "-m", "aim", image, tmp_path / "out", "--device", "all"])
    assert result.exit_code == 2, result.output
    assert "--device all" in result.stderr or "CUDA" in result.stderr
    assert not (tmp_path / "out").exists()
