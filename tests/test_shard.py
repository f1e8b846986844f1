"""--shard K/N: deterministic, disjoint and complete partitions; resumable shards; merged bench reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke, synthetic_scene, write_gray, write_rgb

from mattecli import io
from mattecli.errors import BadOptionError


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_are_disjoint_cover_everything_and_ignore_order(tmp_path, n):
    keys = [f"shot{i:03d}/frame_{j}.png" for i in range(20) for j in range(5)]
    owners = {key: [k for k in range(1, n + 1) if io.in_shard(key, (k, n))] for key in keys}
    assert all(len(v) == 1 for v in owners.values())  # each key in exactly one shard
    assert io.in_shard(keys[5], (owners[keys[5]][0], n))  # same answer on a second call (no salted hash)
    if n > 1:
        sizes = [sum(v == [k] for v in owners.values()) for k in range(1, n + 1)]
        assert min(sizes) > 0


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


def test_matte_shards_fill_the_folder_and_rerun_completes_a_killed_shard(runner, tmp_path):
    images, trimaps = _scenes(tmp_path, 9)
    out = tmp_path / "out"
    for k in (1, 2, 3):
        result = invoke(runner, ["matte", "-m", "cf", images, out, "-t", trimaps, "--shard", f"{k}/3", "-q"])
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"s{i:02d}.png" for i in range(9)]
    # a shard killed half-way: its outputs partly missing; re-running exactly that shard fills the gap
    shard2 = [p for p in out.iterdir() if io.in_shard(p.name, (2, 3))]
    for p in shard2[: max(1, len(shard2) // 2)]:
        p.unlink()
    result = invoke(runner, ["matte", "-m", "cf", images, out, "-t", trimaps, "--shard", "2/3", "--json"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["status"] for r in rows} <= {"ok", "skipped"} and sum(r["status"] == "ok" for r in rows) >= 1
    assert sorted(p.name for p in out.iterdir()) == names
    assert all(io.read_gray(p).shape == (16, 20) for p in out.iterdir())


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
