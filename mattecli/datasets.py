"""Benchmark datasets: find the test samples of a dataset folder.

Every loader returns a :class:`Dataset`: an ordered list of :class:`Sample`
(name, image path or composition recipe, GT alpha path, trimap path, groups such
as category or type) plus the metric conventions of that benchmark:

========  ===============================================  ===========  =================
name      layout(s)                                        metric mode  groups
========  ===============================================  ===========  =================
comp1k    ``merged/ alpha_copy/ trimaps/`` (prebuilt), or  unknown      -
          the official ``fg/ alpha/ trimaps/`` +
          ``test_fg_names.txt`` / ``test_bg_names.txt`` +
          a background folder, composed on the fly
dist646   ``merged|image/ alpha_copy|alpha|GT/             unknown      -
          trimaps|trimap/`` (optionally under ``Test/``)
simd      ``<class>/{merged,trimap,alpha}/`` (SIM's        unknown      class (20)
          ``generate_testset.py`` output) or a flat
          comp1k-style folder
aim500    ``original/ mask/ [trimap/]`` +                  whole        type, category
          ``aim_category_type.json``
am2k      ``original/ mask/ [trimap/]`` (optionally        whole        -
          under ``validation/``)
folder    images + alphas [+ trimaps] matched by stem      unknown      -
          (whole without trimaps)
========  ===============================================  ===========  =================

"unknown" datasets are scored DIM-style over ``trimap == 128`` exactly, so their
trimaps are kept as stored (``exact_trimap``); ``folder`` trimaps are normalised
(anything strictly between 0 and 255 is unknown) because arbitrary data use other
grey levels. A missing or incomplete layout raises :class:`DatasetError` whose
message says what was expected and what was found.

Loaders take a folder. Which folder a named dataset lives in by default (``$MATTECLI_DATASETS/<name>``),
whether it holds the whole published test set, and fetching the public ones from the Hugging Face
Hub are :mod:`mattecli.dataset_store`'s job (sizes, licences and sources: ``datasets_manifest.json``).

Composition-1k composition follows Adobe's ``Composition_code.py`` exactly (see
:func:`compose`); inputs are decoded with Pillow as that script does (no EXIF
rotation), so the composites are bit-identical to a ``merged/`` folder made by it
with the same Pillow.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mattecli import constants
from mattecli.errors import DatasetError, ImageReadError, ImageTooLargeError, TrimapError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "Dataset",
    "Sample",
    "Composition",
    "SIM_CLASSES",
    "AIM500_TYPES",
    "AIM500_CATEGORIES",
    "BGS_PER_FG",
    "load_dataset",
    "compose",
    "compose_files",
    "export_prebuilt",
    "exact_uint",
]

#: Backgrounds per foreground in the Composition-1k / Distinctions-646 test recipe.
BGS_PER_FG = 20

#: SIM's 20 matting classes, in the order of the official code.
SIM_CLASSES = (
    "defocus", "fire", "fur", "glass_ice", "hair_easy", "hair_hard", "insect", "motion", "net",
    "plant_flower", "plant_leaf", "plant_tree", "plastic_bag", "sharp", "smoke_cloud", "spider_web",
    "texture_holed", "texture_smooth", "water_drop", "water_spray",
)  # fmt: skip
AIM500_TYPES = ("SO", "STM", "NS")
AIM500_CATEGORIES = ("animal", "fruit", "furniture", "plant", "portrait", "toy", "transparent")

# Folder names tried, in order, when a layout is auto-detected (matched case-insensitively).
_IMAGE_DIRS = ("merged", "image", "images", "img", "imgs", "original", "input", "inputs", "rgb", "composite")
_ALPHA_DIRS = ("alpha_copy", "alpha", "alphas", "mask", "masks", "gt", "matte", "mattes", "groundtruth")
_TRIMAP_DIRS = ("trimaps", "trimap", "tri")
_BG_DIRS = (
    "bg", "bgs", "background", "backgrounds", "VOCdevkit/VOC2012/JPEGImages", "VOC2012/JPEGImages",
    "JPEGImages", "train2014", "val2014", "coco",
)  # fmt: skip


# ----------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Composition:
    """How to make one Composition-1k test image: foreground, its alpha, a background."""

    fg: Path
    alpha: Path
    bg: Path


def exact_uint(values: np.ndarray) -> np.ndarray:
    """Return ``values`` (float in [0, 1] from :func:`mattecli.io.read_gray`) as uint8 or uint16 when exact.

    ``read_gray`` stores an 8-bit file as ``float32(v / 255)``; this recovers ``v``
    (and likewise 16-bit files) so that metrics convert it exactly in float64.
    Values that are neither 8- nor 16-bit quantised are returned unchanged.
    """
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.floating):
        return arr
    for top, dtype in ((255, np.uint8), (65535, np.uint16)):
        q = np.round(arr.astype(np.float64) * top)
        if np.array_equal((q / top).astype(arr.dtype), arr):
            return q.astype(dtype)
    return arr


@dataclass(frozen=True)
class Sample:
    """One test image.

    Attributes:
        name: unique key within the dataset (a file stem, or ``class/stem`` for SIMD);
            predictions are saved and matched under this name.
        alpha: ground-truth alpha file (channel 0 is used).
        image: the input image file, or None when it is composed (``composition``).
        composition: the recipe inputs for a composed Composition-1k image.
        trimap: trimap file, if the dataset has one.
        groups: grouping of the sample, e.g. ``{"class": "fur"}`` (SIMD) or
            ``{"type": "SO", "category": "animal"}`` (AIM-500).
    """

    name: str
    alpha: Path
    image: Path | None = None
    composition: Composition | None = None
    trimap: Path | None = None
    groups: dict[str, str] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        """The first group's value (the class / type), or None."""
        return next(iter(self.groups.values()), None)

    def load_image(self) -> np.ndarray:
        """The input image as float32 ``HxWx3`` RGB in [0, 1] (composed if need be)."""
        from mattecli import io

        if self.composition is not None:
            c = self.composition
            return compose_files(c.fg, c.alpha, c.bg).astype(np.float32) / 255.0
        assert self.image is not None
        return io.read_image(self.image)

    def load_alpha(self) -> np.ndarray:
        """The GT alpha, ``HxW``: uint8 / uint16 when the file is 8 / 16 bit (exact), else float32."""
        from mattecli import io

        return exact_uint(io.read_gray(self.alpha))

    def load_trimap(self, *, exact: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """``(metric_trimap, model_trimap)`` as uint8 ``HxW``, or None without a trimap.

        ``model_trimap`` is normalised to {0, 128, 255} (strictly between = unknown).
        ``metric_trimap`` is the stored 8-bit values when ``exact`` (DIM: only 128
        counts as unknown) and the normalised trimap otherwise.

        Raises:
            TrimapError: unreadable trimap.
        """
        from mattecli import io

        if self.trimap is None:
            return None
        try:
            gray = io.read_gray(self.trimap)
        except ImageReadError as err:
            raise TrimapError(f"trimap {err.message}", hint=err.hint) from err
        normalised = io.trimap_from_gray(gray)
        if not exact:
            return normalised, normalised
        raw = np.round(gray.astype(np.float64) * 255.0).astype(np.uint8)
        return raw, normalised

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "image": None if self.image is None else str(self.image),
            "alpha": str(self.alpha),
            "trimap": None if self.trimap is None else str(self.trimap),
            "groups": dict(self.groups),
        }


@dataclass(frozen=True)
class Dataset:
    """A loaded benchmark: samples in a fixed order plus how to score them.

    Attributes:
        name: ``comp1k``, ``dist646``, ``aim500``, ``am2k``, ``simd`` or ``folder``.
        title: human name ("Composition-1k").
        root: the folder given by the user.
        layout: which layout was found (``"merged"``, ``"compose"``, ``"classes"``...).
        metric_mode: ``"unknown"`` or ``"whole"`` (see :func:`mattecli.metrics.evaluate`).
        exact_trimap: score with the stored trimap values (only 128 is unknown).
        group_keys: the group names samples carry (``("type", "category")``...).
        samples: the samples, sorted by name.
    """

    name: str
    title: str
    root: Path
    layout: str
    metric_mode: str
    exact_trimap: bool
    group_keys: tuple[str, ...]
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def limited(self, limit: int | None) -> Dataset:
        """The first ``limit`` samples (all when None)."""
        if limit is None:
            return self
        if limit < 0:
            raise DatasetError(f"limit must be >= 0, not {limit}")
        return replace(self, samples=self.samples[:limit])

    def describe(self) -> dict:
        """JSON-ready description for reports."""
        return {
            "name": self.name,
            "title": self.title,
            "root": str(self.root),
            "layout": self.layout,
            "metric_mode": self.metric_mode,
            "exact_trimap": self.exact_trimap,
            "group_keys": list(self.group_keys),
            "size": len(self.samples),
        }


# ----------------------------------------------------------------------------- composition
def compose(fg: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Composite one test image with Adobe's ``Composition_code.py`` recipe, bit-exactly.

    Args:
        fg: uint8 ``HxWx3`` foreground (RGB).
        alpha: uint8 ``HxW`` alpha (channel 0 of the alpha file).
        bg: uint8 ``hxwx3`` background (RGB), already at its final size, i.e. at
            least ``HxW`` (see :func:`compose_files` for the resize rule).

    Returns:
        uint8 ``HxWx3``: with ``a = alpha / 255``, pixels with ``a >= 1`` copy the
        foreground, pixels with ``a > 0`` get ``int(a * F + (1 - a) * B)`` per channel
        (truncation, computed in float64 in the script's operation order), pixels with
        ``a == 0`` keep the background. The background is cropped at the top-left.
    """
    h, w = alpha.shape
    if fg.shape[:2] != (h, w):
        raise DatasetError(f"foreground is {fg.shape[1]}x{fg.shape[0]} but its alpha is {w}x{h}")
    if bg.shape[0] < h or bg.shape[1] < w:
        raise DatasetError(f"background {bg.shape[1]}x{bg.shape[0]} is smaller than the foreground {w}x{h}")
    out = np.array(bg[:h, :w, :3], dtype=np.uint8, copy=True)
    a = alpha.astype(np.float64) / 255.0
    partial = (a > 0) & (a < 1)
    ap = a[partial][:, None]
    mixed = ap * fg[partial].astype(np.float64) + (1.0 - ap) * out[partial].astype(np.float64)
    out[partial] = mixed.astype(np.uint8)  # values are >= 0, so the cast truncates like int()
    full = a >= 1
    out[full] = fg[full][:, :3]
    return out


def _pil_open(path: Path):
    """``path`` decoded by Pillow, as ``Composition_code.py`` reads it.

    Only a regular file is opened (a pipe would block, a device never end); Pillow's refusals
    (its caps on PNG text and ICC chunks included) become one :class:`ImageReadError`.
    """
    from PIL import Image

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        if os.path.islink(path):
            raise ImageReadError(f"{path}: broken symbolic link (its target does not exist)") from err
        raise DatasetError(f"{path}: no such file") from err
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({err.strerror or err})") from err
    if not stat.S_ISREG(mode):
        raise ImageReadError(f"{path}: not a regular file, not an image", hint="inputs must be regular files")
    try:
        img = Image.open(path)
        if img.width * img.height > constants.MAX_PIXELS:
            raise ImageTooLargeError(f"{path}: {img.width}x{img.height} exceeds the pixel limit")
        img.load()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except ImageTooLargeError:
        raise
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{path}: not a readable image ({err})") from err
    return img


def compose_files(fg_path: Path, alpha_path: Path, bg_path: Path) -> np.ndarray:
    """Read a foreground, its alpha and a background as ``Composition_code.py`` does, and compose.

    Decoding is Pillow's (no EXIF rotation). The foreground is taken as RGB (RGBA
    drops its alpha), the alpha as channel 0 (8-bit), the background as RGB. If the
    background is smaller than the foreground in either direction it is upscaled by
    ``ratio = max(w / bw, h / bh)`` to ``(ceil(bw * ratio), ceil(bh * ratio))`` with
    Pillow's bicubic filter; it is never downscaled. Then :func:`compose`.

    Returns:
        uint8 ``HxWx3`` RGB.
    """
    from PIL import Image

    fg_img = _pil_open(Path(fg_path))
    if fg_img.mode not in ("RGB", "RGBA"):
        fg_img = fg_img.convert("RGB")
    fg = np.asarray(fg_img)[:, :, :3]
    a_img = _pil_open(Path(alpha_path))
    alpha = np.asarray(a_img)
    if alpha.ndim == 3:
        alpha = alpha[:, :, 0]
    if alpha.dtype != np.uint8:
        raise DatasetError(f"{alpha_path}: the composition recipe needs an 8-bit alpha, found {alpha.dtype}")
    bg_img = _pil_open(Path(bg_path))
    if bg_img.mode != "RGB":
        bg_img = bg_img.convert("RGB")
    h, w = alpha.shape
    bw, bh = bg_img.size
    ratio = max(w / bw, h / bh)
    if ratio > 1:
        bg_img = bg_img.resize((math.ceil(bw * ratio), math.ceil(bh * ratio)), Image.BICUBIC)
    return compose(fg, alpha, np.asarray(bg_img))


def export_prebuilt(dataset: Dataset, out: str | os.PathLike, *, overwrite: bool = False) -> int:
    """Write a dataset as the prebuilt ``merged/ alpha_copy/ trimaps/`` layout; returns files written.

    Composed images are written as PNG (lossless, so reading them back gives the
    same pixels); GT alphas and trimaps are copied byte for byte, renamed to the
    sample name (GCA's ``copy_testing_alpha.sh``). Existing files are kept unless
    ``overwrite``.
    """
    from mattecli import io

    out = Path(out)
    written = 0
    for s in dataset:
        targets = [(out / "merged" / f"{s.name}.png", None)]
        targets.append((out / "alpha_copy" / f"{s.name}{s.alpha.suffix}", s.alpha))
        if s.trimap is not None:
            targets.append((out / "trimaps" / f"{s.name}{s.trimap.suffix}", s.trimap))
        for target, source in targets:
            if target.exists() and not overwrite:
                continue
            if source is not None:
                io.atomic_write_bytes(target, Path(source).read_bytes())
            elif s.composition is not None:
                c = s.composition
                io.atomic_write_bytes(target, io.encode_png(compose_files(c.fg, c.alpha, c.bg)))
            else:
                io.atomic_write_bytes(target, Path(s.image).read_bytes())
            written += 1
    return written


# ----------------------------------------------------------------------------- folder helpers
def _listing(folder: Path, limit: int = 12) -> str:
    """A short description of what is in ``folder`` for error messages."""
    if not folder.exists():
        return f"{folder} does not exist"
    if not folder.is_dir():
        return f"{folder} is not a folder"
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    names = [p.name + ("/" if p.is_dir() else "") for p in entries if not p.name.startswith(".")]
    if not names:
        return f"{folder} is empty"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"{folder} contains: " + ", ".join(names[:limit]) + more


def _subdir(base: Path, candidates: Sequence[str]) -> Path | None:
    """The first of ``candidates`` (relative paths, case-insensitive) that is a folder under ``base``."""
    if not base.is_dir():
        return None
    for cand in candidates:
        direct = base / cand
        if direct.is_dir():
            return direct
        parts = Path(cand).parts
        cur = base
        for part in parts:
            match = next((c for c in sorted(cur.iterdir()) if c.is_dir() and c.name.lower() == part.lower()), None)
            if match is None:
                break
            cur = match
        else:
            return cur
    return None


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files in ``folder`` (not recursive) by stem; two files with one stem is an error.

    An entry named like an image that cannot be looked at (a dangling symlink, a link loop) is
    kept, so that reading it reports that sample as failed instead of dropping it silently; pipes,
    sockets, devices and folders are left out (never opened).
    """
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in constants.IMAGE_EXTENSIONS:
            continue
        try:
            if not stat.S_ISREG(os.stat(p).st_mode):
                continue
        except OSError:
            pass  # dangling: kept, its read fails with the reason
        if p.stem in out:
            raise DatasetError(f"{folder}: two files named {p.stem}.*: {out[p.stem].name} and {p.name}")
        out[p.stem] = p
    return out


_COPY_SUFFIX = re.compile(r"^(.*)_\d+$")


def _match(
    names: Sequence[str], files: dict[str, Path], *, role: str, folder: Path, allow_copy_suffix: bool = False
) -> dict[str, Path]:
    """Map every name to its file in ``files``; list the missing ones in a DatasetError.

    With ``allow_copy_suffix``, ``<fg>_<k>`` also matches ``<fg>`` (an ``alpha/`` folder
    holding one alpha per foreground instead of GCA's per-image ``alpha_copy/``).
    """
    found: dict[str, Path] = {}
    missing = []
    for name in names:
        path = files.get(name)
        if path is None and allow_copy_suffix:
            m = _COPY_SUFFIX.match(name)
            if m:
                path = files.get(m.group(1))
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing) - 5} more)" if len(missing) > 5 else "")
        raise DatasetError(
            f"{len(missing)} of {len(names)} images have no {role} in {folder}: {shown}",
            hint=f"{role} files are matched to images by file stem",
        )
    return found


def _resolve(root: Path, sub: str | os.PathLike | None) -> Path | None:
    if sub is None:
        return None
    p = Path(sub)
    return p if p.is_absolute() else root / p


def _triplet_samples(
    image_dir: Path,
    alpha_dir: Path,
    trimap_dir: Path | None,
    *,
    prefix: str = "",
    groups: dict[str, str] | None = None,
    allow_copy_suffix: bool = False,
) -> list[Sample]:
    """Samples from an image folder, an alpha folder and an optional trimap folder, matched by stem."""
    images = _images_by_stem(image_dir)
    if not images:
        raise DatasetError(f"no images in {image_dir}", hint=_listing(image_dir))
    names = sorted(images)
    alphas = _match(
        names, _images_by_stem(alpha_dir), role="alpha", folder=alpha_dir, allow_copy_suffix=allow_copy_suffix
    )
    trimaps = (
        _match(names, _images_by_stem(trimap_dir), role="trimap", folder=trimap_dir) if trimap_dir is not None else {}
    )
    return [
        Sample(
            name=prefix + n,
            image=images[n],
            alpha=alphas[n],
            trimap=trimaps.get(n),
            groups=dict(groups or {}),
        )
        for n in names
    ]


def _bases(root: Path, extra: Sequence[str]) -> list[Path]:
    """``root`` and the sub-folders under it where a test split commonly lives."""
    out = [root]
    for rel in extra:
        p = _subdir(root, [rel])
        if p is not None and p not in out:
            out.append(p)
    return out


def _check_root(root: Path, title: str) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DatasetError(f"{title}: dataset folder {root} does not exist")
    if not root.is_dir():
        raise DatasetError(f"{title}: {root} is not a folder")
    return root


# ----------------------------------------------------------------------------- loaders
def _prebuilt(
    base: Path,
    *,
    image_dirs: Sequence[str] = ("merged",),
    alpha_dirs: Sequence[str] = ("alpha_copy", "alpha"),
    trimap_dirs: Sequence[str] = _TRIMAP_DIRS,
    need_trimap: bool = True,
) -> tuple[Path, Path, Path | None] | None:
    """(image, alpha, trimap) folders of a prebuilt layout under ``base``, or None if no image folder."""
    image_dir = _subdir(base, image_dirs)
    if image_dir is None:
        return None
    alpha_dir = _subdir(base, alpha_dirs)
    trimap_dir = _subdir(base, trimap_dirs)
    missing = []
    if alpha_dir is None:
        missing.append(" or ".join(f"{d}/" for d in alpha_dirs))
    if trimap_dir is None and need_trimap:
        missing.append(" or ".join(f"{d}/" for d in trimap_dirs))
    if missing:
        raise DatasetError(
            f"{base}: found {image_dir.name}/ but not " + " and not ".join(missing),
            hint=_listing(base),
        )
    return image_dir, alpha_dir, trimap_dir


def _read_names(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _load_comp1k_compose(base: Path, lists_dir: Path, bg_dir: Path | None, root: Path) -> list[Sample]:
    fg_dir = _subdir(base, ["fg"])
    alpha_dir = _subdir(base, ["alpha"])
    trimap_dir = _subdir(base, _TRIMAP_DIRS)
    missing = [n for n, d in (("fg/", fg_dir), ("alpha/", alpha_dir), ("trimaps/", trimap_dir)) if d is None]
    if missing:
        raise DatasetError(
            f"comp1k: {lists_dir / 'test_fg_names.txt'} found but {base} lacks " + ", ".join(missing),
            hint=_listing(base),
        )
    fg_names = _read_names(lists_dir / "test_fg_names.txt")
    bg_names = _read_names(lists_dir / "test_bg_names.txt")
    if len(bg_names) < BGS_PER_FG * len(fg_names):
        raise DatasetError(
            f"comp1k: test_bg_names.txt lists {len(bg_names)} backgrounds; the recipe needs "
            f"{BGS_PER_FG} per foreground, {BGS_PER_FG * len(fg_names)} for {len(fg_names)} foregrounds"
        )
    if bg_dir is None:
        for b in (lists_dir, base, root, root.parent):
            bg_dir = _subdir(b, _BG_DIRS)
            if bg_dir is not None:
                break
    if bg_dir is None or not bg_dir.is_dir():
        raise DatasetError(
            "comp1k: no background folder for composing the test images",
            hint="pass the folder holding the test_bg_names.txt images (VOC2012 JPEGImages) with --bg-dir, "
            "or put them in one of: " + ", ".join(_BG_DIRS[:4]),
        )
    missing_files = [n for n in fg_names if not (fg_dir / n).is_file()]
    missing_files += [n for n in fg_names if not (alpha_dir / n).is_file()]
    used_bgs = bg_names[: BGS_PER_FG * len(fg_names)]
    missing_bgs = [n for n in used_bgs if not (bg_dir / n).is_file()]
    if missing_files or missing_bgs:
        shown = (missing_files + missing_bgs)[:5]
        raise DatasetError(
            f"comp1k: {len(missing_files)} foreground/alpha files and {len(missing_bgs)} backgrounds "
            f"named in the lists are missing, e.g. {', '.join(shown)}",
            hint=f"foregrounds in {fg_dir}, alphas in {alpha_dir}, backgrounds in {bg_dir}",
        )
    trimaps = _images_by_stem(trimap_dir)
    samples = []
    bg_iter = iter(used_bgs)
    missing_tri = []
    for fg_name in fg_names:
        stem = fg_name[: len(fg_name) - 4]  # the script strips a 4-character extension
        for k in range(BGS_PER_FG):
            name = f"{stem}_{k}"
            bg = next(bg_iter)
            tri = trimaps.get(name)
            if tri is None:
                missing_tri.append(name)
            samples.append(
                Sample(
                    name=name,
                    alpha=alpha_dir / fg_name,
                    composition=Composition(fg_dir / fg_name, alpha_dir / fg_name, bg_dir / bg),
                    trimap=tri,
                )
            )
    if missing_tri:
        raise DatasetError(
            f"comp1k: {len(missing_tri)} composed images have no trimap in {trimap_dir}, "
            f"e.g. {', '.join(missing_tri[:5])}"
        )
    return samples


_COMP1K_BASES = (
    "Test_set",
    "Combined_Dataset/Test_set",
    "test",
    "Adobe-licensed images",
    "Test_set/Adobe-licensed images",
    "Combined_Dataset/Test_set/Adobe-licensed images",
)


def _load_comp1k(root: Path, *, bg_dir: Path | None = None, layout: str | None = None, **_: object):
    bases = _bases(root, _COMP1K_BASES)
    if layout in (None, "merged"):
        for base in bases:
            dirs = _prebuilt(base)
            if dirs is not None:
                return "merged", _triplet_samples(*dirs, allow_copy_suffix=True)
    if layout in (None, "compose"):
        for lists_dir in bases:
            if (lists_dir / "test_fg_names.txt").is_file() and (lists_dir / "test_bg_names.txt").is_file():
                base = _subdir(lists_dir, ["Adobe-licensed images"]) or lists_dir
                return "compose", _load_comp1k_compose(base, lists_dir, bg_dir, root)
    raise DatasetError(
        f"comp1k: no Composition-1k layout under {root}. Expected either merged/ + alpha_copy/ (or alpha/) "
        "+ trimaps/ (the prebuilt test set GCA, MatteFormer and ViTMatte use), or the official Adobe "
        "Test_set: test_fg_names.txt + test_bg_names.txt + Adobe-licensed images/{fg,alpha,trimaps}/ "
        "+ a background folder. Found: " + _listing(root),
    )


def _load_dist646(root: Path, **_: object):
    bases = _bases(root, ["Test", "test", "D646_Test", "Distinctions-646/Test"])
    for base in bases:
        dirs = _prebuilt(
            base,
            image_dirs=("merged", "image", "images", "composite", "comp"),
            alpha_dirs=("alpha_copy", "alpha", "GT", "gt", "mask"),
            trimap_dirs=_TRIMAP_DIRS,
        )
        if dirs is not None:
            return "merged", _triplet_samples(*dirs, allow_copy_suffix=True)
    raise DatasetError(
        f"dist646: no Distinctions-646 test layout under {root}. Expected merged/ (or image/) + "
        "alpha_copy/ (or alpha/, GT/) + trimaps/ (or trimap/), optionally under Test/. The archive ships "
        "FG/ and GT/ only: compose the test images and make trimaps first. Found: " + _listing(root),
        hint="mattecli trimap makes trimaps from the GT alphas",
    )


def _sim_class_of(stem: str) -> str | None:
    for cls in sorted(SIM_CLASSES, key=len, reverse=True):
        if stem.startswith(cls + "_"):
            return cls
    return None


def _load_simd(root: Path, **_: object):
    bases = _bases(root, ["SIMD", "test", "Test"])
    for base in bases:
        class_dirs = [
            d for d in sorted(base.iterdir()) if d.is_dir() and _subdir(d, ["merged"]) is not None
        ] if base.is_dir() else []  # fmt: skip
        class_dirs = [d for d in class_dirs if d.name != "merged"]
        if class_dirs:
            samples: list[Sample] = []
            for d in class_dirs:
                dirs = _prebuilt(d, alpha_dirs=("alpha", "alpha_copy"))
                assert dirs is not None
                samples += _triplet_samples(*dirs, prefix=f"{d.name}/", groups={"class": d.name})
            return "classes", samples
    for base in bases:
        dirs = _prebuilt(base)
        if dirs is not None:
            samples = _triplet_samples(*dirs, allow_copy_suffix=True)
            samples = [replace(s, groups={"class": c}) if (c := _sim_class_of(s.name)) else s for s in samples]
            return "merged", samples
    raise DatasetError(
        f"simd: no SIMD test layout under {root}. Expected <class>/merged/ + <class>/trimap/ + "
        "<class>/alpha/ per class (the output of SIM's dataset/generate_testset.py), or one flat "
        "merged/ + alpha_copy/ + trimaps/ folder. Found: " + _listing(root),
    )


def _whole_image_layout(root: Path, title: str, extra_bases: Sequence[str]) -> tuple[Path, list[Sample]]:
    for base in _bases(root, extra_bases):
        dirs = _prebuilt(
            base, image_dirs=("original",), alpha_dirs=("mask", "alpha"), trimap_dirs=("trimap",),
            need_trimap=False,
        )  # fmt: skip
        if dirs is not None:
            return base, _triplet_samples(*dirs)
    raise DatasetError(
        f"{title}: expected original/ (images) + mask/ (GT alphas) [+ trimap/] under {root} "
        f"(or its {'/, '.join(extra_bases)}/ folder). Found: " + _listing(root),
    )


def _load_aim500(root: Path, **_: object):
    base, samples = _whole_image_layout(root, "aim500", ["validation", "AIM-500", "AIM-500/validation"])
    json_path = next(
        (p for p in (base / "aim_category_type.json", root / "aim_category_type.json") if p.is_file()), None
    )
    if json_path is None:
        return "original", samples
    try:
        table = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DatasetError(f"{json_path}: not readable JSON ({err})") from err
    if not isinstance(table, dict):
        raise DatasetError(f"{json_path}: expected an object mapping image names to their type and category")
    out = []
    for s in samples:
        entry = table.get(s.name) or {}
        groups = {k: str(entry[k]) for k in ("type", "category") if isinstance(entry, dict) and k in entry}
        out.append(replace(s, groups=groups))
    return "original", out


def _load_am2k(root: Path, **_: object):
    _, samples = _whole_image_layout(root, "am2k", ["validation", "AM-2k/validation", "AM-2K/validation"])
    return "original", samples


def _load_folder(
    root: Path,
    *,
    image_dir: str | os.PathLike | None = None,
    alpha_dir: str | os.PathLike | None = None,
    trimap_dir: str | os.PathLike | None = None,
    **_: object,
):
    img = _resolve(root, image_dir) or _subdir(root, _IMAGE_DIRS)
    alp = _resolve(root, alpha_dir) or _subdir(root, _ALPHA_DIRS)
    tri = _resolve(root, trimap_dir) or _subdir(root, _TRIMAP_DIRS)
    problems = []
    if img is None or not img.is_dir():
        problems.append(f"an image folder ({img or ', '.join(_IMAGE_DIRS[:6]) + ', ...'})")
    if alp is None or not alp.is_dir():
        problems.append(f"an alpha folder ({alp or ', '.join(_ALPHA_DIRS[:6]) + ', ...'})")
    if tri is not None and not tri.is_dir():
        problems.append(f"the trimap folder {tri}")
    if problems:
        raise DatasetError(
            "folder: missing " + " and ".join(problems) + ". " + _listing(root),
            hint="name the folders with --image-dir / --alpha-dir / --trimap-dir",
        )
    return "folder", _triplet_samples(img, alp, tri)


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset kind: its name, title, metric conventions and loader."""

    name: str
    title: str
    metric_mode: str
    exact_trimap: bool
    group_keys: tuple[str, ...]
    loader: object


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo("comp1k", "Composition-1k", "unknown", True, (), _load_comp1k),
        DatasetInfo("dist646", "Distinctions-646", "unknown", True, (), _load_dist646),
        DatasetInfo("aim500", "AIM-500", "whole", True, ("type", "category"), _load_aim500),
        DatasetInfo("am2k", "AM-2k", "whole", True, (), _load_am2k),
        DatasetInfo("simd", "SIMD", "unknown", True, ("class",), _load_simd),
        DatasetInfo("folder", "folder", "unknown", False, (), _load_folder),
    )
}


def load_dataset(
    name: str,
    root: str | os.PathLike,
    *,
    limit: int | None = None,
    layout: str | None = None,
    bg_dir: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    alpha_dir: str | os.PathLike | None = None,
    trimap_dir: str | os.PathLike | None = None,
) -> Dataset:
    """Find the test samples of dataset ``name`` under ``root``.

    Args:
        name: one of :data:`DATASETS` (``comp1k``, ``dist646``, ``aim500``, ``am2k``,
            ``simd``, ``folder``).
        root: the dataset folder.
        limit: keep only the first ``limit`` samples (in name order).
        layout: comp1k only: force ``"merged"`` (prebuilt) or ``"compose"`` (official lists).
        bg_dir: comp1k ``compose`` layout: the background folder (auto-detected otherwise).
        image_dir, alpha_dir, trimap_dir: ``folder`` layout: explicit folders (relative to
            ``root`` or absolute); auto-detected from common names otherwise.

    Raises:
        DatasetError: unknown dataset, or a wrong/incomplete layout (the message lists
            what was expected and what was found).
    """
    info = DATASETS.get(name)
    if info is None:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if layout is not None and (name != "comp1k" or layout not in ("merged", "compose")):
        raise DatasetError(f"layout {layout!r} is not available for {name}")
    root = _check_root(Path(root), info.title)
    found_layout, samples = info.loader(  # type: ignore[operator]
        root,
        bg_dir=None if bg_dir is None else Path(bg_dir),
        layout=layout,
        image_dir=image_dir,
        alpha_dir=alpha_dir,
        trimap_dir=trimap_dir,
    )
    if not samples:
        raise DatasetError(f"{info.title}: no samples found under {root}", hint=_listing(root))
    samples = sorted(samples, key=lambda s: s.name)
    metric_mode = info.metric_mode
    if name == "folder" and all(s.trimap is None for s in samples):
        metric_mode = "whole"  # no trimaps: nothing marks an unknown region
    ds = Dataset(
        name=info.name,
        title=info.title,
        root=root,
        layout=found_layout,
        metric_mode=metric_mode,
        exact_trimap=info.exact_trimap,
        group_keys=info.group_keys,
        samples=tuple(samples),
    )
    return ds.limited(limit)
