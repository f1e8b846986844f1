"""Every deep method through the tiling engine: tiled vs whole-image on random weights and odd sizes.

Networks get random weights calibrated to unit activations (``helpers.calibrate``), so float
rounding stays far below the tolerances. Two checks per method:

* one tile covering the image gives the whole-image answer (to 1e-5): tile inputs, padding,
  cropping and the replayed global context are right;
* several small tiles with a small halo stay within a tolerance measured here on random
  weights (random deep nets have wider effective receptive fields than trained ones; the
  halo-vs-error trade-off on full-size images is in ``bench/RESULTS.md``), and tiles whose
  area is entirely known are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import calibrate, make_context, matter, random_net

from mattecli import methods
from mattecli.errors import BadOptionError
from mattecli.methods.aim import processor as aim
from mattecli.methods.aim.net import AimNet
from mattecli.methods.base import IMAGENET, MethodOptions
from mattecli.methods.msia import processor as msia
from mattecli.methods.msia.net import MSIANet
from mattecli.methods.shm import processor as shm
from mattecli.methods.shm.net import SHMMindSporeNet, SHMNet
from mattecli.methods.sim import encode as sim_encode
from mattecli.methods.sim import processor as sim
from mattecli.methods.sim.net import SIMClassifier, SIMNet
from mattecli.methods.sim.semantic import PatchAnalyzer
from mattecli.runtime import tiles
from mattecli.runtime.device import prepare_model
from mattecli.runtime.executor import TilePolicy
from mattecli.runtime.tensors import image_to_tensor, pad_to_multiple

CPU = torch.device("cpu")


class _Run:
    """A processor behind the method contract (``Matter.predict``), read the way these comparisons use it."""

    def __init__(self, method: str, processor):
        self.processor = processor
        self.matter = matter(method, processor)

    def predict(self, image, trimap=None):
        return self.matter.predict(image, trimap).alpha

    def predict_with_trimap(self, image):
        result = self.matter.predict(image)
        return result.alpha, result.trimap

    def predict_with_semantic(self, image, trimap):
        result = self.matter.predict(image, trimap, extras=True)
        return result.alpha, result.extras["semantic"]


def _aim(net, strategy: str, policy=None) -> _Run:
    return _Run("aim", aim.AimProcessor(net, make_context(tiles=policy), strategy))


def _sim(net, analyzer, strategy: str, policy=None) -> _Run:
    return _Run("sim", sim.SimProcessor(net, analyzer, make_context(strategy=strategy, tiles=policy)))


def _shm(net, strategy: str, policy=None, encoding: str = "imagenet") -> _Run:
    return _Run("shm", shm.ShmProcessor(net, make_context(tiles=policy), strategy, encoding))


def _msia(net, strategy: str, policy=None) -> _Run:
    return _Run("msia", msia.MsiaProcessor(net, make_context(strategy=strategy, tiles=policy)))


def _tensor(image):
    return image_to_tensor(image, CPU, IMAGENET.mean, IMAGENET.std)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Texture plus a bright soft disk, so tiles see different statistics than the whole image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disk = np.exp(-(((yy - h * 0.45) / (h * 0.3)) ** 2 + ((xx - w * 0.4) / (w * 0.3)) ** 2))
    return np.clip(0.2 + 0.6 * disk[..., None] + 0.2 * rng.random((h, w, 3)), 0, 1).astype(np.float32)


def _trimap(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    r = np.sqrt(((yy - h * 0.45) / (h * 0.3)) ** 2 + ((xx - w * 0.4) / (w * 0.3)) ** 2)
    tri = np.zeros((h, w), np.uint8)
    tri[r < 1.0] = 128
    tri[r < 0.5] = 255
    return tri


def _policy(stride: int, *, tile: int, halo: int, blend: int = 8, batch: int = 2) -> TilePolicy:
    return TilePolicy(stride=stride, halo=halo, blend=blend, tile_size=tile, batch_size=batch)


def _counting(net: torch.nn.Module, sizes: list):
    """Record the input size of every forward of ``net``."""
    net.register_forward_pre_hook(lambda _m, args: sizes.append(tuple(args[0].shape)))
    return net


# ----------------------------------------------------------------------------- AIM
@pytest.fixture(scope="module")
def aim_net():
    torch.manual_seed(3)  # AimNet() draws its initial weights before random_net seeds: the same net in any test order
    net = random_net(AimNet(), 3)
    calibrate(net, _tensor(_image(128, 160)))
    return prepare_model(net, CPU)


def test_aim_tiled_focus_matches_the_whole_focus(aim_net):
    image = _image(150, 211)
    whole, tri = _aim(aim_net, "whole").predict_with_trimap(image)
    one = _aim(aim_net, "tiled", _policy(32, tile=512, halo=32))
    np.testing.assert_allclose(one.predict(image), whole, atol=1e-5)
    sizes = []
    _counting(aim_net.resnet.conv1, sizes)  # the processor calls AimNet.run, not forward: count the encoder's input
    tiled = _aim(aim_net, "tiled", _policy(32, tile=128, halo=32, blend=16))
    got, tri_tiled = tiled.predict_with_trimap(image)
    aim_net.resnet.conv1._forward_pre_hooks.clear()
    np.testing.assert_array_equal(tri_tiled, tri)
    ran = [s for s in sizes[1:] if s[0] > 0]
    assert len(ran) >= 2 and all(s[-1] % 32 == 0 and s[-2] % 32 == 0 for s in ran)
    diff = np.abs(got - whole)
    assert diff.max() < 0.05 and diff[tri == 128].mean() < 5e-3


# ----------------------------------------------------------------------------- SIM
@pytest.fixture(scope="module")
def sim_parts():
    image, tri = _image(100, 140), _trimap(100, 140)
    enc = sim_encode.encode_inputs(image, tri, CPU)
    clf = calibrate(random_net(SIMClassifier(), 2), torch.cat([enc["image_n"], enc["trimap"] / 255], 1))
    analyzer = PatchAnalyzer(clf, CPU)
    smap = analyzer.score_tensor(enc["image_n"], enc["trimap"])
    net = calibrate(random_net(SIMNet(), 1), enc["image"], enc["two_chan"], enc["image_n"], enc["clicks"], smap)
    return net.fold_weight_standardization().to(memory_format=torch.channels_last), analyzer


def test_sim_tiled_matches_whole(sim_parts):
    net, analyzer = sim_parts
    image, tri = _image(117, 153, 1), _trimap(117, 153)
    whole, st_whole = _sim(net, analyzer, "whole").predict_with_semantic(image, tri)
    matter = _sim(net, analyzer, "tiled", _policy(8, tile=512, halo=16))
    one, st_one = matter.predict_with_semantic(image, tri)
    np.testing.assert_allclose(one, whole, atol=1e-5)
    np.testing.assert_allclose(st_one.scores, st_whole.scores, atol=1e-6)
    tiled = _sim(net, analyzer, "tiled", _policy(8, tile=64, halo=16, blend=8))
    got = tiled.predict(image, tri)
    diff = np.abs(got - whole)
    assert (got[tri == 0] == 0).all() and (got[tri == 255] == 1).all()
    assert diff.max() < 0.1 and diff[tri == 128].mean() < 0.01


# ----------------------------------------------------------------------------- SHM
@pytest.mark.parametrize(
    "variant,size,halo,tol", [("shm-mindspore", (240, 300), 96, 1e-5), ("shm", (110, 150), 32, 0.1)]
)
def test_shm_tiled_m_net_matches_the_whole_m_net(variant, size, halo, tol):
    """The M-Nets have no global pooling: a halo covering the MindSpore M-Net's receptive field
    (96 px) reproduces the whole pass exactly; the paper's VGG M-Net needs ~128 px for 1e-4
    (measured on 300x380: 0.064 / 0.031 / 1.4e-3 / 1.2e-4 max at 24 / 48 / 96 / 128 px)."""
    net = random_net(SHMMindSporeNet() if variant == "shm-mindspore" else SHMNet(), 4)
    encoding = methods.get("shm").resolve(MethodOptions(device="cpu", variant=variant)).variant.params["encoding"]
    image = _image(*size, 2)
    x = torch.from_numpy(shm.encode(_image(144, 192, 2), encoding)).permute(2, 0, 1)[None]
    calibrate(net, x)
    net = prepare_model(net, CPU)
    whole, tri = _shm(net, "whole", None, encoding).predict_with_trimap(image)
    one = _shm(net, "tiled", _policy(16, tile=512, halo=32), encoding)
    np.testing.assert_allclose(one.predict(image), whole, atol=1e-5)
    sizes = []
    _counting(net.m_net, sizes)
    tile = 2 * halo + 8 + 16 + 16
    tiled = _shm(net, "tiled", _policy(16, tile=tile, halo=halo), encoding)
    got, tri_tiled = tiled.predict_with_trimap(image)
    net.m_net._forward_pre_hooks.clear()
    np.testing.assert_array_equal(tri_tiled, tri)
    assert len(sizes) >= 4 and all(s[1] == 6 and s[-1] % 16 == 0 and s[-1] <= tile for s in sizes)
    diff = np.abs(got - whole)
    assert diff.max() < tol and diff.mean() < tol / 10


def test_shm_tiles_without_unknown_probability_are_skipped():
    class Halves(torch.nn.Module):
        """T-Net: certain background on the left half, unknown on the right; M-Net: 0.5 everywhere."""

        fg_channel, unknown_channel = 2, 1

        def __init__(self):
            super().__init__()
            self.calls = []
            self.t_net = self._t_net
            self.m_net = self._m_net

        def _t_net(self, x):
            logits = torch.full((x.shape[0], 3, *x.shape[2:]), -20.0)
            w = x.shape[-1]
            logits[:, 0, :, : w // 2] = 20.0
            logits[:, 1, :, w // 2 :] = 20.0
            return logits

        def _m_net(self, x):
            self.calls.append(tuple(x.shape))
            return torch.full((x.shape[0], 1, *x.shape[2:]), 0.5)

    net = Halves()
    matter = _shm(net, "tiled", _policy(16, tile=64, halo=8))
    alpha = matter.predict(_image(64, 256))
    tiles_run = sum(c[0] for c in net.calls)
    assert 0 < tiles_run < len(tiles.tile_boxes(64, 256, 64, 2 * 8 + 8, 16))  # the left tiles were skipped
    np.testing.assert_allclose(alpha[:, :100], 0.0, atol=1e-6)
    np.testing.assert_allclose(alpha[:, 160:], 0.5, atol=1e-6)


# ----------------------------------------------------------------------------- MSIA
@pytest.fixture(scope="module")
def msia_net():
    """MSIA's full depth, strides, ASPP and assembly, at 1/8 of its width (groups 4) to keep the tests fast."""
    net = random_net(MSIANet(groups=4), 5)
    calibrate(net, _tensor(_image(128, 160)))
    return prepare_model(net, CPU)


def test_msia_tiled_matches_whole_and_skips_known_tiles(msia_net):
    image = _image(130, 170, 3)
    whole = _msia(msia_net, "whole").predict(image)
    one = _msia(msia_net, "tiled", _policy(16, tile=512, halo=32))
    np.testing.assert_allclose(one.predict(image), whole, atol=1e-5)
    tiled = _msia(msia_net, "tiled", _policy(16, tile=96, halo=24))
    got = tiled.predict(image)
    diff = np.abs(got - whole)
    # a 24 px halo is a sliver of a ResNeXt-101's receptive field: measured max 0.054, mean 0.013
    assert diff.max() < 0.1 and diff.mean() < 0.02
    # with a trimap, tiles holding only known pixels are not run at all
    tri = np.zeros((130, 170), np.uint8)
    tri[10:40, 10:40] = 128  # unknown pixels in the top-left corner only
    tri[15:35, 15:35] = 255
    sizes = []
    _counting(msia_net, sizes)
    tiled.predict(image, tri)
    with_trimap = len(sizes)
    sizes.clear()
    tiled.predict(image)
    msia_net._forward_pre_hooks.clear()
    assert with_trimap < len(sizes)


def _planned(net, strategy: str, cap: int, per_pixel: float = 1000.0) -> _Run:
    """MSIA on ``net`` with declared figures of ``per_pixel`` bytes per pass pixel under ``cap`` bytes."""
    from mattecli.runtime.memory import Budget, Footprint, MemoryPlan

    plan = MemoryPlan(Footprint(fixed=0, image=0.0, passes={"whole": per_pixel}), Budget(cap, "--max-memory"))
    policy = TilePolicy(stride=16, halo=16, blend=8)
    return _Run("msia", msia.MsiaProcessor(net, make_context(strategy=strategy, tiles=policy, memory=plan)))


def test_a_memory_cap_makes_auto_tile_and_a_large_budget_keeps_whole(msia_net):
    from mattecli.runtime.memory import PLAN_MARGIN

    image = _image(70, 90, 3)  # padded to 80 x 96
    small = int(72 * 72 * 1000 / PLAN_MARGIN) + 1  # room for 72^2 px at 1000 B/px
    sizes = []
    _counting(msia_net, sizes)
    big = _planned(msia_net, "auto", 1 << 40).matter.predict(image)
    assert sizes == [(1, 3, 80, 96)] and big.plan["strategy"] == "whole"  # one whole (padded) pass
    sizes.clear()
    with pytest.warns(RuntimeWarning, match="does not fit --max-memory .*: run at 48x32"):
        got = _planned(msia_net, "auto", small).matter.predict(image)
    msia_net._forward_pre_hooks.clear()
    # the context pass, halved until it fits (80 x 96 -> 32 x 48), then tiles within the cap
    assert sizes[0] == (1, 3, 32, 48) and got.plan["passes"] == {"whole": [32, 48]}
    tiles = sizes[1:]
    assert len(tiles) > 2 and all(s[0] * s[-1] * s[-2] <= 72 * 72 for s in tiles)
    assert got.plan["strategy"] == "tiled" and got.plan["tiles"] >= 2 and "run at 48x32" in got.plan["fallback"]
    with pytest.warns(RuntimeWarning):
        tiled = _planned(msia_net, "tiled", small).predict(image)
    np.testing.assert_array_equal(got.alpha, tiled)


def test_whole_pass_out_of_memory_falls_back_to_tiles_on_cuda_only(msia_net):
    class OomAbove(torch.nn.Module):
        def __init__(self, inner, limit):
            super().__init__()
            self.inner, self.limit = inner, limit

        def forward(self, x):
            if x.shape[-1] * x.shape[-2] * x.shape[0] > self.limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
            return self.inner(x)

    image = _image(70, 90, 3)  # padded to 80 x 96
    want = _msia(msia_net, "tiled", _policy(16, tile=64, halo=16, batch=1))
    guarded = OomAbove(msia_net, 80 * 96 - 1)  # the whole image no longer fits, tiles do
    with pytest.raises(torch.OutOfMemoryError):  # the CPU never relies on catching one
        _msia(guarded, "whole", _policy(16, tile=64, halo=16, batch=1)).predict(image)
    got = _msia(guarded, "whole", _policy(16, tile=64, halo=16, batch=1))
    got.processor.executor.device = torch.device("cuda")  # the executor's view; the network stays on the CPU
    with pytest.warns(RuntimeWarning, match="out of GPU memory"):
        result = got.matter.predict(image)
    # the fallback runs the tiles; its context pass (the whole image here) runs out too and is
    # retried at half size, hence a tolerance rather than equality with the unguarded run
    assert not np.isnan(result.alpha).any() and result.alpha.shape == (70, 90)
    assert float(np.abs(result.alpha - want.predict(image)).max()) < 0.1
    assert "computed on tiles" in result.plan["fallback"] and result.plan["passes"]["whole"] == [32, 48]


# ----------------------------------------------------------------------------- options and CLI
def test_scales_options_parse_or_fail_clearly():
    assert aim.parse_scales("0.25,1") == (0.25, 1.0)
    assert sim.scaled_patch_sizes("1,2.5") == (320, 800) and sim.scaled_patch_sizes([0.5]) == (160,)
    for bad in ("0.25", "0,1", "a,b", "0.5,2"):
        with pytest.raises(BadOptionError, match="GLANCE,FOCUS"):
            aim.parse_scales(bad)
    with pytest.raises(BadOptionError, match="patch scales"):
        sim.scaled_patch_sizes("x")


@pytest.mark.parametrize(
    "args,message",
    [
        (["-m", "aim", "--scales", "2,3"], "GLANCE,FOCUS"),
        (["-m", "msia", "--scales", "1,2"], "no multi-scale fusion"),
        (["-m", "aim", "--strategy", "sideways"], "--strategy of method aim must be one of hybrid, resize"),
        (["-m", "aim", "--max-memory", "lots"], "cannot read memory size"),
        (["-m", "aim", "--tile-size", "8"], "--tile-size must be >= 32"),
        (["-m", "shm", "--strategy", "hybrid"], "--strategy of method shm must be one of paper, resize, whole, tiled"),
    ],
)
def test_engine_flags_are_checked_before_any_work(runner, tmp_path, args, message):
    from conftest import EXAMPLES, invoke

    out = tmp_path / "out"
    result = invoke(runner, ["matte", EXAMPLES / "images", out, *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("h,w", [(37, 53), (3, 40), (150, 190)])
def test_shm_m_net_input_is_built_in_row_blocks_without_changing_it(h, w):
    """SHM's full-resolution M-Net input (padded image encoding + T-Net probabilities) built block by
    block equals padding each whole map (reflection for the image, edge for the probabilities)."""
    rng = np.random.default_rng(0)
    img, prob = rng.random((h, w, 3)).astype(np.float32), rng.random((h, w, 3)).astype(np.float32)
    got = shm._m_net_input(img, prob, "imagenet", block=7)
    x, _ = pad_to_multiple(torch.from_numpy(shm.encode(img, "imagenet")).permute(2, 0, 1)[None], 16)
    ph, pw = x.shape[-2] - h, x.shape[-1] - w
    p = torch.from_numpy(np.pad(prob, ((0, ph), (0, pw), (0, 0)), mode="edge")).permute(2, 0, 1)[None]
    torch.testing.assert_close(got, torch.cat([x, p], 1), atol=0, rtol=0)
