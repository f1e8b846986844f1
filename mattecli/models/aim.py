"""AIM: trimap-free matting with the official test strategies (``--method aim``).

Paper: Li, Zhang, Tao, "Deep Automatic Natural Image Matting", IJCAI 2021.
Official code: github.com/JizhiziLi/AIM (MIT) at 48e3dc8, ``core/test.py`` and
``core/util.py`` (digest: ``shared/refs/aim.md``). The network is in ``aim_net.py``.

Test strategies (``config.options["strategy"]``):

``hybrid`` (default, what the official test scripts run)
    The glance (semantic) pass runs on the image scaled by 1/4 and the focus
    (matting) pass on the image scaled by 1/2; each size is ``int(side * ratio)``
    floored to a multiple of 32 and capped at 1600 per side. The glance argmax
    trimap {0, 128, 255} and the focus alpha are upsampled back bilinearly the way
    scikit-image 0.14 does (zero outside the image); pixels whose upsampled trimap
    is exactly 255 / 0 become 1 / 0, every other pixel takes the focus alpha.
``resize``
    One pass at 1/4; the network's own fused output is upsampled.
``tiled`` (mattecli's addition, for large images)
    The glance trimap comes from the 1/4 pass as in ``hybrid``; the focus alpha is
    computed at full resolution on overlapping tiles (``tile_size``, default 512,
    overlap ``tile_overlap``, default 64, both multiples of 32 after rounding) and
    blended with raised-cosine windows. Tiles whose area holds no transition pixel
    are skipped. This keeps 8K detail that the 1/2-scale focus pass loses, with
    memory bounded by the tile size.

Deviations, all for inputs the official code cannot take: sizes below 32 are
raised to 32 (the official rounding would give 0), and the "exactly 0 / 255"
test allows 1e-4 of floating-point slack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mattecli.models import register
from mattecli.models._spec import MethodConfig, MethodSpec
from mattecli.weights import register_architecture

__all__ = [
    "AimMatter",
    "STRATEGIES",
    "scaled_size",
    "hybrid_fuse",
    "remap_official",
    "is_official",
]

STRATEGIES = ("hybrid", "resize", "tiled")
GLANCE_RATIO = 1 / 4
FOCUS_RATIO = 1 / 2
MAX_SIDE = 1600


def scaled_size(h: int, w: int, ratio: float, *, multiple: int = 32, cap: int = MAX_SIDE) -> tuple[int, int]:
    """The official test size: ``int(side * ratio)`` floored to ``multiple`` and capped, per side."""

    def one(side: int) -> int:
        s = int(side * ratio)
        return max(multiple, min(cap, s - s % multiple))

    return one(h), one(w)


def hybrid_fuse(trimap_up: np.ndarray, focus_up: np.ndarray, tol: float = 1e-4) -> np.ndarray:
    """Official HYBRID fusion on upsampled maps in [0, 1]: exact fg -> 1, exact bg -> 0, else the focus alpha."""
    out = focus_up.astype(np.float32).copy()
    out[np.abs(trimap_up - 1.0) <= tol] = 1.0
    out[np.abs(trimap_up) <= tol] = 0.0
    return out


# ----------------------------------------------------------------------------- official checkpoint
_ALIASES = [  # official duplicate name -> our name (the backbone is registered twice officially)
    (re.compile(r"^encoder0\.0\."), "resnet.conv1."),
    (re.compile(r"^encoder0\.1\."), "resnet.bn1."),
    (re.compile(r"^encoder1\.0\."), "resnet.layer1."),
    (re.compile(r"^encoder2\."), "resnet.layer2."),
    (re.compile(r"^encoder3\."), "resnet.layer3."),
    (re.compile(r"^encoder4\."), "resnet.layer4."),
]


def is_official(state_dict: Mapping) -> bool:
    """Whether a state dict looks like the official AimNet one (sentinel keys of both decoders)."""
    return "decoder_final_g.weight" in state_dict and "decoder_final_l.weight" in state_dict


def remap_official(state_dict: dict) -> dict:
    """Official AimNet state dict -> ours.

    Folds the ``encoder0..4.*`` aliases into ``resnet.*`` (checking that both copies
    hold the same values; a file with only the aliases is accepted too) and drops
    the unused ImageNet classifier ``resnet.fc.*``.

    Raises:
        CheckpointMismatchError: an alias whose values differ from its ``resnet.*`` twin.
    """
    import torch

    from mattecli.errors import CheckpointMismatchError

    out: dict = {}
    aliases: dict = {}
    for key, value in state_dict.items():
        if key.startswith("resnet.fc."):
            continue
        for pattern, repl in _ALIASES:
            if pattern.match(key):
                aliases[pattern.sub(repl, key)] = (key, value)
                break
        else:
            out[key] = value
    for ours, (theirs, value) in aliases.items():
        if ours in out:
            if out[ours].shape != value.shape or not torch.equal(out[ours], value):
                raise CheckpointMismatchError(f"AIM checkpoint: {theirs} differs from its alias {ours}")
        else:
            out[ours] = value
    return out


def _build():
    from mattecli.models.aim_net import AimNet

    return AimNet()


register_architecture("aim", build=_build, remap=remap_official, detect=is_official)


# ----------------------------------------------------------------------------- inference
@dataclass
class AimMatter:
    """A loaded AimNet with the official test strategy; ``predict`` needs no trimap.

    Memory: whole-image passes that run out of device memory are not lost. A glance
    pass is retried at half the size; a focus pass falls back to blended tiles at the
    same scale. Tiles and batches come from ``memory_budget`` (bytes) unless
    ``tile_size`` / ``batch_size`` are given, and shrink further on out-of-memory
    errors (:func:`mattecli.engine.tiled_apply_safe`). Every fallback warns.
    """

    net: object
    device: object
    precision: str = "fp32"
    strategy: str = "hybrid"
    tile_size: int | None = None
    tile_overlap: int = 64
    batch_size: int | None = None
    memory_budget: int | None = None
    weights_path: object = None  # the file the weights came from (bench reports its sha256)
    _bytes_per_pixel: float | None = None

    def _forward(self, x):
        import torch

        from mattecli import engine

        with torch.inference_mode(), engine.autocast(self.device, self.precision):
            glance, focus, fusion = self.net(engine.channels_last(x))
        return glance.float(), focus.float(), fusion.float()

    def _glance(self, x_full, h: int, w: int):
        """The glance pass at the official 1/4 scale, halved until it fits in memory."""
        import warnings

        from mattecli import engine
        from mattecli.errors import DeviceError

        size = scaled_size(h, w, GLANCE_RATIO)
        while True:
            try:
                return self._forward(engine.resize(x_full, size))
            except Exception as err:
                if not engine.is_oom(err):
                    raise
                if size == (32, 32):
                    raise DeviceError("out of memory even for a 32x32 glance pass") from err
                size = scaled_size(size[0], size[1], 0.5)
                warnings.warn(
                    f"AIM glance pass out of memory: retrying at {size[1]}x{size[0]}", RuntimeWarning, stacklevel=2
                )

    def _tile_plan(self) -> tuple[int, int]:
        from mattecli import engine

        if self.tile_size and self.batch_size:
            return max(32, self.tile_size - self.tile_size % 32), self.batch_size
        budget = self.memory_budget or engine.memory_budget(self.device)
        if self._bytes_per_pixel is None:  # one small probe forward per run
            self._bytes_per_pixel = engine.activation_bytes_per_pixel(self.net, 3, stride=32, forward=self._forward)
        tile, batch = engine.plan_tiles(budget, self._bytes_per_pixel, stride=32, max_tile=self.tile_size or 1024)
        return (max(32, self.tile_size - self.tile_size % 32) if self.tile_size else tile), (self.batch_size or batch)

    def _focus_tiles(self, x, transition: np.ndarray | None):
        """Focus alpha of a normalised ``(1,3,H,W)`` tensor on blended tiles (tiles without transition skipped)."""
        import torch.nn.functional as F

        from mattecli import engine

        h, w = x.shape[2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        mask = None
        if transition is not None:
            mask = np.zeros((h + ph, w + pw), bool)
            mask[:h, :w] = transition
        tile, batch = self._tile_plan()
        out = engine.tiled_apply_safe(
            lambda b: self._forward(b)[1],
            x,
            tile=tile,
            overlap=max(0, min(self.tile_overlap, tile // 2)),
            stride=32,
            batch_size=batch,
            skip=None if mask is None else (lambda y0, y1, x0, x1: not mask[y0:y1, x0:x1].any()),
        )
        return out[:, :, :h, :w]

    def _focus_at(self, x_full, size: tuple[int, int]):
        """The focus alpha of a whole-image pass at ``size``; blended tiles if that runs out of memory."""
        import warnings

        from mattecli import engine

        x = engine.resize(x_full, size)
        try:
            return self._forward(x)[1]
        except Exception as err:
            if not engine.is_oom(err):
                raise
            warnings.warn("AIM focus pass out of memory: computing it on tiles", RuntimeWarning, stacklevel=2)
            return self._focus_tiles(x, None)

    def predict_with_trimap(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Alpha (float32 ``HxW``) and the glance trimap (uint8 {0,128,255}) at the image's size."""
        from mattecli import engine

        h, w = image.shape[:2]
        x_full = engine.image_to_tensor(image, self.device)
        glance, _, fusion = self._glance(x_full, h, w)
        trimap_small = glance.argmax(dim=1, keepdim=True).float() / 2.0  # 0, 0.5, 1 = 0, 128, 255
        trimap_up = engine.resize_zero_border(trimap_small, (h, w))[0, 0].cpu().numpy()
        known_fg = np.abs(trimap_up - 1.0) <= 1e-4
        known_bg = np.abs(trimap_up) <= 1e-4
        if self.strategy == "resize":
            alpha = engine.resize_zero_border(fusion, (h, w))[0, 0].cpu().numpy()
        elif self.strategy == "tiled":
            focus = self._focus_tiles(x_full, ~(known_fg | known_bg))[0, 0].cpu().numpy()
            alpha = hybrid_fuse(trimap_up, focus)
        else:
            focus = self._focus_at(x_full, scaled_size(h, w, FOCUS_RATIO))
            alpha = hybrid_fuse(trimap_up, engine.resize_zero_border(focus, (h, w))[0, 0].cpu().numpy())
        trimap = np.full((h, w), 128, np.uint8)
        trimap[known_bg] = 0
        trimap[known_fg] = 255
        return np.clip(alpha, 0.0, 1.0).astype(np.float32), trimap

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_trimap(image)[0]


def _create(config: MethodConfig) -> AimMatter:
    from mattecli import engine
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model, local_path

    strategy = config.options.get("strategy") or "hybrid"
    if strategy not in STRATEGIES:
        raise BadOptionError(f"AIM strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    for name, low in (("tile_size", 32), ("tile_overlap", 0), ("batch_size", 1)):
        if config.options.get(name) is not None and int(config.options[name]) < low:
            raise BadOptionError(f"--{name.replace('_', '-')} must be >= {low}")
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    opts = config.options
    budget = engine.memory_budget(device, opts.get("max_memory"))
    variant = config.variant or "aim"
    net = engine.prepare_model(load_model(variant, device, config.weights), device, compile=bool(opts.get("compile")))
    return AimMatter(
        net,
        device,
        config.precision,
        strategy,
        tile_size=int(opts["tile_size"]) if opts.get("tile_size") else None,
        tile_overlap=int(opts.get("tile_overlap") if opts.get("tile_overlap") is not None else 64),
        batch_size=int(opts["batch_size"]) if opts.get("batch_size") else None,
        memory_budget=budget,
        weights_path=config.weights or local_path(variant),
    )


register(
    MethodSpec(
        name="aim",
        summary="AIM: automatic (trimap-free) matting of any natural image",
        paper="Li, Zhang, Tao: Deep Automatic Natural Image Matting, IJCAI 2021",
        needs_trimap=False,
        create=_create,
        weights=("aim",),
        stride=32,
        margin=64,
        scales=(GLANCE_RATIO, FOCUS_RATIO),
    )
)
