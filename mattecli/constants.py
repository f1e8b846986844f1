"""mattecli's environment variables: no other module reads the environment.

Most are read once, when this module is imported. The two dataset locations are read at call
time (:func:`mattecli_datasets`, :func:`mattecli_datasets_manifest`), so that a process (a test,
a notebook) may point them elsewhere while it runs. Hugging Face's own variables (``HF_HOME``,
``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``) are left to ``huggingface_hub``; mattecli
never overrides them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "MATTECLI_DEBUG",
    "MATTECLI_HOME",
    "MAX_PIXELS",
    "MATTECLI_MAX_PIXELS_TEXT",
    "OPENCV_MAX_PIXELS",
    "MATTECLI_MANIFEST",
    "MATTECLI_OFFLINE",
    "MATTECLI_KEEP_FREED_MEMORY",
    "IMAGE_EXTENSIONS",
    "offline",
    "mattecli_datasets",
    "mattecli_datasets_manifest",
]


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _as_int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


#: Show full tracebacks instead of one-line errors.
MATTECLI_DEBUG: bool = _is_true(os.getenv("MATTECLI_DEBUG"))

#: mattecli's own data folder (imported weights live in the HF cache, not here).
MATTECLI_HOME: Path = Path(
    os.getenv("MATTECLI_HOME") or Path(os.getenv("XDG_CACHE_HOME") or Path.home() / ".cache") / "mattecli"
).expanduser()

#: An alternative weights manifest (default: the repository's / the package's ``weights_manifest.json``).
_manifest = os.getenv("MATTECLI_MANIFEST")
MATTECLI_MANIFEST: Path | None = Path(_manifest).expanduser() if _manifest else None

#: Never download anything (weights, datasets): only what is already cached or imported is used.
#: ``HF_HUB_OFFLINE=1`` means the same (see :func:`offline`).
MATTECLI_OFFLINE: bool = _is_true(os.getenv("MATTECLI_OFFLINE"))

#: The CLI's CPU runs without ``--max-memory`` keep freed C-heap blocks for reuse (faster, more resident
#: memory: :mod:`mattecli.runtime.allocator`); ``MATTECLI_KEEP_FREED_MEMORY=0`` keeps glibc's defaults.
MATTECLI_KEEP_FREED_MEMORY: bool = (os.getenv("MATTECLI_KEEP_FREED_MEMORY") or "1").strip().lower() not in {
    "0",
    "false",
    "no",
    "off",
}

#: Largest image (in pixels) that will be decoded; a guard against decompression bombs.
#: 200 MP comfortably admits 100 MP camera files and 16K frames. ``io.pixel_limit`` refuses a
#: malformed, non-positive or too large ``MATTECLI_MAX_PIXELS`` (kept as text here) as a usage error.
MATTECLI_MAX_PIXELS_TEXT: str | None = os.getenv("MATTECLI_MAX_PIXELS")
MAX_PIXELS: int = _as_int(MATTECLI_MAX_PIXELS_TEXT, 200_000_000)

#: OpenCV's own decode cap in pixels (``OPENCV_IO_MAX_IMAGE_PIXELS``, default 2^30), which OpenCV reads
#: once, when ``cv2`` is imported: a pixel limit above it cannot be honoured and is refused.
OPENCV_MAX_PIXELS: int = _as_int(os.getenv("OPENCV_IO_MAX_IMAGE_PIXELS"), 1 << 30)

#: File extensions read as images when a folder is scanned (lower case, with dot).
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})


def offline() -> bool:
    """Whether downloads are off: ``MATTECLI_OFFLINE=1`` or Hugging Face's ``HF_HUB_OFFLINE=1``.

    Read at call time (huggingface_hub's own constant, which its tests and users may patch);
    a ``--no-download`` flag is passed to the library functions explicitly instead.
    """
    if MATTECLI_OFFLINE:
        return True
    from huggingface_hub import constants as hf_constants

    return bool(hf_constants.HF_HUB_OFFLINE)


def mattecli_datasets() -> str | None:
    """``MATTECLI_DATASETS`` as it is now, the folder of the benchmark datasets' default locations
    (``None`` or ``""`` when unset: ``<MATTECLI_HOME>/datasets``)."""
    return os.environ.get("MATTECLI_DATASETS")


def mattecli_datasets_manifest() -> str | None:
    """``MATTECLI_DATASETS_MANIFEST`` as it is now, an alternative ``datasets_manifest.json``
    (``None`` or ``""`` when unset: the repository's, else the packaged copy)."""
    return os.environ.get("MATTECLI_DATASETS_MANIFEST")
