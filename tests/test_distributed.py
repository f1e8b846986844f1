"""Scale-out: one worker process per device, and the Ray Data path, give the single-process outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLES, REPO

from mattecli.backends.devices import parse_devices
from mattecli.errors import BadOptionError


def _run(args: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mattecli", *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=600, **kw
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The two examples (same names: sharding hashes them) at 96 x 96 px, so each solve takes a blink."""
    import cv2

    root = tmp_path_factory.mktemp("small")
    for kind, interpolation in (("images", cv2.INTER_AREA), ("trimaps", cv2.INTER_NEAREST)):
        (root / kind).mkdir()
        for name in ("fluffy.png", "veil.png"):
            image = cv2.imread(str(EXAMPLES / kind / name), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(root / kind / name), cv2.resize(image, (96, 96), interpolation=interpolation))
    return root


@pytest.fixture(scope="module")
def single(small, tmp_path_factory) -> Path:
    """The single-process outputs the scaled-out runs must equal byte for byte."""
    out = tmp_path_factory.mktemp("single")
    proc = _run(["matte", "-m", "cf", small / "images", out, "-t", small / "trimaps", "-q"])
    assert proc.returncode == 0, proc.stderr
    return out


def test_parse_devices():
    assert parse_devices("cuda:0") is None and parse_devices("auto") is None
    assert parse_devices("cuda:0, cuda:1") == ["cuda:0", "cuda:1"]
    assert parse_devices("cpu,cpu") == ["cpu", "cpu"]
    with pytest.raises(BadOptionError):
        parse_devices("cuda:0,")


def test_one_worker_per_device_gives_identical_outputs(tmp_path, small, single):
    out = tmp_path / "multi"
    proc = _run(
        ["matte", "-m", "cf", small / "images", out, "-t", small / "trimaps", "--device", "cpu,cpu", "--json"]
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(Path(r["input"]).name for r in rows) == ["fluffy.png", "veil.png"]
    assert all(r["status"] == "ok" and r["device"] == "cpu" for r in rows)
    for name in ("fluffy.png", "veil.png"):
        assert (out / name).read_bytes() == (single / name).read_bytes()
    # re-running skips everything (the workers share skip-existing semantics)
    proc = _run(
        ["matte", "-m", "cf", small / "images", out, "-t", small / "trimaps", "--device", "cpu,cpu", "--json"]
    )
    assert {json.loads(line)["status"] for line in proc.stdout.splitlines()} == {"skipped"}


def test_workers_report_fatal_errors(tmp_path):
    proc = _run(
        ["matte", "-m", "aim", EXAMPLES / "images", tmp_path / "o", "--device", "cpu,cpu"],
        env={"HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2 and "mattecli weights import aim" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ray_path_keeps_its_shard_and_writes_the_same_outputs_as_the_local_path(tmp_path, small, single):
    """``--ray --shard K/N`` processes shard K only (it once processed every input), with the local
    path's bytes. One Ray start-up (~15 s): fluffy is in shard 2 of 3, veil in shard 1."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'mattecli[ray]')")
    from mattecli import io

    assert io.in_shard("fluffy.png", (2, 3)) and io.in_shard("veil.png", (1, 3))
    out = tmp_path / "ray"
    proc = _run(
        ["matte", "-m", "cf", small / "images", out, "-t", small / "trimaps", "--ray", "--shard", "2/3", "--json"],
        env={"RAY_ADDRESS": "", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [(Path(r["input"]).name, r["status"]) for r in rows] == [("fluffy.png", "ok")]
    assert sorted(p.name for p in out.iterdir()) == ["fluffy.png"]
    assert (out / "fluffy.png").read_bytes() == (single / "fluffy.png").read_bytes()


def test_absent_devices_are_refused_before_any_work(tmp_path):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has two GPUs")
    # a deep method: the devices are looked for (before its weights, before any worker starts)
    proc = _run(["matte", "-m", "aim", EXAMPLES / "images", tmp_path / "o", "--device", "cuda:0,cuda:1"])
    assert proc.returncode == 2 and "requested but" in proc.stderr
    assert not (tmp_path / "o").exists()
    # a CPU-only method: the device list is refused for what it is
    args = ["matte", "-m", "cf", EXAMPLES / "images", tmp_path / "o", "-t", EXAMPLES / "trimaps"]
    proc = _run([*args, "--device", "cuda:0,cuda:1"])
    assert proc.returncode == 2 and "method cf runs on the CPU only; --device cuda:0 does not apply" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend", ["devices", "ray"])
def test_a_finished_folder_run_again_starts_no_worker_and_needs_no_weights(tmp_path, small, monkeypatch, backend):
    """Every output there: each file ``skipped`` with no worker process, no Ray cluster and no weights
    fetched (a deep method, offline, with an empty cache); with --overwrite the run needs the weights."""
    import shutil

    from mattecli import backends
    from mattecli.backends import devices
    from mattecli.errors import WeightsError
    from mattecli.pipelines.matte import MatteSettings

    if backend == "ray":
        ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'mattecli[ray]')")
        monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
        chosen = backends.Backend(ray=True)
    else:
        chosen = backends.Backend(devices=("cpu", "cpu"))
    monkeypatch.setattr(devices.mp, "get_context", lambda *a: pytest.fail("a worker was started"))
    out = tmp_path / "out"
    out.mkdir()
    for name in ("fluffy.png", "veil.png"):
        shutil.copy(small / "trimaps" / name, out / name)  # any PNG: its presence marks the file done
    settings = MatteSettings()
    total, rows = backends.matte([small / "images"], out, method="aim", trimap=None, settings=settings, backend=chosen)
    rows = list(rows)
    assert total == 2 and sorted(Path(r["input"]).name for r in rows) == ["fluffy.png", "veil.png"]
    assert {r["status"] for r in rows} == {"skipped"}
    assert (out / "fluffy.png").read_bytes() == (small / "trimaps" / "fluffy.png").read_bytes()
    with pytest.raises(WeightsError):
        total, rows = backends.matte(
            [small / "images"], out, method="aim", trimap=None, settings=settings, backend=chosen, overwrite=True
        )
        list(rows)
