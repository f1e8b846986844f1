"""What a matting method is: its one declaration, its typed options, its result.

A method is declared once, by a :class:`MethodSpec` in ``methods/<name>/spec.py``: its weights
variants (manifest keys, how each network is built and its official checkpoint read, its input
normalisation), its stride and receptive-field margin, its strategies and defaults, what it does
with trimaps (needs one, accepts one, predicts one), and its published numbers. The registry
(:mod:`mattecli.methods`), the CLI's help, bench's table of published numbers and the weights'
architecture checks all read it.

Options are frozen dataclasses (:class:`MethodOptions`, :class:`EngineOptions`) that the CLI or a
Python caller builds; :meth:`MethodSpec.resolve` checks them against the spec before any image is
read and returns :class:`Resolved` options (every default filled in), so an unsupported
combination is a usage error, never a failure per file.

A loaded method is a :class:`Matter`: ``predict(image, trimap | None) -> MatteResult``, and, for
a method that predicts trimaps, ``predict_trimap(image)`` (the trimap alone). Its
provenance (weights files and their sha256, device) is data (:class:`Provenance`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mattecli.errors import BadOptionError, TrimapError

if TYPE_CHECKING:
    from mattecli.runtime.memory import Budget, Footprint
    from mattecli.weights.checkpoints import Architecture

__all__ = [
    "Lazy",
    "lazy",
    "Normalization",
    "IMAGENET",
    "Variant",
    "Capabilities",
    "Published",
    "EngineOptions",
    "MethodOptions",
    "Resolved",
    "WeightsFile",
    "Provenance",
    "Prediction",
    "MatteResult",
    "Processor",
    "Matter",
    "MethodSpec",
]


# ----------------------------------------------------------------------------- declaration
class Lazy:
    """A callable named ``"package.module:name"``, imported when first called (specs stay import-light:
    the CLI reads every spec without importing a network)."""

    def __init__(self, ref: str):
        self.ref = ref

    def target(self) -> Callable:
        import importlib

        module, _, name = self.ref.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Lazy({self.ref!r})"


def lazy(ref: Callable | str) -> Callable:
    """``ref`` itself, or a :class:`Lazy` for a ``"module:name"`` string."""
    return Lazy(ref) if isinstance(ref, str) else ref


@dataclass(frozen=True)
class Normalization:
    """A network's input normalisation: ``(x - mean) / std`` per RGB channel of an image in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


#: The ImageNet statistics (torchvision's), used by every backbone here pretrained on ImageNet.
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class Variant:
    """One weights variant of a method: its manifest key and how its network is made.

    ``build`` makes the ``nn.Module`` with the parameter names of our converted files (a class or
    factory, or ``"module:name"`` imported on first use);
    ``remap`` turns the authors' state dict into ours, ``detect`` tells whether a state dict is
    the authors' (see :class:`mattecli.weights.checkpoints.Architecture`). ``normalization`` is
    the input's mean/std (None where a method encodes its input another way, named in
    ``params``). ``default_strategy`` and ``margin`` override the spec's for this variant (SHM's
    two networks differ in both); ``params`` holds what else a processor reads per variant.
    ``footprint`` is its declared memory (:class:`~mattecli.runtime.memory.Footprint`, companions
    included), what every memory plan of a run is made of.
    """

    name: str
    build: Callable[[], Any] | str
    remap: Callable[[dict], dict] | None = None
    detect: Callable[[Mapping], bool] | None = None
    normalization: Normalization | None = IMAGENET
    default_strategy: str | None = None
    margin: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    footprint: Footprint | None = None

    def __post_init__(self):
        object.__setattr__(self, "build", lazy(self.build))  # always callable

    @property
    def architecture(self) -> Architecture:
        """What :mod:`mattecli.weights` needs to import and load this variant."""
        from mattecli.weights.checkpoints import Architecture

        return Architecture(self.name, self.build, self.remap, self.detect)


@dataclass(frozen=True)
class Capabilities:
    """What a method does with trimaps.

    ``needs_trimap``: it cannot run without one. ``accepts_trimap``: a trimap-free method that
    takes one anyway (its known regions are clamped). ``predicts_trimap``: it computes a trimap
    of its own (``--save-trimap``, ``trimap --from-image``). ``semantic_trimap``: it computes a
    semantic trimap (SIM's 20 class score maps) returned in ``MatteResult.extras["semantic"]``.
    """

    needs_trimap: bool = False
    accepts_trimap: bool = False
    predicts_trimap: bool = False
    semantic_trimap: bool = False

    @property
    def takes_trimap(self) -> bool:
        return self.needs_trimap or self.accepts_trimap


@dataclass(frozen=True)
class Published:
    """Numbers a paper or an official repository reports for a method on a dataset.

    ``metrics`` use our keys and units (MSE raw, not x1e3); ``groups`` maps a group key
    (``"class"``, ``"type"``, ``"category"``) to per-group SAD; ``variant`` the weights variant the
    numbers belong to (None: the method's, whichever variant runs).
    """

    method: str
    dataset: str
    source: str
    metrics: dict[str, float]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""
    variant: str | None = None

    @property
    def label(self) -> str:
        """The source without its parenthesised details, for tables ("SIM paper, Table 2")."""
        import re

        return re.sub(r"\s*\([^)]*\)", "", self.source)

    def to_json(self) -> dict:
        from dataclasses import asdict

        return {**asdict(self), "label": self.label}


# ----------------------------------------------------------------------------- options
@dataclass(frozen=True)
class EngineOptions:
    """How the networks run on large images (the shared engine flags; ``None``: the method's default).

    ``max_memory`` is in bytes (``--max-memory 6G`` is parsed by the CLI); ``scales`` is the
    method's multi-scale rule as the user wrote it (``"0.25,0.5"``) or as numbers, parsed by the
    method (AIM: glance, focus ratios; SIM: patch-analysis scales).
    """

    strategy: str | None = None
    tile_size: int | None = None
    tile_overlap: int | None = None
    batch_size: int | None = None
    max_memory: int | None = None
    scales: str | tuple[float, ...] | None = None
    compile: bool = False


@dataclass(frozen=True)
class MethodOptions:
    """Everything that says how a method is built and run, checked by :meth:`MethodSpec.resolve`.

    ``weights``: a file replacing the manifest's weights of the chosen variant;
    ``companion_weights``: files replacing a companion's (``{"sim-classifier": path}``);
    ``download``: fetch missing weights on first use (``False``: ``--no-download``).
    """

    variant: str | None = None
    weights: Path | None = None
    companion_weights: Mapping[str, Path] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"
    download: bool = True
    engine: EngineOptions = field(default_factory=EngineOptions)

    def with_engine(self, **changes: Any) -> MethodOptions:
        return replace(self, engine=replace(self.engine, **changes))


@dataclass(frozen=True)
class Resolved:
    """Options checked against a spec, every default filled in (what ``spec.load`` receives)."""

    spec: MethodSpec
    options: MethodOptions
    variant: Variant | None
    strategy: str
    scales: tuple[float, ...] | None
    halo: int
    budget: Budget | None = None

    @property
    def engine(self) -> EngineOptions:
        return self.options.engine

    @property
    def footprint(self) -> Footprint | None:
        """The declared memory of what this run loads: the variant's, else the method's."""
        if self.variant is not None and self.variant.footprint is not None:
            return self.variant.footprint
        return self.spec.footprint

    def weights_to_fetch(self) -> tuple[str, ...]:
        """Manifest variants this run loads from the cache (files given by the caller excluded)."""
        out = []
        if self.variant is not None and self.options.weights is None:
            out.append(self.variant.name)
        out += [c.name for c in self.spec.companions if c.name not in self.options.companion_weights]
        return tuple(out)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class WeightsFile:
    """A weights file a method loaded: its variant, path and sha256 (None if not hashed)."""

    variant: str
    path: Path
    sha256: str | None = None


@dataclass(frozen=True)
class Provenance:
    """Where a loaded method's results come from: weights files (main variant first) and device."""

    method: str
    variant: str | None = None
    weights: tuple[WeightsFile, ...] = ()
    device: str = "cpu"
    #: the run's memory budget (:meth:`mattecli.runtime.memory.Budget.to_json`), which plans its passes
    budget: Mapping[str, Any] | None = None

    @property
    def weights_sha256(self) -> str | None:
        """The main weights file's sha256 (bench records it)."""
        return self.weights[0].sha256 if self.weights else None


@dataclass(frozen=True)
class Prediction:
    """What a processor computes for one image: ``alpha`` (float ``HxW``, not yet clipped), the
    trimap it predicted (uint8 ``HxW`` in {0, 128, 255}, or None) and extras (e.g. ``semantic``)."""

    alpha: np.ndarray
    trimap: np.ndarray | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MatteResult:
    """One image matted: ``alpha`` float32 ``HxW`` in [0, 1], exactly 0 / 1 where the given trimap
    is known; ``trimap`` the one the method predicted (None when it predicts none); ``extras``;
    ``plan`` what ran (:meth:`mattecli.runtime.executor.Executor.record`: strategy, tile, tiles,
    batch, reduced passes, fallback; empty for a processor without an executor)."""

    alpha: np.ndarray
    trimap: np.ndarray | None = None
    extras: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    plan: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


class Processor(Protocol):
    """A method's loaded network(s) with its official pre/post-processing and test strategies.

    ``extras``: also compute what costs more than the alpha (SIM's full-size semantic trimap).
    A processor that predicts trimaps may also have ``predict_trimap(image) -> uint8 HxW``: the
    same trimap as ``process`` returns, without the rest of the work (:meth:`Matter.predict_trimap`).
    """

    def process(self, image: np.ndarray, trimap: np.ndarray | None, *, extras: bool = False) -> Prediction: ...


class Matter:
    """A ready method: checks its inputs, runs its processor, clips and clamps the alpha.

    Every method's result goes through :meth:`predict`, so the contract holds for all of them:
    a trimap-based method refuses a missing trimap, a trimap of the wrong size is refused, and
    the alpha is clipped to [0, 1] and clamped to 0 / 1 in the known regions of a given trimap.
    """

    def __init__(self, spec: MethodSpec, processor: Processor, provenance: Provenance, resolved: Resolved):
        self.spec = spec
        self.processor = processor
        self.provenance = provenance
        self.resolved = resolved

    def predict(self, image: np.ndarray, trimap: np.ndarray | None = None, *, extras: bool = False) -> MatteResult:
        """float32 ``HxWx3`` RGB in [0, 1] (+ a uint8 ``HxW`` trimap) -> :class:`MatteResult`
        (``extras``: also what the method computes beside the alpha, e.g. SIM's semantic trimap).

        Raises:
            TrimapError: a trimap-based method without a trimap, or a trimap of another size.
        """
        from mattecli.trimap import clamp_known

        h, w = image.shape[:2]
        if trimap is None and self.spec.capabilities.needs_trimap:
            raise TrimapError(f"method {self.spec.name} needs a trimap", hint="pass --trimap FILE_OR_FOLDER")
        if trimap is not None and tuple(trimap.shape[:2]) != (h, w):
            raise TrimapError(f"trimap is {trimap.shape[1]}x{trimap.shape[0]} but the image is {w}x{h}")
        executor = self.executor
        if executor is not None:
            executor.begin(h * w)
        out = self.processor.process(image, trimap if self.spec.capabilities.takes_trimap else None, extras=extras)
        alpha = np.asarray(out.alpha, dtype=np.float32)
        if alpha.shape != (h, w):
            raise RuntimeError(f"method {self.spec.name} returned {alpha.shape} for an image of {(h, w)}")
        alpha = np.clip(alpha, 0.0, 1.0, out=alpha if alpha.flags.writeable else None)  # in place: no copy
        if trimap is not None:
            clamp_known(alpha, trimap)
        plan = MappingProxyType(executor.record() if executor is not None else {})
        return MatteResult(alpha, out.trimap, MappingProxyType(dict(out.extras)), plan)

    @property
    def executor(self):
        """The processor's :class:`~mattecli.runtime.executor.Executor` (None if it has none)."""
        ctx = getattr(self.processor, "ctx", None)
        return getattr(ctx, "executor", None) if ctx is not None else getattr(self.processor, "executor", None)

    def share_memory(self, other: Matter) -> None:
        """Plan this method's passes with ``other``'s fixed memory held beside it (two methods loaded
        in one run: ``--trimap auto``). Nothing changes for a processor without a memory plan."""
        mine, theirs = self.executor, other.executor
        if mine is None or mine.memory is None or theirs is None or theirs.memory is None:
            return
        mine.memory = replace(mine.memory, held=theirs.memory.footprint.fixed)

    def predict_trimap(self, image: np.ndarray) -> np.ndarray:
        """The trimap this method predicts for ``image`` (uint8 ``HxW`` in {0, 128, 255}): the one
        :meth:`predict` returns, computed alone where the processor can (its optional
        ``predict_trimap(image)``: AIM's glance pass, SHM's T-Net), else by a full ``process``.

        Raises:
            TrimapError: the method predicts no trimap (it needs or ignores one).
        """
        if not self.spec.capabilities.predicts_trimap:
            raise TrimapError(f"method {self.spec.name} predicts no trimap")
        alone = getattr(self.processor, "predict_trimap", None)
        if self.executor is not None:
            self.executor.begin(image.shape[0] * image.shape[1])
        trimap = alone(image) if alone is not None else self.processor.process(image, None).trimap
        trimap = np.ascontiguousarray(trimap, dtype=np.uint8)
        if trimap.shape != tuple(image.shape[:2]):
            raise RuntimeError(f"method {self.spec.name} predicted a {trimap.shape} trimap for {image.shape[:2]}")
        return trimap


# ----------------------------------------------------------------------------- the declaration
@dataclass(frozen=True)
class MethodSpec:
    """The one declaration of a method (see the module docstring).

    Attributes:
        name: what users type after ``--method``.
        summary: one line for ``--help`` and the README table.
        paper: citation (authors, title, venue and year).
        capabilities: what it does with trimaps.
        load: ``load(resolved) -> Processor``: builds the networks and loads the weights once (a
            callable, or ``"module:function"`` imported when a method is first created).
        variants: weights variants a user picks with ``--variant`` (the first is the default).
        companions: variants always loaded beside the chosen one (SIM's patch classifier).
        strategies: what ``--strategy`` accepts; ``default_strategy`` when none is given.
        stride: input sizes are padded to multiples of it (tiles start on its grid).
        margin: receptive-field margin in pixels: the default tile halo (``--tile-overlap``).
        min_tile_size: the smallest ``--tile-size`` (default: one stride).
        min_core: when set, ``--tile-size`` must also leave this many pixels between the halos of
            neighbouring tiles (``2 * --tile-overlap`` of overlap): a usage error otherwise, instead
            of a crawl of tiles one pixel apart (the classical solvers; deep methods' tile policy
            raises a small tile itself).
        parse_scales: ``parse_scales(text or sequence) -> tuple`` for methods with a multi-scale
            rule (``--scales``); None: ``--scales`` is refused.
        devices: device kinds it runs on (``cpu``, ``cuda``).
        precisions: ``--precision`` values it honours.
        compiles: whether ``--compile`` applies.
        batches: whether ``--batch-size`` applies.
        published: the numbers its papers and repositories report.
        footprint: the declared memory of a method without weights variants (the classical
            solvers); a variant's own ``footprint`` wins.
    """

    name: str
    summary: str
    paper: str
    capabilities: Capabilities
    load: Callable[[Resolved], Processor] | str
    variants: tuple[Variant, ...] = ()
    companions: tuple[Variant, ...] = ()
    strategies: tuple[str, ...] = ("auto", "whole", "tiled")
    default_strategy: str = "auto"
    stride: int = 1
    margin: int = 0
    min_tile_size: int | None = None
    min_core: int | None = None
    parse_scales: Callable[[Any], tuple[float, ...]] | str | None = None
    devices: tuple[str, ...] = ("cpu", "cuda")
    precisions: tuple[str, ...] = ("fp32", "fp16", "bf16")
    compiles: bool = True
    batches: bool = True
    published: tuple[Published, ...] = ()
    footprint: Footprint | None = None

    # ------------------------------------------------------------------ derived
    @property
    def needs_trimap(self) -> bool:
        return self.capabilities.needs_trimap

    @property
    def uses_weights(self) -> bool:
        return bool(self.variants)

    def all_variants(self) -> tuple[Variant, ...]:
        return self.variants + self.companions

    def variant_named(self, name: str) -> Variant:
        for v in self.all_variants():
            if v.name == name:
                return v
        raise KeyError(name)

    def strategy_help(self) -> str:
        return f"{self.name}: {', '.join(self.strategies)}"

    # ------------------------------------------------------------------ checks
    def resolve(self, options: MethodOptions | None = None) -> Resolved:
        """Check ``options`` against this method (no image, no weights touched) and fill in defaults.

        Raises:
            BadOptionError: an option this method cannot honour, named (``--variant``,
                ``--strategy``, ``--scales``, ``--device``, ``--precision``, ``--compile``,
                ``--batch-size``, ``--tile-size``, ``--tile-overlap``, ``--weights``).
            DeviceError: a device that is not there (``cuda`` on a machine without it).
        """
        from mattecli.runtime.device import select_device
        from mattecli.runtime.precision import check_precision

        o = options or MethodOptions()
        e = o.engine
        name = self.name
        # weights
        variant = None
        if self.variants:
            chosen = o.variant or self.variants[0].name
            names = [v.name for v in self.variants]
            if chosen not in names:
                raise BadOptionError(f"--variant of method {name} must be one of {', '.join(names)}, not {chosen!r}")
            variant = self.variants[names.index(chosen)]
            if o.weights is not None and not Path(o.weights).expanduser().is_file():
                raise BadOptionError(f"--weights {o.weights} does not exist or is not a file")
            unknown = set(o.companion_weights) - {c.name for c in self.companions}
            if unknown:
                raise BadOptionError(f"method {name} loads no {', '.join(sorted(unknown))} weights")
        else:
            for flag, value in (("--variant", o.variant), ("--weights", o.weights)):
                if value is not None:
                    raise BadOptionError(f"method {name} uses no weights; drop {flag}")
        # strategy and scales
        strategy = e.strategy or (variant.default_strategy if variant and variant.default_strategy else None)
        strategy = strategy or self.default_strategy
        if strategy not in self.strategies:
            raise BadOptionError(
                f"--strategy of method {name} must be one of {', '.join(self.strategies)}, not {strategy!r}"
            )
        scales = None
        if e.scales is not None:
            if self.parse_scales is None:
                raise BadOptionError(f"method {name} defines no multi-scale fusion; drop --scales")
            scales = lazy(self.parse_scales)(e.scales)
        # where and how it runs (a device kind the method never runs on is refused before looking for it)
        kind = str(o.device or "auto").strip().lower().split(":")[0]
        if kind in ("cpu", "cuda") and kind not in self.devices:
            raise BadOptionError(
                f"method {name} runs on the {' or '.join(d.upper() for d in self.devices)} only; "
                f"--device {o.device} does not apply",
                hint="drop --device (or use --device cpu)",
            )
        device = select_device(o.device)
        if device.type not in self.devices:
            raise BadOptionError(
                f"method {name} runs on the {' or '.join(d.upper() for d in self.devices)} only; "
                f"--device {o.device} does not apply",
                hint="drop --device (or use --device cpu)",
            )
        from mattecli.runtime.precision import PRECISIONS

        if o.precision not in PRECISIONS:
            raise BadOptionError(f"--precision must be one of {', '.join(PRECISIONS)}, not {o.precision!r}")
        if o.precision not in self.precisions:
            raise BadOptionError(
                f"method {name} computes in {self.precisions[0]} only; --precision {o.precision} does not apply",
                hint="drop --precision",
            )
        check_precision(device, o.precision)
        if e.compile and not self.compiles:
            raise BadOptionError(f"method {name} has no network to compile; drop --compile")
        if e.batch_size is not None and not self.batches:
            raise BadOptionError(f"method {name} solves one tile at a time; --batch-size does not apply")
        low = self.min_tile_size or self.stride
        if e.tile_size is not None and e.tile_size < low:
            raise BadOptionError(f"--tile-size must be >= {low}")
        if e.tile_overlap is not None and e.tile_overlap < 0:
            raise BadOptionError("--tile-overlap must be >= 0")
        if e.batch_size is not None and e.batch_size < 1:
            raise BadOptionError("--batch-size must be >= 1")
        if e.max_memory is not None and e.max_memory <= 0:
            raise BadOptionError("--max-memory must be positive")
        margin = variant.margin if variant is not None and variant.margin is not None else self.margin
        halo = margin if e.tile_overlap is None else e.tile_overlap
        if self.min_core is not None and e.tile_size is not None and e.tile_size < 2 * halo + self.min_core:
            raise BadOptionError(
                f"--tile-size {e.tile_size} is too small for method {name}'s {halo} px tile overlap: tiles "
                f"overlap by {2 * halo} px, so give at least {2 * halo + self.min_core}",
                hint="or lower --tile-overlap",
            )
        from mattecli.runtime.memory import resolve_budget

        budget = resolve_budget(e.max_memory, device.type, device.index)
        return Resolved(self, o, variant, strategy, scales, halo, budget)

    def create(self, options: MethodOptions | None = None) -> Matter:
        """Resolve ``options`` and build the method (weights loaded once): a ready :class:`Matter`.

        Raises:
            BadOptionError, DeviceError (options), WeightsError (weights missing or wrong).
        """
        resolved = options if isinstance(options, Resolved) else self.resolve(options)
        processor = lazy(self.load)(resolved)
        provenance = getattr(processor, "provenance", None) or Provenance(self.name, device="cpu")
        return Matter(self, processor, provenance, resolved)
