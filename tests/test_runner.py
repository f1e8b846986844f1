"""The job runner: output planning, ordering, per-file errors, pipelining with bounded memory."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mattecli.pipelines import runner
from mattecli.errors import BadOptionError, ImageReadError, WeightsNotCachedError
from mattecli.io import InputItem


def _jobs(tmp_path: Path, n: int) -> list[runner.Job]:
    items = [InputItem(tmp_path / "in" / f"{i:03d}.png", Path(f"{i:03d}.png")) for i in range(n)]
    return runner.plan_jobs(items, tmp_path / "out")


def test_plan_jobs_names_and_roles(tmp_path):
    items = [InputItem(Path("/x/a/b.jpg"), Path("a/b.jpg"))]
    (job,) = runner.plan_jobs(items, tmp_path / "out", roles={"cutout": "_cutout"})
    assert job.output == tmp_path / "out" / "a" / "b.png"
    assert job.outputs["cutout"] == tmp_path / "out" / "a" / "b_cutout.png"
    (single,) = runner.plan_jobs(items, tmp_path / "alpha.png")
    assert single.output == tmp_path / "alpha.png"
    with pytest.raises(BadOptionError):
        runner.plan_jobs(items * 2, tmp_path / "alpha.png")


def test_pipeline_keeps_order_and_bounds_memory(tmp_path):
    jobs = _jobs(tmp_path, 60)
    held = []
    live = 0
    lock = threading.Lock()

    def load(job):
        nonlocal live
        time.sleep(0.001 * (hash(job.item.rel) % 3))  # uneven decode times
        with lock:
            live += 1
            held.append(live)
        return job.item.rel.stem

    def compute(job, stem):
        return stem.upper()

    def save(job, value):
        nonlocal live
        time.sleep(0.002 * (int(value) % 4))  # uneven write times
        with lock:
            live -= 1
        return {"value": value}

    stages = runner.Stages(compute=compute, load=load, save=save)
    results = list(runner.run_jobs(jobs, stages, io_workers=3, prefetch=4))
    assert [r["value"] for r in results] == [f"{i:03d}" for i in range(60)]
    assert all(r["status"] == "ok" for r in results)
    assert max(held) <= 4 + 4 + 1  # prefetched inputs + pending writes + the one being computed


def test_errors_in_each_stage_are_per_file(tmp_path):
    jobs = _jobs(tmp_path, 6)

    def load(job):
        if job.item.rel.stem == "001":
            raise ImageReadError(f"{job.item.path}: not a readable image")
        return job.item.rel.stem

    def compute(job, stem):
        if stem == "003":
            raise ValueError("boom")
        return stem

    def save(job, stem):
        if stem == "004":
            raise OSError("disk on fire")

    results = list(runner.run_jobs(jobs, runner.Stages(compute=compute, load=load, save=save)))
    status = [r["status"] for r in results]
    assert status == ["ok", "error", "ok", "error", "error", "ok"]
    assert "not a readable image" in results[1]["error"]
    assert "internal error: ValueError: boom" in results[3]["error"]
    assert "disk on fire" in results[4]["error"]


def test_fatal_errors_stop_the_run(tmp_path):
    jobs = _jobs(tmp_path, 5)
    seen = []

    def compute(job, _):
        seen.append(job.item.rel.stem)
        if len(seen) == 2:
            raise WeightsNotCachedError("aim: weights are not cached")

    with pytest.raises(WeightsNotCachedError):
        list(runner.run_jobs(jobs, runner.Stages(compute=compute)))
    assert seen == ["000", "001"]


def test_skips_and_collisions_keep_their_place(tmp_path):
    jobs = _jobs(tmp_path, 4)
    jobs[1].output.parent.mkdir(parents=True)
    jobs[1].output.write_bytes(b"done")
    clash = runner.Job(InputItem(tmp_path / "in" / "000.jpg", Path("000.jpg")), {"main": jobs[0].output})
    results = list(runner.run_jobs([*jobs, clash], lambda job: {"done": True}))
    assert [r["status"] for r in results] == ["ok", "skipped", "ok", "ok", "error"]
    assert "also the output of" in results[4]["error"]


def test_many_small_images_end_to_end(tmp_path, runner):
    """A folder pipeline of many small images preserves order and writes all of them."""
    import json

    import numpy as np
    from conftest import invoke, write_gray, write_rgb

    rng = np.random.default_rng(0)
    for i in range(40):
        image = rng.random((12, 16, 3)).astype(np.float32)
        tri = np.zeros((12, 16), np.uint8)
        tri[:, 8:] = 255
        tri[:, 6:10] = 128
        write_rgb(tmp_path / "imgs" / f"{i:02d}.png", image)
        write_gray(tmp_path / "tris" / f"{i:02d}.png", tri)
    result = invoke(
        runner, ["matte", "-m", "cf", tmp_path / "imgs", tmp_path / "out", "-t", tmp_path / "tris", "--json", "-j", "3"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["input"]).name for r in rows] == [f"{i:02d}.png" for i in range(40)]
    assert len(list((tmp_path / "out").iterdir())) == 40


def test_stale_part_files_are_cleared_once_per_folder_and_process(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "remove_stale_parts", lambda folder, names: calls.append((folder, set(names))))
    (tmp_path / "out").mkdir()
    jobs = _jobs(tmp_path, 3)
    for _ in range(3):  # e.g. a Ray actor's batches
        list(runner.run_jobs(jobs, lambda job: None))
    assert calls == [(tmp_path / "out", {"000.png", "001.png", "002.png"})]
