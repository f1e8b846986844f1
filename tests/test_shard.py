"""--shard K/N: deterministic, disjoint and complete partitions; resumable shards; merged bench reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, invoke, synthetic_scene, write_gray, write_rgb

from mattecli import io
from mattecli.errors import BadOptionError

ENV = {k: v for k, v in os.environ.items() if not k.startswith("MATTECLI_")}


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_everything(n):
    keys = [f"shot{i:03d}/frame_{j}.png" for i in range(20) for j in range(5)]
    owners = {key: [k for k in range(1, n + 1) if io.in_shard(key, (k, n))] for key in keys}
    assert all(len(v) == 1 for v in owners.values())  # each key in exactly one shard
    if n > 1:
        sizes = [sum(v == [k] for v in owners.values()) for k in range(1, n + 1)]
        assert min(sizes) > 0


def test_shard_of_a_key_is_fixed_across_releases_and_machines():
    """Shard membership is part of the contract (the array jobs of one run may use different installs):
    these are SHA-1's values (``sha1(key)[:8]`` big-endian mod N); another hash would move most of them."""
    keys = [f"img{i:02d}.png" for i in range(12)]
    assert [next(k for k in (1, 2, 3) if io.in_shard(key, (k, 3))) for key in keys] == [
        3, 3, 1, 3, 2, 1, 3, 1, 1, 2, 2, 3,
    ]  # fmt: skip


def _shard_run(folder: Path, out: Path, shard: str, seed: int) -> subprocess.Popen:
    env = {**ENV, "PYTHONHASHSEED": str(seed)}
    cmd = [sys.executable, "-m", "mattecli", "trimap", str(folder), str(out), "--width", "2", "--shard", shard, "--json"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_three_processes_with_different_hash_seeds_split_a_folder_exactly(tmp_path):
    """Three real processes, each with its own PYTHONHASHSEED (so a salted ``hash`` would disagree
    between them), given the same folder: their outputs are disjoint and together complete."""
    names = [f"m{i:02d}.png" for i in range(24)]
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 255
    for name in names:
        write_gray(tmp_path / "masks" / name, mask)
    procs = [_shard_run(tmp_path / "masks", tmp_path / f"out{k}", f"{k}/3", seed) for k, seed in ((1, 1), (2, 2), (3, 3))]
    parts = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        rows = [json.loads(line) for line in stdout.splitlines()]
        assert {r["status"] for r in rows} <= {"ok"}
        parts.append({Path(r["input"]).name for r in rows})
    for k, part in enumerate(parts, start=1):
        assert sorted(p.name for p in (tmp_path / f"out{k}").iterdir()) == sorted(part)
    assert sum(map(len, parts)) == len(names) and set().union(*parts) == set(names)
    assert all(parts)  # 24 names over 3 shards: none is empty
    # and each process kept exactly what the hash of the relative path gives
    assert parts == [{n for n in names if io.in_shard(n, (k, 3))} for k in (1, 2, 3)]


def test_discover_shards_by_relative_path(tmp_path):
    for i in range(30):
        write_gray(tmp_path / "imgs" / f"sub{i % 3}" / f"{i:02d}.png", np.zeros((2, 2), np.uint8))
    everything = {it.rel.as_posix() for it in io.discover([tmp_path / "imgs"], recursive=True)}
    parts = [
        {it.rel.as_posix() for it in io.discover([tmp_path / "imgs"], recursive=True, shard=(k, 4))}
        for k in range(1, 5)
    ]
    assert set().union(*parts) == everything and sum(map(len, parts)) == len(everything)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_bad_shard_specs(text):
    with pytest.raises(BadOptionError):
        io.parse_shard(text)


def _scenes(root: Path, n: int) -> tuple[Path, Path]:
    for i in range(n):
        image, alpha, trimap = synthetic_scene(16, 20, seed=i)
        write_rgb(root / "images" / f"s{i:02d}.png", image)
        write_gray(root / "alpha" / f"s{i:02d}.png", alpha)
        write_gray(root / "trimaps" / f"s{i:02d}.png", trimap)
    return root / "images", root / "trimaps"


_BLOCK_AFTER_TWO = """
import os, sys
fifo, out = sys.argv[1], sys.argv[2]
real_fsync = os.fsync
def fsync(fd):  # once two outputs are in place, the next write blocks (a stalled disk): then kill -9
    if sum(1 for n in os.listdir(out) if n.endswith(".png") and not n.startswith(".")) >= 2:
        with open(fifo, "rb") as fh:
            fh.read()
    real_fsync(fd)
os.fsync = fsync
from mattecli.cli import app
app(sys.argv[3:], prog_name="mattecli")
"""


def test_matte_shards_fill_the_folder_and_a_killed_shard_reruns_exactly_its_missing_files(runner, tmp_path):
    images, trimaps = _scenes(tmp_path, 12)
    full = tmp_path / "full"
    for k in (1, 2, 3):
        result = invoke(runner, ["matte", "-m", "cf", images, full, "-t", trimaps, "--shard", f"{k}/3", "-q"])
        assert result.exit_code == 0, result.output
    names = [f"s{i:02d}.png" for i in range(12)]
    assert sorted(p.name for p in full.iterdir()) == names
    shard2 = {n for n in names if io.in_shard(n, (2, 3))}
    assert len(shard2) >= 3, shard2  # room for done, interrupted and not yet started files
    # shard 2 in a real process, killed (SIGKILL) while writing its third output
    out = tmp_path / "out"
    out.mkdir()
    fifo = tmp_path / "stall.fifo"
    os.mkfifo(fifo)
    args = ["matte", "-m", "cf", images, out, "-t", trimaps, "--shard", "2/3", "-q", "--jobs", "1"]  # one writer
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCK_AFTER_TWO, str(fifo), str(out), *map(str, args)],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        def stalled() -> bool:  # two outputs in place and the next one's temporary file waiting
            done = [p for p in out.iterdir() if not p.name.startswith(".")]
            return len(done) >= 2 and bool(list(out.glob(".*.part")))

        while not stalled() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert len(done) == 2 and done < shard2 and list(out.glob(".*.part"))
    # the re-run redoes exactly the missing files, exit 0, and leaves the folder as a clean run would
    result = invoke(runner, ["matte", "-m", "cf", images, out, "-t", trimaps, "--shard", "2/3", "--json"])
    assert result.exit_code == 0, result.output
    status = {Path(r["input"]).name: r["status"] for r in map(json.loads, result.stdout.splitlines())}
    assert status == {n: "skipped" if n in done else "ok" for n in shard2}
    assert sorted(p.name for p in out.iterdir()) == sorted(shard2)  # no .part left, nothing of other shards
    for name in shard2:
        assert (out / name).read_bytes() == (full / name).read_bytes()


@pytest.mark.parametrize("command", ["trimap", "composite"])
def test_shard_splits_trimap_and_composite_runs(runner, tmp_path, command):
    images, _ = _scenes(tmp_path, 9)
    alphas = tmp_path / "alpha"
    out = tmp_path / "out"
    args = ["trimap", alphas, out, "--width", "2"] if command == "trimap" else ["composite", images, alphas, out]
    if command == "composite":
        args.append("--no-estimate-foreground")
    names = [f"s{i:02d}.png" for i in range(9)]
    parts = []
    for k in (1, 2, 3):
        result = invoke(runner, [*args, "--shard", f"{k}/3", "--json"])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        assert {r["status"] for r in rows} <= {"ok"}
        parts.append({Path(r["output"]).name for r in rows})
        assert parts[-1] == {n for n in names if io.in_shard(n, (k, 3))}
    assert sum(map(len, parts)) == 9 and sorted(p.name for p in out.iterdir()) == names


def test_empty_shard_is_not_an_error(runner, tmp_path):
    images, trimaps = _scenes(tmp_path, 1)
    k = next(k for k in (1, 2) if not io.in_shard("s00.png", (k, 2)))
    result = invoke(runner, ["matte", "-m", "cf", images, tmp_path / "out", "-t", trimaps, "--shard", f"{k}/2"])
    assert result.exit_code == 0, result.output


def test_merged_shard_reports_equal_one_full_report(runner, tmp_path):
    _scenes(tmp_path / "data", 8)
    preds = tmp_path / "preds"
    for i in range(8):
        _, alpha, _ = synthetic_scene(16, 20, seed=i)
        write_gray(preds / f"s{i:02d}.png", np.clip(alpha * 0.9 + 0.05, 0, 1))
    common = ["bench", "--dataset", "folder", "--root", tmp_path / "data", "--predictions", preds, "-q"]
    assert invoke(runner, [*common, "--report", tmp_path / "full.json"]).exit_code == 0
    parts = []
    for k in (1, 2, 3):
        part = tmp_path / f"part{k}.json"
        assert invoke(runner, [*common, "--shard", f"{k}/3", "--report", part]).exit_code == 0
        parts.append(part)
    merged_args = [
        "bench",
        "--merge",
        parts[0],
        "--merge",
        parts[1],
        "--merge",
        parts[2],
        "--report",
        tmp_path / "merged.json",
    ]
    result = invoke(runner, merged_args)
    assert result.exit_code == 0, result.output
    full = json.loads((tmp_path / "full.json").read_text())
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["summary"] == full["summary"]
    assert [r["name"] for r in merged["rows"]] == [r["name"] for r in full["rows"]]
    assert "SAD" in result.stderr
