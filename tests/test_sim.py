"""SIM: official key layouts, checkpoint import, weight standardisation, encodings, CAMs, test pipeline, CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from conftest import EXAMPLES
from helpers import assert_equals_at_16_bits, crops, make_context, matter, random_net
from typer.testing import CliRunner

from mattecli import io, methods
from mattecli.errors import UnknownCheckpointError
from mattecli.methods.base import IMAGENET, MethodOptions
from mattecli.methods.sim import semantic
from mattecli.methods.sim.convert import is_official, is_official_classifier, remap_official_classifier
from mattecli.methods.sim.encode import (
    distance_encoding,
    encode_inputs,
    pad_amounts,
    padded_crop,
    padded_index,
    two_channel_trimap,
)
from mattecli.methods.sim.net import SIMClassifier, SIMNet, WSConv2d, standardize_weight
from mattecli.methods.sim.processor import SimProcessor
from mattecli.methods.sim.semantic import PatchAnalyzer

# ----------------------------------------------------------------------------- helpers (test_semantic_trimap uses them)


def save_official_matting(net: SIMNet, path: Path) -> Path:
    """The authors' save_checkpoint format: {'epoch', 'state_dict' (no 'module.'), 'best_sad'}."""
    torch.save({"epoch": 120, "state_dict": net.state_dict(), "best_sad": np.float64(27.7)}, path)
    return path


def save_official_classifier(net: SIMClassifier, path: Path, prefix: str = "module.") -> Path:
    """The PyTorch ImageNet-example format: {'epoch', 'arch', 'state_dict' (DataParallel prefix), ...}."""
    sd = {prefix + k: v for k, v in net.state_dict().items()}
    torch.save({"epoch": 30, "arch": "resnet50", "state_dict": sd, "best_acc1": torch.tensor(91.5)}, path)
    return path


def install_weights(hub: Path, variants: tuple[str, ...]) -> None:
    """Link imported weights (made once per module in ``hub``) into this test's isolated HF cache."""
    from mattecli.weights.store import hub_cache

    target = hub_cache()
    target.mkdir(parents=True, exist_ok=True)
    for variant in variants:
        name = f"models--mattecli-imports--{variant}"
        (target / name).symlink_to(hub / name, target_is_directory=True)


def import_into(root: Path, files: dict[str, Path]) -> Path:
    """Import official-format files with ``mattecli.weights.import_checkpoint`` into a private cache."""
    from huggingface_hub import constants as hf_constants

    from mattecli.weights import import_checkpoint

    hub = root / "hub"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(hub))
        for variant, path in files.items():
            import_checkpoint(variant, path)
    return hub


def cli_app() -> typer.Typer:
    """A small app with the real ``matte`` and ``semantic-trimap`` commands."""
    from mattecli.cli.matte import matte
    from mattecli.cli.semantic_trimap import semantic_trimap

    app = typer.Typer()
    app.command("matte")(matte)
    app.command("semantic-trimap")(semantic_trimap)
    return app


def invoke(args: list) -> object:
    return CliRunner().invoke(cli_app(), [str(a) for a in args])


def blob_trimap(h: int, w: int) -> np.ndarray:
    """Foreground ellipse, an unknown ring around it, background elsewhere."""
    yy, xx = np.mgrid[:h, :w]
    r = np.sqrt(((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2)
    tri = np.zeros((h, w), np.uint8)
    tri[r < 1.2] = 128
    tri[r < 0.7] = 255
    return tri


def official_semantic(cam_fn, image_n, trimap, steps=(320, 800)):
    """Reference: the official extract_semantic_trimap_whole loop, tensor slicing with negative starts as-is."""
    n, _, h, w = image_n.shape
    cam = torch.zeros(n, 20, h, w)
    weight = torch.zeros(n, 20, h, w)
    for step in steps:
        xs = list(range(0, w - step, step // 2)) + [w - step]
        ys = list(range(0, h - step, step // 2)) + [h - step]
        for i in ys:
            for j in xs:
                pt = trimap[:, :, i : i + step, j : j + step]
                if (pt == 128).sum() == 0:
                    continue
                pi = image_n[:, :, i : i + step, j : j + step]
                c = F.interpolate(cam_fn(torch.cat([pi, pt / 255.0], 1)), pi.shape[2:], mode="bilinear")
                cam[:, :, i : i + step, j : j + step] += c
                weight[:, :, i : i + step, j : j + step] += 1
    cam = cam / torch.clamp_min(weight, 1)
    return (cam - cam.min()) / (cam.max() - cam.min()) * (trimap == 128).float()


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def nets():
    return random_net(SIMNet(), 1), random_net(SIMClassifier(), 2)


@pytest.fixture(scope="module")
def imported(tmp_path_factory, nets):
    """Official-format checkpoints of the random nets, imported once into a private cache."""
    root = tmp_path_factory.mktemp("sim_weights")
    net, clf = nets
    files = {
        "sim-comp1k": save_official_matting(net, root / "ckpt_best.pth"),
        "sim-classifier": save_official_classifier(clf, root / "classifier_resnet50_best.pth.tar"),
    }
    return import_into(root, files), files


# ----------------------------------------------------------------------------- layouts (sim.md 2.5, 3)
def test_matting_state_dict_matches_the_digest(nets):
    sd = nets[0].state_dict()
    assert len(sd) == 410
    assert sum(k.startswith("encoder.") for k in sd) == 331 and sum(k.startswith("decoder.") for k in sd) == 79
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 65
    assert sum(p.numel() for p in nets[0].parameters()) == 46_609_840
    expected = {
        "encoder.conv1.weight": (64, 11, 3, 3),
        "encoder.conv1_side.weight": (64, 20, 7, 7),
        "encoder.conv2.weight": (64, 64, 3, 3),
        "encoder.conv3.weight": (128, 64, 3, 3),
        "encoder.bn3.running_var": (128,),
        "encoder.layer1.0.conv1.weight": (64, 128, 1, 1),
        "encoder.layer1.0.downsample.0.weight": (256, 128, 1, 1),
        "encoder.layer2.0.conv2.weight": (128, 128, 3, 3),
        "encoder.layer3.0.downsample.0.weight": (1024, 512, 1, 1),
        "encoder.layer3.5.bn3.weight": (1024,),
        "encoder.layer4.0.conv3.weight": (2048, 512, 1, 1),
        "decoder.global_module.convs.0.0.weight": (256, 2048, 1, 1),
        "decoder.global_module.convs.3.0.weight": (256, 2048, 3, 3),
        "decoder.global_module.convs.3.1.running_mean": (256,),
        "decoder.global_module.convs.4.1.weight": (256, 2048, 1, 1),
        "decoder.global_module.convs.4.2.weight": (256,),
        "decoder.global_module.project.0.weight": (256, 1280, 1, 1),
        "decoder.conv_up1.0.weight": (256, 2304, 3, 3),
        "decoder.conv_up1.0.bias": (256,),
        "decoder.conv_up1.3.weight": (256, 256, 3, 3),
        "decoder.conv_up1.3.bias": (256,),
        "decoder.conv_up1.4.running_var": (256,),
        "decoder.conv_up2.0.weight": (256, 512, 3, 3),
        "decoder.conv_up3.0.weight": (64, 384, 3, 3),
        "decoder.conv_up4_alpha.0.weight": (32, 72, 3, 3),
        "decoder.conv_up4_alpha.2.weight": (16, 32, 3, 3),
        "decoder.conv_up4_alpha.4.weight": (1, 16, 1, 1),
        "decoder.conv_up4_fb.4.weight": (6, 16, 1, 1),
        "decoder.conv_up4_attn.0.weight": (32, 64, 3, 3),
        "decoder.conv_up4_attn.4.weight": (3, 16, 1, 1),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    for absent in ("encoder.fc.weight", "decoder.conv_up4_alpha.4.bias", "decoder.global_module.convs.0.0.bias"):
        assert absent not in sd
    # block counts 3/4/6/3
    for layer, blocks in (("layer1", 3), ("layer2", 4), ("layer3", 6), ("layer4", 3)):
        assert f"encoder.{layer}.{blocks - 1}.conv3.weight" in sd and f"encoder.{layer}.{blocks}.conv1.weight" not in sd


def test_classifier_state_dict_matches_the_digest(nets):
    net = nets[1]
    sd = net.state_dict()
    assert len(sd) == 320 and sum(p.numel() for p in net.parameters()) == 23_552_148
    assert tuple(sd["conv1.weight"].shape) == (64, 4, 7, 7)
    assert tuple(sd["layer1.0.conv1.weight"].shape) == (64, 64, 1, 1)
    assert tuple(sd["layer1.0.downsample.0.weight"].shape) == (256, 64, 1, 1)
    assert tuple(sd["layer4.2.bn3.running_var"].shape) == (2048,)
    assert tuple(sd["fc.weight"].shape) == (20, 2048) and tuple(sd["fc.bias"].shape) == (20,)


def test_encoder_dilations_and_feature_shapes(nets):
    enc = nets[0].encoder
    assert enc.layer3[0].conv2.dilation == (1, 1) and enc.layer3[0].conv2.stride == (1, 1)
    assert all(enc.layer3[i].conv2.dilation == (2, 2) == enc.layer3[i].conv2.padding for i in range(1, 6))
    assert enc.layer4[0].conv2.dilation == (2, 2) and enc.layer4[0].conv2.stride == (1, 1)
    assert all(enc.layer4[i].conv2.dilation == (4, 4) for i in (1, 2))
    assert enc.layer3[0].downsample[0].stride == (1, 1) == enc.layer4[0].downsample[0].stride
    assert enc.layer2[0].conv2.stride == (2, 2) and enc.layer2[0].downsample[0].stride == (2, 2)
    with torch.inference_mode():
        feats = enc.eval()(torch.randn(1, 11, 72, 96), torch.randn(1, 20, 72, 96))
    shapes = [tuple(f.shape[1:]) for f in feats]
    assert shapes == [(11, 72, 96), (128, 36, 48), (256, 18, 24), (512, 9, 12), (1024, 9, 12), (2048, 9, 12)]


def test_side_branch_is_added_before_the_first_batch_norm(nets):
    enc = nets[0].encoder
    x, smap = torch.randn(1, 11, 16, 24), torch.randn(1, 20, 16, 24)
    with torch.inference_mode():
        stem = enc(x, smap)[1]
        y = F.relu(enc.bn1(enc.conv1(x) + enc.conv1_side(smap)))
        y = F.relu(enc.bn3(enc.conv3(F.relu(enc.bn2(enc.conv2(y))))))
    torch.testing.assert_close(stem, y)


# ----------------------------------------------------------------------------- weight standardisation
def test_weight_standardisation_matches_an_independent_computation():
    torch.manual_seed(0)
    conv = WSConv2d(6, 5, 3, padding=1, bias=True)
    conv.weight.data.normal_(0.3, 2.0)
    w = conv.weight.detach().double().numpy()
    flat = w.reshape(5, -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    std = np.sqrt(centred.var(axis=1, ddof=1) + 1e-12) + 1e-5  # Bessel-corrected, eps inside and outside
    expected_w = torch.from_numpy((centred / std[:, None]).reshape(w.shape)).float()
    torch.testing.assert_close(standardize_weight(conv.weight.detach()), expected_w, atol=1e-6, rtol=1e-5)
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), F.conv2d(x, expected_w, conv.bias, padding=1), atol=1e-4, rtol=1e-4)
        biased = torch.from_numpy((centred / (np.sqrt(centred.var(axis=1) + 1e-12) + 1e-5)[:, None]).reshape(w.shape))
        assert (conv(x) - F.conv2d(x, biased.float(), conv.bias, padding=1)).abs().max() > 1e-3


def test_folding_weight_standardisation_is_exact_and_reset_by_loading(nets):
    torch.manual_seed(1)
    conv = WSConv2d(8, 4, 3, padding=2, dilation=2)
    raw = {k: v.clone() for k, v in conv.state_dict().items()}
    x = torch.randn(1, 8, 10, 12)
    with torch.no_grad():
        before = conv(x)
        conv.fold()
        conv.fold()  # idempotent
        assert torch.equal(conv(x), before)
        conv.load_state_dict(raw)  # raw weights again: standardised on the fly
        assert not conv.folded and torch.equal(conv(x), before)

    net = nets[0]
    folded = copy.deepcopy(net).fold_weight_standardization()
    assert (
        sum(isinstance(m, WSConv2d) for m in net.modules()) == 10
    )  # ASPP: 4 branches + pooling + projection; conv_up1-3: 4
    args = [torch.rand(1, 3, 64, 64), torch.rand(1, 2, 64, 64), torch.randn(1, 3, 64, 64)]
    args += [torch.rand(1, 6, 64, 64), torch.rand(1, 20, 64, 64)]
    with torch.inference_mode():
        a, b = net(*args), folded(*args)
    assert a.shape == (1, 1, 64, 64)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("tiles,tiled", [((4, 8, 16), True), ((2,), False)])
def test_unknown_only_tail_equals_the_whole_pass_on_unknown_pixels(nets, monkeypatch, tiles, tiled):
    """The pipeline's ``unknown_only`` pass: the last stages on tiles around unknown pixels give the
    whole pass's alphas there, bit for bit (a ring of unknown pixels, tiles of 16-64 px, crops at
    the image border and inside it); 8 px tiles, whose halos would cost more than the whole
    tail, fall back to it."""
    from mattecli.methods.sim import net as simnet

    net = copy.deepcopy(nets[0]).fold_weight_standardization()
    h, w = 264, 392
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    r = ((yy - 100.0) ** 2 + (xx - 330.0) ** 2).sqrt()  # reaches the right border
    tri = torch.where(r < 50, 255.0, torch.where(r < 75, 128.0, 0.0))[None, None]
    g = torch.Generator().manual_seed(4)
    args = [torch.rand(1, 3, h, w, generator=g), torch.cat([(tri == 0).float(), (tri == 255).float()], 1)]
    args += [torch.randn(1, 3, h, w, generator=g), torch.rand(1, 6, h, w, generator=g)]
    args += [torch.rand(1, 20, h, w, generator=g) * (tri == 128).float()]
    monkeypatch.setattr(simnet, "TAIL_TILES", tiles)
    crops = []
    tail = simnet.SIMDecoder._tail
    monkeypatch.setattr(
        simnet.SIMDecoder, "_tail", lambda self, x4, *a: crops.append(x4.shape[-2:]) or tail(self, x4, *a)
    )
    with torch.inference_mode():
        whole = net(*args)
        assert crops == [(h // 4, w // 4)]
        net.unknown_only = True
        part = net(*args)
    unknown = tri == 128
    assert torch.equal(part[unknown], whole[unknown])
    if not tiled:
        assert crops == [(h // 4, w // 4)] * 2
        return
    assert len(crops) > 2 and all(c[0] * c[1] < (h // 4) * (w // 4) for c in crops[1:])  # really tiled
    far = F.max_pool2d(unknown.float(), 129, 1, 64) == 0  # known pixels more than a tile from any unknown one
    assert bool(far.any()) and bool((part[far] == 0).all())


# ----------------------------------------------------------------------------- encodings (sim.md 2.4)
def _brute_force_distance(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
    return np.sqrt(d2.min(axis=-1))


def test_distance_encoding_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    tri = np.full((23, 31), 128, np.uint8)
    tri[:5, :] = 0
    tri[rng.random(tri.shape) < 0.03] = 0
    tri[15:20, 10:18] = 255
    tri[3, 29] = 200  # any other value counts as unknown
    got = distance_encoding(tri)
    assert got.shape == (23, 31, 6) and got.dtype == np.float32
    for k, region in enumerate((tri == 0, tri == 255)):
        d = _brute_force_distance(region)
        for j, s in enumerate((0.02, 0.08, 0.16)):
            expected = np.exp(-(d**2) / (2 * (s * 320) ** 2))
            np.testing.assert_allclose(got[:, :, 3 * k + j], expected, atol=2e-5)
    np.testing.assert_array_equal(two_channel_trimap(tri)[:, :, 0], tri == 0)
    np.testing.assert_array_equal(two_channel_trimap(tri)[:, :, 1], tri == 255)
    no_fg = distance_encoding(np.where(tri == 255, 128, tri).astype(np.uint8))
    assert not no_fg[:, :, 3:].any() and no_fg[:, :, :3].any()


@pytest.mark.parametrize("h,w,expected", [(320, 320, (8, 8)), (67, 93, (5, 3)), (333, 517, (3, 3)), (1, 8, (7, 8))])
def test_official_padding_amounts(h, w, expected):
    assert pad_amounts(h, w) == expected


def test_encode_inputs_pads_like_opencv_reflect_and_normalises():
    rng = np.random.default_rng(1)
    image = rng.random((13, 22, 3)).astype(np.float32)
    tri = blob_trimap(13, 22)
    enc = encode_inputs(image, tri, torch.device("cpu"))
    padded = cv2.copyMakeBorder(image, 0, 3, 0, 2, cv2.BORDER_REFLECT)
    padded_tri = cv2.copyMakeBorder(tri, 0, 3, 0, 2, cv2.BORDER_REFLECT)
    assert enc["size"] == (13, 22) and enc["image"].shape == (1, 3, 16, 24)
    np.testing.assert_array_equal(enc["image"][0].permute(1, 2, 0).numpy(), padded)
    np.testing.assert_array_equal(enc["trimap"][0, 0].numpy(), padded_tri.astype(np.float32))
    mean, std = np.array(IMAGENET.mean), np.array(IMAGENET.std)
    np.testing.assert_allclose(enc["image_n"][0].permute(1, 2, 0).numpy(), (padded - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(enc["two_chan"][0].permute(1, 2, 0).numpy(), two_channel_trimap(padded_tri))
    np.testing.assert_array_equal(enc["clicks"][0].permute(1, 2, 0).numpy(), distance_encoding(padded_tri))


@pytest.mark.parametrize("h,w", [(13, 22), (1, 5), (3, 2), (40, 17)])
def test_padded_crops_equal_crops_of_the_padded_image(h, w):
    """Tiles take crops of the virtually padded image (no full-size padded copy): same pixels as OpenCV's."""
    image = np.random.default_rng(h * w).random((h, w, 3)).astype(np.float32)
    ph, pw = pad_amounts(h, w)
    padded = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT)
    rows, cols = padded_index(h, ph), padded_index(w, pw)
    H, W = h + ph, w + pw
    for y0, y1, x0, x1 in [(0, H, 0, W), (0, min(h, 4), 0, min(w, 4)), (max(0, H - 5), H, 1, W), (H - 1, H, W - 1, W)]:
        np.testing.assert_array_equal(padded_crop(image, rows, cols, y0, y1, x0, x1), padded[y0:y1, x0:x1])


# ----------------------------------------------------------------------------- classifier CAM (sim.md 3)
def test_cam_is_the_fc_weight_applied_to_layer4_features():
    net = random_net(SIMClassifier(), 5)
    x = torch.randn(2, 4, 64, 96)
    with torch.inference_mode():
        y = net.maxpool(torch.relu(net.bn1(net.conv1(x))))
        feats = net.layer4(net.layer3(net.layer2(net.layer1(y)))).numpy()
        logits, cam = net(x)
        cam_only = net.cam(x)
    assert feats.shape == (2, 2048, 2, 3) and cam.shape == (2, 20, 2, 3)
    fc_w, fc_b = net.fc.weight.detach().numpy(), net.fc.bias.detach().numpy()
    expected = np.tensordot(fc_w, feats, axes=([1], [1])).transpose(1, 0, 2, 3)  # no bias, no ReLU
    np.testing.assert_allclose(cam.numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cam_only.numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), feats.mean(axis=(2, 3)) @ fc_w.T + fc_b, rtol=1e-4, atol=1e-4)
    assert (cam < 0).any()  # signed: no ReLU


# ----------------------------------------------------------------------------- checkpoints
def test_detect_and_remap_official_files(nets):
    net_sd, clf_sd = nets[0].state_dict(), nets[1].state_dict()
    assert is_official(net_sd) and not is_official(clf_sd)
    assert is_official_classifier(clf_sd) and not is_official_classifier(net_sd)
    for prefix in ("module.", "classifier."):  # the official loader drops any one leading component
        wrapped = {prefix + k: v for k, v in clf_sd.items()}
        assert is_official_classifier(wrapped)
        assert set(remap_official_classifier(wrapped)) == set(clf_sd)
    imagenet_like = dict(clf_sd, **{"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)})
    assert not is_official_classifier(imagenet_like)


def test_import_then_strict_load_reproduces_both_networks(tmp_path, imported, nets):
    from mattecli.weights import get_architecture, import_checkpoint, load_model

    hub, files = imported
    install_weights(hub, ("sim-comp1k", "sim-classifier"))
    net, clf = nets
    loaded, loaded_clf = load_model("sim-comp1k", "cpu"), load_model("sim-classifier", "cpu")
    for a, b in ((net, loaded), (clf, loaded_clf)):
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) == set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(1, 4, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(clf(x)[1], loaded_clf(x)[1])
    # the SIMD variant reads the same layout; a classifier file is refused as a matting one
    arch = get_architecture("sim-simd")
    assert arch.detect is is_official and isinstance(arch.build(), SIMNet)
    with pytest.raises(UnknownCheckpointError, match="looks like sim-classifier"):
        import_checkpoint("sim-comp1k", files["sim-classifier"])


# ----------------------------------------------------------------------------- test pipeline (sim.md 4)
def _reference_alpha(net: SIMNet, clf: SIMClassifier, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
    """The official run(): pad (cv2 reflect), encode, semantic trimap, forward, clamp, known regions, crop."""
    h, w = trimap.shape
    ph, pw = (h // 8 + 1) * 8 - h, (w // 8 + 1) * 8 - w
    img = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT)
    tri = cv2.copyMakeBorder(trimap, 0, ph, 0, pw, cv2.BORDER_REFLECT)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].float()  # noqa: E731
    mean, std = np.array(IMAGENET.mean), np.array(IMAGENET.std)
    image_scale, image_trans = t(img), t((img.astype(np.float64) - mean) / std)
    trimap_t = torch.from_numpy(tri)[None, None].float()
    two = t(two_channel_trimap(tri))
    clicks = t(distance_encoding(tri))
    with torch.no_grad():
        smap = official_semantic(lambda x: clf(x)[1], image_trans, trimap_t)
        pred = torch.clamp(net(image_scale, two, image_trans, clicks, smap), 0, 1)
    pred[trimap_t == 0] = 0
    pred[trimap_t == 255] = 1
    return pred[0, 0, :h, :w].numpy()


def test_pipeline_matches_the_official_procedure_on_an_odd_size(nets):
    net, clf = nets
    rng = np.random.default_rng(2)
    image = rng.random((67, 93, 3)).astype(np.float32)
    tri = blob_trimap(67, 93)
    expected = _reference_alpha(net, clf, image, tri)
    cpu = torch.device("cpu")
    folded = copy.deepcopy(net).fold_weight_standardization().to(memory_format=torch.channels_last)
    result = matter("sim", SimProcessor(folded, PatchAnalyzer(clf, cpu), make_context())).predict(
        image, tri, extras=True
    )
    alpha, st = result.alpha, result.extras["semantic"]
    assert alpha.shape == (67, 93) and alpha.dtype == np.float32
    assert st.scores.shape == (20, 67, 93) and not st.scores[:, tri != 128].any()
    np.testing.assert_allclose(alpha, expected, atol=2e-4)
    assert (alpha[tri == 0] == 0).all() and (alpha[tri == 255] == 1).all()
    # the semantic-trimap command's analysis gives the very maps the matting network saw
    np.testing.assert_array_equal(PatchAnalyzer(clf, cpu).analyze(image, tri).scores, st.scores)


class _FakeNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, image, two, image_n, clicks, smap):
        self.shapes.append([tuple(t.shape) for t in (image, two, image_n, clicks, smap)])
        return image[:, :1] * 0.5 + 0.25


class _FakeClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shapes = []

    def cam(self, x):
        self.shapes.append(tuple(x.shape))
        return F.avg_pool2d(x[:, :1], 32, ceil_mode=True).repeat(1, 20, 1, 1)


def test_odd_sizes_round_trip_through_padding_and_cropping():
    cpu = torch.device("cpu")
    fake, fake_clf = _FakeNet(), _FakeClassifier()
    ready = matter("sim", SimProcessor(fake, PatchAnalyzer(fake_clf, cpu), make_context()))
    rng = np.random.default_rng(3)
    image = rng.random((333, 517, 3)).astype(np.float32)
    tri = blob_trimap(333, 517)
    alpha = ready.predict(image, tri).alpha
    assert alpha.shape == (333, 517)
    assert fake.shapes == [[(1, 3, 336, 520), (1, 2, 336, 520), (1, 3, 336, 520), (1, 6, 336, 520), (1, 20, 336, 520)]]
    unknown = tri == 128
    np.testing.assert_allclose(alpha[unknown], image[:, :, 0][unknown] * 0.5 + 0.25, atol=1e-6)
    assert (alpha[tri == 0] == 0).all() and (alpha[tri == 255] == 1).all()
    # padded 336x520. 320 pass: rows 0, 16 x columns 0, 160, 200 = 6 patches, batched 4 + 2. 800 pass: both
    # sides are shorter, so Python's negative slicing keeps rows [0, 336) and columns [240, 520) only.
    assert fake_clf.shapes == [(4, 4, 320, 320), (2, 4, 320, 320), (1, 4, 336, 280)]


def test_registry_entry():
    spec = methods.get("sim")
    assert spec.needs_trimap and spec.stride == 8 and spec.capabilities.semantic_trimap
    assert [v.name for v in spec.variants] == ["sim-comp1k", "sim-simd"]
    assert [v.name for v in spec.companions] == ["sim-classifier"]


# ----------------------------------------------------------------------------- CLI
def test_cli_matte_sim_equals_the_library_at_16_bits(tmp_path, imported):
    """The official pipeline through the CLI, default patch analysis (320 and 800 px patches, both
    larger than these crops: one patch each, as the authors' slicing gives), equals the library's
    ``Matter.predict`` within 1/65535 at 16 bits, known regions clamped."""
    install_weights(imported[0], ("sim-comp1k", "sim-classifier"))
    assert semantic.PATCH_SIZES == (320, 800)
    images, trimaps = crops(tmp_path, (96, 128))
    image, tri = images / "fluffy.png", trimaps / "fluffy.png"  # one image: SIM is slow on the CPU
    out = tmp_path / "out.png"
    args = ["matte", image, out, "--method", "sim", "--trimap", tri, "--json", "--bit-depth", "16"]
    result = invoke(args + ["--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok"] and rows[0]["method"] == "sim"
    ready = methods.get("sim").create(MethodOptions(device="cpu"))
    assert ready.processor.analyzer.patch_sizes == (320, 800)
    # the CPU load path: both networks on Winograd's path, one classifier patch per pass, the tail
    # only around unknown pixels (what the 1/65535 equality below covers)
    for net in (ready.processor.net, ready.processor.analyzer.net):
        assert any("forward" in m.__dict__ and getattr(m, "_winograd_u", None) is not None for m in net.modules())
    assert ready.processor.analyzer.batch_size == semantic.CPU_BATCH_SIZE == 1 and ready.processor.net.unknown_only
    tri = io.read_trimap(tri)
    assert (tri == 128).any() and (tri == 0).any() and (tri == 255).any()
    assert_equals_at_16_bits(out, ready.predict(io.read_image(image), tri).alpha)
    alpha = io.read_gray(out)
    assert (alpha[tri == 0] == 0).all() and (alpha[tri == 255] == 1).all()


def test_cli_matte_sim_without_weights_says_how_to_import(tmp_path):
    out = tmp_path / "out"
    result = invoke(["matte", EXAMPLES / "images", out, "--method", "sim", "-t", EXAMPLES / "trimaps"])
    assert result.exit_code == 2
    assert "mattecli weights import sim-comp1k" in result.stderr and "Traceback" not in result.output
    assert not out.exists() or not any(out.iterdir())


def test_cli_matte_sim_without_classifier_names_it(tmp_path, imported):
    install_weights(imported[0], ("sim-comp1k",))
    result = invoke(["matte", EXAMPLES / "images", tmp_path / "o", "--method", "sim", "-t", EXAMPLES / "trimaps"])
    assert result.exit_code == 2 and "mattecli weights import sim-classifier" in result.stderr


def test_cli_matte_sim_without_a_trimap_predicts_one(tmp_path):
    result = invoke(["matte", EXAMPLES / "images", tmp_path / "o", "--method", "sim"])
    assert "note: sim needs a trimap and none was given" in result.stderr
    assert result.exit_code == 2 and "mattecli weights import" in result.stderr  # offline, no weights
