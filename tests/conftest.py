"""Shared fixtures: generated images on disk, the optional ../shared/data folder, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
EXAMPLES = REPO / "examples"


# A CLI run whose writes block in fsync until the FIFO ``argv[1]`` is opened and read: the temporary
# file exists and holds data, as on a hung disk. ``python -c BLOCKING_WRITER FIFO mattecli-args...``
BLOCKING_WRITER = """
import os, sys
fifo = sys.argv[1]
real_fsync = os.fsync
def blocking_fsync(fd):
    with open(fifo, "rb") as fh:
        fh.read()
    real_fsync(fd)
os.fsync = blocking_fsync
from mattecli.cli import app
app(sys.argv[2:], prog_name="mattecli")
"""


@pytest.fixture(autouse=True)
def _glibc_defaults(monkeypatch):
    """Runs in this process keep glibc's defaults: ``run_context`` would otherwise switch the whole
    pytest process to keeping freed memory (``runtime.allocator``) at the first in-process CLI run, and
    the RSS readings of every later memory test would depend on which tests ran before it.
    ``tests/test_allocator.py`` tests the real switch in child processes."""
    from mattecli.runtime import allocator

    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: False)


@pytest.fixture
def shared_data() -> Path:
    """The read-only folder of real photos beside the checkout; skipped when absent (a user's clone)."""
    if not (SHARED_DATA / "lemur" / "lemur.png").exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def synthetic_scene(h: int = 40, w: int = 56, seed: int = 0):
    """A two-colour scene with a known smooth alpha ramp, and its trimap.

    Foreground and background are constant colours, so the colour-line model of
    closed-form matting holds exactly and the true alpha is recoverable.
    Returns (image float32 HxWx3, alpha float32 HxW, trimap uint8 HxW).
    """
    rng = np.random.default_rng(seed)
    fg = rng.uniform(0.6, 0.95, 3).astype(np.float32)
    bg = rng.uniform(0.05, 0.35, 3).astype(np.float32)
    xx = np.arange(w, dtype=np.float32)[None, :].repeat(h, 0)
    alpha = np.clip((xx - w * 0.3) / (w * 0.4), 0, 1).astype(np.float32)
    image = alpha[:, :, None] * fg + (1 - alpha[:, :, None]) * bg
    trimap = np.full((h, w), 128, np.uint8)
    trimap[alpha == 0] = 0
    trimap[alpha == 1] = 255
    # shrink the known regions a little so the solver has work to do
    trimap[:, int(w * 0.25) : int(w * 0.75)] = 128
    return image.astype(np.float32), alpha, trimap


def write_rgb(path: Path, image01: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.round(image01[:, :, ::-1] * 255).astype(np.uint8))
    return path


def write_gray(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = values if values.dtype == np.uint8 else np.round(values * 255).astype(np.uint8)
    cv2.imwrite(str(path), arr)
    return path


@pytest.fixture
def scene_files(tmp_path: Path):
    """One synthetic scene on disk: (image path, trimap path, alpha array)."""
    image, alpha, trimap = synthetic_scene()
    return (
        write_rgb(tmp_path / "in" / "scene.png", image),
        write_gray(tmp_path / "tri" / "scene.png", trimap),
        alpha,
    )


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], input: str | None = None):
    """Run the real app in-process; returns the click Result (exit_code, stdout, stderr)."""
    from mattecli.cli import app

    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(autouse=True)
def _isolated_hf_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's real Hugging Face cache, and no test downloads anything
    unless it asks to: ``MATTECLI_OFFLINE`` is on (in this process and in subprocesses, which
    inherit the environment). Tests of downloads take the :func:`allow_downloads` fixture and point
    the manifest at a server on 127.0.0.1."""
    from huggingface_hub import constants as hf_constants

    from mattecli import constants

    cache = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HOME", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setenv("MATTECLI_OFFLINE", "1")
    monkeypatch.setattr(constants, "MATTECLI_OFFLINE", True)
    return cache


@pytest.fixture
def allow_downloads(monkeypatch):
    """Lift the suite's default ``MATTECLI_OFFLINE`` for a test that downloads from a local server."""
    from mattecli import constants

    monkeypatch.delenv("MATTECLI_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "MATTECLI_OFFLINE", False)
