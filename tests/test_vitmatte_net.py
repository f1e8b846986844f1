"""ViTMatte's network and encoding against Hugging Face transformers (an independent implementation).

A ``VitMatteForImageMatting`` built from the hub's configurations (``hustvl/vitmatte-small-composition-1k``
and ``hustvl/vitmatte-base-*``'s ``config.json``) with seeded, non-degenerate random weights is copied
into ours with ``strict=True``; ``VitMatteImageProcessor`` (the hub's ``preprocessor_config.json``)
encodes uint8 images and trimaps beside our ``encode``; the alphas, cropped back, must agree.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from mattecli.methods.vitmatte import net as vitmatte_net  # noqa: E402
from mattecli.methods.vitmatte.encode import crop, encode  # noqa: E402
from mattecli.methods.vitmatte.net import vitmatte_base, vitmatte_small  # noqa: E402
from mattecli.runtime.fold import fold_batchnorm  # noqa: E402

#: the hub repositories' config.json (backbone_config and the decoder sizes), the width and heads per size
_HUB_BACKBONE = dict(
    num_channels=4,
    image_size=512,
    pretrain_image_size=224,
    patch_size=16,
    use_absolute_position_embeddings=True,
    use_relative_position_embeddings=True,
    window_size=14,
    window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10],
    residual_block_indices=[2, 5, 8, 11],
    out_features=["stage12"],
)
_SIZES = {"small": (384, 6), "base": (768, 12)}
#: the hub repositories' preprocessor_config.json
_HUB_PROCESSOR = dict(
    do_rescale=True,
    rescale_factor=1 / 255,
    do_normalize=True,
    image_mean=[0.5, 0.5, 0.5],
    image_std=[0.5, 0.5, 0.5],
    do_pad=True,
    size_divisibility=32,  # the hub's (legacy) name; transformers 5 reads it as size_divisor
)


def _hf_model(size: str, seed: int = 0):
    """transformers' model with the hub's configuration and seeded weights that make a spread-out alpha
    (the default init zeroes the residual blocks' last norms and shrinks the batch norms' scales)."""
    dim, heads = _SIZES[size]
    backbone = transformers.VitDetConfig(hidden_size=dim, num_attention_heads=heads, **_HUB_BACKBONE)
    config = transformers.VitMatteConfig(
        backbone_config=backbone,
        hidden_size=dim,
        convstream_hidden_sizes=[48, 96, 192],
        fusion_hidden_sizes=[256, 128, 64, 32],
    )
    try:  # every parameter and statistic is set below: skip transformers' own (slow) initialisation
        from transformers.initialization import no_init_weights
    except ImportError:
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = transformers.VitMatteForImageMatting(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("position_embeddings"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif p.ndim > 1:  # fan-in scaled: activations keep their size through the depth
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):  # LayerNorm / BatchNorm scales
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        model.decoder.matting_head.matting_convs[3].weight.mul_(8.0)  # logits of a few units: alphas near 0 and 1
    return model


def _ours(model, factory):
    net = factory().eval()
    net.load_state_dict(model.state_dict(), strict=True)
    return net


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: these inputs are small, and on a loaded machine every parallel region of the
    many small operations waits for a descheduled thread (measured: 0.8 s with one, 18 s with two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small():
    model = _hf_model("small")
    return model, _ours(model, vitmatte_small)


def _image_and_trimap(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random uint8 RGB image with noise, and a trimap: a foreground blob, an unknown band, background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], -1)
    image = np.clip(127.5 + 90 * base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    r = np.hypot(yy - 0.5 * h / max(h, w), xx - 0.45 * w / max(h, w)) * max(h, w) / min(h, w)
    r = r + 0.03 * rng.standard_normal((h, w))
    trimap = np.where(r < 0.25, 255, np.where(r < 0.4, 128, 0)).astype(np.uint8)
    return image, trimap


def _processor():
    return transformers.VitMatteImageProcessor(**_HUB_PROCESSOR)


def _processed(image: np.ndarray, trimap: np.ndarray) -> torch.Tensor:
    return _processor()(images=image, trimaps=trimap, return_tensors="pt")["pixel_values"]


def test_keys_are_the_hub_layout(small):
    model, net = small
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in vitmatte_small().state_dict().items()}
    assert ours == theirs
    assert "backbone.encoder.layer.2.residual.norm3.weight" in ours
    assert ours["backbone.encoder.layer.2.attention.rel_pos_h"] == (63, 64)  # global: 512 / 16 = 32 tokens
    assert ours["backbone.encoder.layer.0.attention.rel_pos_h"] == (27, 64)  # windows of 14
    assert ours["backbone.embeddings.position_embeddings"] == (1, 197, 384)
    assert "backbone.encoder.layer.0.residual.conv1.weight" not in ours


@pytest.mark.parametrize("hw", [(97, 131), (480, 640), (64, 96)])
def test_encode_equals_the_processor(hw):
    image, trimap = _image_and_trimap(*hw, seed=1)
    theirs = _processed(image, trimap)
    ours = encode(image.astype(np.float32) / 255, trimap)
    assert ours.dtype == torch.float32
    assert ours.shape == theirs.shape == (1, 4, -(-hw[0] // 32) * 32, -(-hw[1] // 32) * 32)
    assert (ours - theirs).abs().max().item() <= 1e-6
    # the padding is zero in all four channels, added after the normalisation; none at multiples of 32
    assert not ours[..., hw[0] :, :].any() and not ours[..., hw[1] :].any()


def test_encode_with_the_authors_normalisation():
    """The authors' ImageNet statistics (their configs/common/model.py), through the processor's own options."""
    image, trimap = _image_and_trimap(97, 131, seed=8)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    processor = transformers.VitMatteImageProcessor(**{**_HUB_PROCESSOR, "image_mean": mean, "image_std": std})
    theirs = processor(images=image, trimaps=trimap, return_tensors="pt")["pixel_values"]
    ours = encode(image.astype(np.float32) / 255, trimap, mean=mean, std=std)
    assert (ours - theirs).abs().max().item() <= 1e-6


@pytest.mark.parametrize("hw", [(97, 131), (480, 640)])
def test_alpha_equals_transformers(small, hw):
    model, net = small
    image, trimap = _image_and_trimap(*hw, seed=2)
    pixel_values = _processed(image, trimap)
    with torch.no_grad():
        theirs = crop(model(pixel_values=pixel_values).alphas, *hw)
        ours = crop(net(encode(image.astype(np.float32) / 255, trimap)), *hw)
    assert ours.shape == theirs.shape == (1, 1, *hw)
    # the random weights are not degenerate: the alpha spreads over [0, 1]
    assert theirs.std().item() > 0.1 and theirs.min().item() < 0.1 and theirs.max().item() > 0.9
    assert (ours - theirs).abs().max().item() <= 1e-5


# fp32 bias of 2 images: a global block's (4 x 6 tokens) is 4 x 1152 bytes per head, a window's 14 x 21952
@pytest.mark.parametrize("mask_bytes", [1, 4 * 4 * 1152, 5 * 21952])
def test_batch_and_attention_blocks(small, monkeypatch, mask_bytes):
    """Two images at once, the relative-position bias in blocks: of one head and one query row everywhere, of
    3 of the 6 heads in the global blocks, of one head and 5 query rows in the windows."""
    model, net = small
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 64, 96, generator=g)
    x[:, 3] = torch.randint(0, 3, (2, 64, 96), generator=g) / 2
    with torch.no_grad():
        theirs = model(pixel_values=x).alphas
        monkeypatch.setattr(vitmatte_net, "MASK_BYTES", mask_bytes)
        ours = net(x)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_native_grid(small):
    """224 x 224: the 14 x 14 absolute grid as trained, not resized."""
    model, net = small
    g = torch.Generator().manual_seed(4)
    x = torch.randn(1, 4, 224, 224, generator=g)
    with torch.no_grad():
        assert (net(x) - model(pixel_values=x).alphas).abs().max().item() <= 1e-5


@pytest.mark.parametrize("size", [1, 4, 14, 32, 68, 120])
def test_position_embeddings_equal_transformers(small, size):
    """The relative tables (63 rows, made for 32 tokens: shrunk, kept, stretched) and the absolute grid (14 x 14)."""
    from transformers.models.vitdet.modeling_vitdet import get_rel_pos

    model, net = small
    attention = model.backbone.encoder.layer[2].attention
    with torch.no_grad():
        theirs = get_rel_pos(size, size, attention.rel_pos_h)
        assert torch.equal(vitmatte_net.rel_pos_table(size, attention.rel_pos_h), theirs)
        pos = model.backbone.embeddings.position_embeddings
        theirs = model.backbone.embeddings.get_absolute_positions(pos, True, size, size + 3)
        assert torch.equal(vitmatte_net.resize_abs_pos(pos, size, size + 3), theirs)
        assert torch.equal(vitmatte_net.resize_abs_pos(pos, 14, 14), pos[:, 1:].reshape(1, 14, 14, -1))


def test_folded_batch_norms_keep_the_alpha(small):
    model, _ = small
    net = _ours(model, vitmatte_small)
    x = encode(*(lambda i, t: (i.astype(np.float32) / 255, t))(*_image_and_trimap(97, 131, seed=5)))
    with torch.no_grad():
        before = net(x)
        assert fold_batchnorm(net) == 8  # three ConvStream, four fusion blocks, the matting head
        after = net(x)
        theirs = model(pixel_values=x).alphas
    assert (after - before).abs().max().item() <= 1e-5
    assert (after - theirs).abs().max().item() <= 1e-5


def test_base_configuration():
    model = _hf_model("base", seed=6)
    net = vitmatte_base().eval()
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    net.load_state_dict(model.state_dict(), strict=True)
    image, trimap = _image_and_trimap(64, 96, seed=7)
    with torch.no_grad():
        theirs = model(pixel_values=_processed(image, trimap)).alphas
        ours = net(encode(image.astype(np.float32) / 255, trimap))
    assert theirs.std().item() > 0.05
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_errors():
    net = vitmatte_small()
    with pytest.raises(ValueError, match="multiples"):
        net(torch.zeros(1, 4, 40, 64))
    with pytest.raises(ValueError, match="expected"):
        net(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="trimap"):
        encode(np.zeros((8, 8, 3), np.float32), np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match="image"):
        encode(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="crop"):
        crop(torch.zeros(1, 1, 32, 32), 33, 10)
