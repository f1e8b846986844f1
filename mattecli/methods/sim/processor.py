"""SIM's official test pipeline and mattecli's tiled strategy (``--method sim``).

Paper: Sun, Tang, Tai, "Semantic Image Matting", CVPR 2021.
Official code: github.com/nowsyn/SIM at dc5ed5a (no licence file: clean-room reimplementation),
``scripts/main.py`` and ``data/util.py``. Networks in
``net.py``, the input encodings in ``encode.py``, the semantic trimap (patch analysis) in
``semantic.py``, the declaration in ``spec.py``.

Test pipeline (``scripts/main.py`` ``run()``), per image, no resizing and no test-time augmentation:

1. pad image and trimap at the bottom/right by ``(h // 8 + 1) * 8 - h`` (always 1..8 px) with
   OpenCV ``BORDER_REFLECT`` (edge pixel repeated: ``fedcba|abcdef``);
2. encode (:func:`~mattecli.methods.sim.encode.encode_inputs`): RGB in [0, 1], ImageNet-normalised RGB, ``[trimap == 0,
   trimap == 255]``, and six Gaussians of the exact Euclidean distance to the background and
   to the foreground, ``exp(-d^2 / (2 (s L)^2))`` for ``s`` = 0.02, 0.08, 0.16 and ``L`` = 320;
3. the semantic trimap of the padded image (:class:`~mattecli.methods.sim.semantic.PatchAnalyzer`);
4. the matting network; alpha clamped to [0, 1], set to 0 / 1 where the trimap is 0 / 255;
5. crop back to the input size.

Variants: ``sim-comp1k`` (default; trained on Composition-1k) and ``sim-simd`` (trained on SIMD),
both with the ``sim-classifier`` patch classifier. ``--scales`` sets the patch-analysis scales
(multiples of the 320 px base patch; default the official 320 and 800 px), ``--batch-size``
the classifier patches per pass (default 1 on the CPU, 4 on a GPU),
``companion_weights["sim-classifier"]`` a classifier file.

Deviations, none of which changes results on valid inputs: the weight-standardised decoder
convolutions are standardised once after loading (bit-identical outputs); constant class
activation maps (e.g. a trimap without unknown pixels) give zero score maps where the official
code divides by zero.
"""

from __future__ import annotations

import cv2
import numpy as np

from mattecli.methods.base import Prediction, Provenance, Resolved
from mattecli.methods.network import NetworkProcessor
from mattecli.methods.sim.encode import (
    CLICK_LENGTH,
    PAD_STRIDE,
    distance_maps,
    encode_inputs,
    encode_padded,
    pad_amounts,
    pad_reflect,
    padded_crop,
    padded_index,
)

__all__ = ["SimProcessor", "STRATEGIES", "scaled_patch_sizes", "parse_scales", "load"]

STRATEGIES = ("auto", "whole", "tiled")

#: channel split of a tile tensor: image, two-channel trimap, normalised image, clicks, scores
_SPLIT = (3, 2, 3, 6, 20)


class SimProcessor(NetworkProcessor):
    """A loaded SIM matting network plus its patch analyzer; ``process`` needs a trimap.

    Strategies (``strategy``):

    ``whole``
        The official test pipeline on the whole padded image.
    ``tiled``
        The global stages run once on the image reduced to at most
        :data:`mattecli.runtime.context.CONTEXT_PIXELS` (the image itself when it is that small):
        the patch analysis (its 320 / 800 px patches on the reduced image, scores min-max
        normalised there) and a matting pass that records the ASPP image pooling. The
        matting network then runs on full-resolution tiles of the padded image whose box
        holds unknown pixels, replaying that pooling; each tile's inputs are built on demand
        (reflect-padded crops of the image, crops of the trimap's global distance maps, and
        of the bilinearly upsampled scores, masked to the tile's unknown pixels), so no
        full-size encoding or padded copy of a large image exists. A reduced context pass
        takes the unpadded image (the 1..8 px padding is below its resolution). With a
        context pass at full size, tiles differ from ``whole`` only by the network's
        receptive field beyond the halo.
    ``auto`` (default)
        ``whole`` up to the size the variant's declared memory allows under the run's budget,
        else ``tiled``.
    """

    def __init__(self, net, analyzer, ctx, *, provenance=None):
        super().__init__(net, ctx, provenance=provenance)
        self.analyzer = analyzer  # mattecli.methods.sim.semantic.PatchAnalyzer

    def _forward(self, args, *, replay: bool = False):
        import torch

        args = [t.contiguous(memory_format=torch.channels_last) for t in args]
        with torch.inference_mode(), self.ctx.autocast(), self.context.replaying(replay):
            return self.net(*args).float()

    def _whole(self, image, trimap, semantic: bool = True):
        from mattecli.methods.sim.semantic import SemanticTrimap

        h, w = trimap.shape
        enc = encode_inputs(image, trimap, self.device)
        smap = self.analyzer.score_tensor(enc["image_n"], enc["trimap"])
        alpha = self._forward([enc["image"], enc["two_chan"], enc["image_n"], enc["clicks"], smap])
        if not semantic:
            return alpha, None
        scores = smap[0, :, :h, :w].cpu().numpy().astype(np.float32)
        return alpha, SemanticTrimap(scores, np.asarray(trimap, np.uint8).copy())

    def _tiled(self, image, trimap, semantic: bool = True):
        import torch

        from mattecli.methods.sim.semantic import UNKNOWN, SemanticTrimap
        from mattecli.runtime.context import context_size
        from mattecli.runtime.tiles import resize_crop

        # The padded image is never built at full size (a 33 MP float32 copy is 400 MB): tiles take
        # reflect-padded crops of the input. The trimap (1 byte per pixel) is padded once, because
        # its distance maps are global.
        image = np.asarray(image, np.float32)
        h, w = trimap.shape
        ph, pw = pad_amounts(h, w)
        rows, cols = padded_index(h, ph), padded_index(w, pw)
        tri = pad_reflect(np.asarray(trimap, np.uint8), ph, pw)
        size = tri.shape

        # global stage: patch analysis + pooled context on the (reduced) whole image; returns the raw
        # scores and the full-size geometry they map onto (padded or not)
        def context_pass(small):
            if small == size:  # exact: the padded image itself (small, so the copy is cheap)
                img_s, tri_s, ref = padded_crop(image, rows, cols, 0, size[0], 0, size[1]), tri, size
            else:  # the unpadded image reduced straight to the stride-aligned context size
                img_s = cv2.resize(image, small[::-1], interpolation=cv2.INTER_AREA)
                tri_s = cv2.resize(np.asarray(trimap, np.uint8), small[::-1], interpolation=cv2.INTER_NEAREST)
                ref = (h, w)
            enc = encode_padded(img_s, tri_s, self.device)
            raw = self.analyzer.unmasked_scores(enc["image_n"], enc["trimap"])
            smap_s = raw * (enc["trimap"] == UNKNOWN).to(raw.dtype)
            with self.context.record():
                self._forward([enc["image"], enc["two_chan"], enc["image_n"], enc["clicks"], smap_s])
            return raw, ref

        small = context_size(*size, PAD_STRIDE)
        raw, ref = self.executor.run_global("whole", context_pass, small, PAD_STRIDE, "SIM context pass")
        dists = distance_maps(tri)
        unknown = tri == UNKNOWN

        def crop(y0, y1, x0, x1):
            part = encode_padded(
                padded_crop(image, rows, cols, y0, y1, x0, x1),
                tri[y0:y1, x0:x1],
                self.device,
                dists=[None if d is None else d[y0:y1, x0:x1] for d in dists],
            )
            mask = part["trimap"] == UNKNOWN
            scores = resize_crop(raw, ref, (y0, y1, x0, x1)) * mask.to(torch.float32)
            return torch.cat([part["image"], part["two_chan"], part["image_n"], part["clicks"], scores], dim=1)

        alpha = self.executor.tiles(
            "tile",
            lambda b: self._forward(list(b.split(_SPLIT, dim=1)), replay=True),
            crop,
            size=size,
            skip=lambda y0, y1, x0, x1: not unknown[y0:y1, x0:x1].any(),
            what="SIM matting pass",
        )
        dists = unknown = None  # free the full-size maps before the caller's output is made
        scores = None
        if semantic and max(size) <= 4096:
            full = resize_crop(raw, ref, (0, h, 0, w))[0]
            scores = (full * torch.from_numpy(np.asarray(trimap) == UNKNOWN).to(full.device)).cpu().numpy()
        return alpha, SemanticTrimap(scores, np.asarray(trimap, np.uint8).copy()) if semantic else None

    def process(self, image: np.ndarray, trimap: np.ndarray | None, *, extras: bool = False) -> Prediction:
        """Alpha (float32 ``HxW``, exactly 0 / 1 on known pixels) and, with ``extras``, in
        ``extras["semantic"]`` the :class:`~mattecli.methods.sim.semantic.SemanticTrimap` it was
        computed with (a full-size copy of the 20 score maps, so only on request).

        After a tiled run of an image over 4096 px on a side the semantic trimap holds no scores
        (``scores`` is None): they were never materialised at full size.
        """
        semantic = extras
        from mattecli.errors import TrimapError

        if trimap is None:
            raise TrimapError("method sim needs a trimap", hint="pass --trimap FILE_OR_FOLDER")
        h, w = trimap.shape
        if image.shape[:2] != (h, w):
            raise TrimapError(f"trimap is {w}x{h} but the image is {image.shape[1]}x{image.shape[0]}")
        ph, pw = pad_amounts(h, w)
        alpha, st = self.executor.run(
            "whole",
            whole=lambda: self._whole(image, trimap, semantic),
            tiled=lambda: self._tiled(image, trimap, semantic),
            pixels=(h + ph) * (w + pw),
            what="SIM whole-image pass",
        )
        # clamp, then the known pixels exactly 0 / 1; one host-side HxW float32 array, no full-size temporaries
        out = np.clip(alpha[0, 0, :h, :w].float().cpu().numpy(), 0.0, 1.0)
        del alpha
        tri = np.asarray(trimap)
        out[tri == 0] = 0.0
        out[tri == 255] = 1.0
        return Prediction(out, None, {"semantic": st} if semantic else {})


def load(resolved: Resolved) -> SimProcessor:
    """Build the matting network and the patch classifier with their weights (the spec's ``load``)."""
    from mattecli.methods.loading import load_network, run_context
    from mattecli.methods.sim import semantic
    from mattecli.runtime.winograd import use_winograd

    ctx = run_context(resolved)
    e = resolved.engine
    batch_size = int(e.batch_size or semantic.default_batch_size(ctx.device))
    sizes = scaled_patch_sizes(resolved.scales) if resolved.scales else semantic.PATCH_SIZES
    variant = resolved.variant
    net, weights = load_network(resolved, variant, ctx.device, file=resolved.options.weights)
    net = net.fold_weight_standardization().to(memory_format=torch_channels_last())
    net.unknown_only = True  # known pixels are overwritten below: their last stages are skipped
    use_winograd(net)  # the large 3x3 convolutions on the CPU (runtime/winograd.py)
    if ctx.compile:
        import torch

        net = torch.compile(net)
    (classifier,) = resolved.spec.companions
    classifier_file = resolved.options.companion_weights.get(classifier.name)
    cnet, cweights = load_network(resolved, classifier, ctx.device, file=classifier_file)
    import torch

    analyzer = semantic.PatchAnalyzer(semantic.place_classifier(cnet), ctx.device, ctx.precision, sizes, batch_size)
    provenance = Provenance("sim", variant.name, (weights, cweights), str(ctx.device), resolved.budget.to_json())
    return SimProcessor(net, analyzer, ctx, provenance=provenance)


def torch_channels_last():
    import torch

    return torch.channels_last


def scaled_patch_sizes(scales) -> tuple[int, ...]:
    """``--scales`` for SIM: the patch-analysis scales, as multiples of the 320 px base patch.

    The official multi-scale patches 320 and 800 are scales ``1,2.5``; ``1,2.5,5`` adds 1600 px
    patches. Each scale is one pass of the classifier; their CAMs are averaged per pixel.

    Raises:
        BadOptionError: not a list of positive numbers.
    """
    from mattecli.errors import BadOptionError

    parts = [p for p in scales.split(",") if p.strip()] if isinstance(scales, str) else list(scales)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        values = []
    if not values or any(v <= 0 for v in values) or any(round(v * CLICK_LENGTH) < 2 for v in values):
        raise BadOptionError(f"SIM --scales takes patch scales like 1,2.5 (x {CLICK_LENGTH} px), not {scales!r}")
    return tuple(round(v * CLICK_LENGTH) for v in values)


def parse_scales(value) -> tuple[float, ...]:
    """``--scales`` for SIM as numbers (checked by :func:`scaled_patch_sizes`, which refuses what cannot
    be patch scales)."""
    scaled_patch_sizes(value)
    parts = [p for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
    return tuple(float(p) for p in parts)
