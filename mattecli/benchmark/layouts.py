"""The folder layouts of the benchmark test sets: one loader per dataset, and the helpers they share.

Each loader takes the dataset folder and returns ``(layout, samples)``: the name of the layout it
recognised (``"merged"``, ``"compose"``, ``"classes"``, ``"original"``, ``"folder"``) and the
:class:`~mattecli.benchmark.samples.Sample` list, images matched to alphas and trimaps by file stem.
The layouts each loader accepts are listed in :mod:`mattecli.benchmark.datasets`; the upstream
layouts they follow are Adobe's Composition-1k ``Test_set`` (``test_fg_names.txt`` /
``test_bg_names.txt`` + ``fg/ alpha/ trimaps/``), GCA-Matting's prebuilt ``merged/ alpha_copy/
trimaps/`` (github.com/Yaoyi-Li/GCA-Matting: ``copy_testing_alpha.sh`` names one alpha per composed
image), SIM's ``generate_testset.py`` output (github.com/nowsyn/SIM: ``<class>/{merged,trimap,alpha}/``)
and the AIM authors' ``original/ mask/`` with ``aim_category_type.json`` (github.com/JizhiziLi/AIM).

Folder names are matched case-insensitively; two image files with one stem in a folder, a missing
folder, or images without an alpha (or trimap) raise one :class:`~mattecli.errors.DatasetError`
whose message says what was expected and what was found (:func:`listing`). Only regular files are
listed (pipes, sockets and devices are never opened); a dangling link named like an image is kept,
so reading it fails that one sample with the reason.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mattecli import constants
from mattecli.benchmark.samples import Composition, Sample
from mattecli.errors import DatasetError

__all__ = [
    "BGS_PER_FG",
    "SIM_CLASSES",
    "AIM500_TYPES",
    "AIM500_CATEGORIES",
    "listing",
    "check_root",
    "load_comp1k",
    "load_dist646",
    "load_simd",
    "load_aim500",
    "load_am2k",
    "load_folder",
]

#: Backgrounds per foreground in the Composition-1k / Distinctions-646 test recipe.
BGS_PER_FG = 20

#: SIM's 20 matting classes, in the order of the official code (github.com/nowsyn/SIM).
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


# ----------------------------------------------------------------------------- folder helpers
def listing(folder: Path, limit: int = 12) -> str:
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
        raise DatasetError(f"no images in {image_dir}", hint=listing(image_dir))
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


def check_root(root: Path, title: str) -> Path:
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
            hint=listing(base),
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
            hint=listing(base),
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


def load_comp1k(root: Path, *, bg_dir: Path | None = None, layout: str | None = None, **_: object):
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
        "+ a background folder. Found: " + listing(root),
    )


def load_dist646(root: Path, **_: object):
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
        "FG/ and GT/ only: compose the test images and make trimaps first. Found: " + listing(root),
        hint="mattecli trimap makes trimaps from the GT alphas",
    )


def _sim_class_of(stem: str) -> str | None:
    for cls in sorted(SIM_CLASSES, key=len, reverse=True):
        if stem.startswith(cls + "_"):
            return cls
    return None


def load_simd(root: Path, **_: object):
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
        "merged/ + alpha_copy/ + trimaps/ folder. Found: " + listing(root),
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
        f"(or its {'/, '.join(extra_bases)}/ folder). Found: " + listing(root),
    )


def load_aim500(root: Path, **_: object):
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


def load_am2k(root: Path, **_: object):
    _, samples = _whole_image_layout(root, "am2k", ["validation", "AM-2k/validation", "AM-2K/validation"])
    return "original", samples


def load_folder(
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
            "folder: missing " + " and ".join(problems) + ". " + listing(root),
            hint="name the folders with --image-dir / --alpha-dir / --trimap-dir",
        )
    return "folder", _triplet_samples(img, alp, tri)
