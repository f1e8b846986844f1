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
``whole`` (mattecli's addition)
    The glance trimap comes from the 1/4 pass as in ``hybrid``; the focus pass runs
    once at full resolution, with the glance pass's global statistics (squeeze-and-
    excitation, the PSP image bin) replayed. Fused as in ``hybrid``.
``tiled`` (mattecli's addition, for large images)
    ``whole`` with the focus pass on overlapping full-resolution tiles (the engine's
    :class:`~mattecli.engine.TilePolicy`: tile side from ``tile_size`` or the memory
    budget, halo ``tile_overlap``, default 64, raised-cosine blending). Tiles whose
    area holds no transition pixel are skipped. This keeps 8K detail that the 1/2-scale
    focus pass loses, with memory bounded by the tile size. The PSP module's 3x3 and
    5x5 bins stay tile-local, the one difference from ``whole`` besides tile borders.

``scales`` (``--scales GLANCE,FOCUS``) overrides the two ratios of every strategy but
``resize`` (defaults 0.25,0.5 for ``hybrid``, 0.25,1 for ``whole`` / ``tiled``).

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
    "parse_scales",
    "is_official",
]

STRATEGIES = ("hybrid", "resize", "whole", "tiled")
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
    """A loaded AimNet with a test strategy; ``predict`` needs no trimap.

    ``scales`` is ``(glance, focus)``: the glance pass runs on the image scaled by the first,
    the focus pass by the second (hybrid: the official 1/4 and 1/2; whole and tiled: 1/4 and
    full resolution). In ``whole`` and ``tiled`` the focus pass replays the glance pass's
    global statistics (:class:`mattecli.tiling.GlobalContext`), so the two differ only by
    the tiling.

    Memory: whole-image passes that run out of device memory are not lost. A glance
    pass is retried at half the size; a focus pass falls back to blended tiles at the
    same scale. Tiles and batches follow ``tiles`` (a :class:`mattecli.engine.TilePolicy`:
    explicit sizes or a memory budget) and shrink further on out-of-memory errors. Every
    fallback warns.
    """

    net: object
    device: object
    precision: str = "fp32"
    strategy: str = "hybrid"
    scales: tuple[float, float] | None = None
    tiles: object = None  # engine.TilePolicy
    weights_path: object = None  # the file the weights came from (bench reports its sha256)

    def __post_init__(self):
        from mattecli import engine, tiling

        if self.tiles is None:
            self.tiles = engine.TilePolicy(stride=32, halo=64)
        if self.scales is None:
            self.scales = (GLANCE_RATIO, FOCUS_RATIO if self.strategy == "hybrid" else 1.0)
        self.context = tiling.GlobalContext(self.net)

    def _forward(self, x, *, replay: bool = False):
        import contextlib

        import torch

        from mattecli import engine

        ctx = self.context.replay() if replay and self.context.recorded else contextlib.nullcontext()
        with torch.inference_mode(), engine.autocast(self.device, self.precision), ctx:
            glance, focus, fusion = self.net(engine.channels_last(x))
        return glance.float(), focus.float(), fusion.float()

    def _glance(self, x_full, h: int, w: int):
        """The glance pass at ``scales[0]``, halved until it fits in memory (records the global context)."""
        import contextlib
        import warnings

        from mattecli import engine
        from mattecli.errors import DeviceError

        size = scaled_size(h, w, self.scales[0])
        while True:
            try:
                rec = self.context.record() if self.strategy in ("whole", "tiled") else contextlib.nullcontext()
                with rec:
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

    def _focus_tiles(self, x, transition: np.ndarray | None):
        """Focus alpha of a normalised ``(1,3,H,W)`` tensor on blended tiles (tiles without transition skipped)."""
        import torch.nn.functional as F

        h, w = x.shape[2:]
        ph, pw = (-h) % 32, (-w) % 32
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        mask = None
        if transition is not None:
            mask = np.zeros((h + ph, w + pw), bool)
            mask[:h, :w] = transition
        replay = self.strategy in ("whole", "tiled")
        self.tiles.probe(self.net, lambda b: self._forward(b, replay=replay), 3, self.device)
        out = self.tiles.run(
            lambda b: self._forward(b, replay=replay)[1],
            x,
            skip=None if mask is None else (lambda y0, y1, x0, x1: not mask[y0:y1, x0:x1].any()),
        )
        return out[:, :, :h, :w]

    def _focus_at(self, x_full, size: tuple[int, int]):
        """The focus alpha of a whole-image pass at ``size``; blended tiles if that runs out of memory."""
        import warnings

        import torch.nn.functional as F

        from mattecli import engine

        x = engine.resize(x_full, size)
        try:
            h, w = size
            padded = F.pad(x, (0, (-w) % 32, 0, (-h) % 32), mode="replicate") if (h % 32 or w % 32) else x
            return self._forward(padded, replay=self.strategy == "whole")[1][:, :, :h, :w]
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
        focus_size = _focus_size(h, w, self.scales[1])
        if self.strategy == "resize":
            alpha = engine.resize_zero_border(fusion, (h, w))[0, 0].cpu().numpy()
        else:
            if self.strategy == "tiled":
                x = engine.resize(x_full, focus_size)
                transition = ~(known_fg | known_bg)
                if focus_size != (h, w):
                    import cv2

                    transition = cv2.resize(transition.astype(np.uint8), focus_size[::-1], cv2.INTER_NEAREST) > 0
                focus = self._focus_tiles(x, transition)
            else:
                focus = self._focus_at(x_full, focus_size)
            alpha = hybrid_fuse(trimap_up, engine.resize_zero_border(focus, (h, w))[0, 0].cpu().numpy())
        trimap = np.full((h, w), 128, np.uint8)
        trimap[known_bg] = 0
        trimap[known_fg] = 255
        return np.clip(alpha, 0.0, 1.0).astype(np.float32, copy=False), trimap

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None) -> np.ndarray:
        return self.predict_with_trimap(image)[0]


def _focus_size(h: int, w: int, ratio: float) -> tuple[int, int]:
    """The focus pass's size: the official rounding below full resolution, the image's own size at 1."""
    if ratio >= 1.0:
        return h, w
    return scaled_size(h, w, ratio)


def parse_scales(value) -> tuple[float, float] | None:
    """``--scales GLANCE,FOCUS`` for AIM (e.g. ``0.25,0.5``, the official hybrid); None keeps the defaults.

    Raises:
        BadOptionError: not two numbers in (0, 1].
    """
    from mattecli.errors import BadOptionError

    if value is None:
        return None
    parts = [p for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
    try:
        scales = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        scales = ()
    if len(scales) != 2 or not all(0 < s <= 1 for s in scales):
        raise BadOptionError(
            f"AIM --scales takes GLANCE,FOCUS, two ratios in (0, 1] (official 0.25,0.5), not {value!r}"
        )
    return scales


def _create(config: MethodConfig) -> AimMatter:
    from mattecli import engine, models
    from mattecli.errors import BadOptionError
    from mattecli.weights import load_model, local_path

    strategy = config.options.get("strategy") or "hybrid"
    if strategy not in STRATEGIES:
        raise BadOptionError(f"AIM strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    scales = parse_scales(config.options.get("scales"))
    device = engine.select_device(config.device)
    engine.autocast(device, config.precision)  # reject a bad precision before loading weights
    tiles = engine.tile_policy(models.get("aim"), config.options, device)
    variant = config.variant or "aim"
    opts = config.options
    net = engine.prepare_model(load_model(variant, device, config.weights), device, compile=bool(opts.get("compile")))
    return AimMatter(
        net,
        device,
        config.precision,
        strategy,
        scales=scales,
        tiles=tiles,
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
