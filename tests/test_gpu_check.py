"""bench/gpu_check.py keeps working without a GPU: its --smoke mode runs every part's code on the CPU.

One subprocess runs ``bench/gpu_check.py --smoke --out TMP`` (tiny inputs, random weights, the CPU on both
sides of every comparison). Checked: it exits 0; ``gpu_check.json`` lists every registered method and every
part; every part has a status; every (part, method) has rows, and each row either carries its numbers
(status ``ok``) or says why it was skipped; nothing failed or ran out of time; ``gpu_check.md`` is the table
printed on stdout and has a row for every registered method and variant.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO

from mattecli import methods

SCRIPT = REPO / "bench" / "gpu_check.py"
PER_VARIANT = ("parity", "precision", "folder", "max-memory", "compile")
OFFICIAL = ("official-aim", "official-sim")
#: the numbers an ``ok`` row of each part carries
NUMBERS = {
    "parity": ("max_abs", "mean_abs", "over_1_255", "cpu_s", "device_s"),
    "precision": ("device_s", "speedup"),
    "folder": ("images", "wall_s", "images_per_s", "busy", "peak_bytes"),
    "compile": ("images", "wall_s", "images_per_s", "busy", "peak_bytes"),
    "max-memory": ("cap", "peak_bytes", "ratio", "device_s"),
}


def _finite(row: dict, keys) -> None:
    for key in keys:
        value = row.get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value), (row["key"], key, value)


def test_smoke_mode_runs_every_part_and_lists_every_method(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    data = json.loads((out / "gpu_check.json").read_text())
    table = (out / "gpu_check.md").read_text()
    assert done.stdout == table  # the table is printed
    assert "[gpu_check]" in done.stderr  # progress lines

    names = methods.list_methods()
    assert data["mode"] == "smoke" and data["device"] == "cpu"
    assert data["methods"] == names
    assert list(data["parts"]) == ["prepare", *PER_VARIANT[:4], *OFFICIAL, "compile"]
    for part, info in data["parts"].items():
        assert info["status"] == "done" or info["status"].startswith("skipped: "), (part, info)

    rows = data["rows"]
    for row in rows:
        status = row["status"]
        assert status == "ok" or (status.startswith("skipped: ") and len(status) > len("skipped: ") + 10), row
    for part in PER_VARIANT:
        for name in names:
            mine = [r for r in rows if r["part"] == part and r["method"] == name]
            assert mine, f"{part}: no row for method {name}"
        ok = [r for r in rows if r["part"] == part and r["status"] == "ok"]
        assert ok, f"{part}: --smoke ran nothing"
        for row in ok:
            _finite(row, NUMBERS[part])
    for part in OFFICIAL:  # no authors' code given: said so
        assert data["parts"][part]["status"].startswith("skipped: --" + part)

    # what the numbers say on the CPU: one build on both sides is the same computation; bf16 is compared
    parity = [r for r in rows if r["part"] == "parity" and r["status"] == "ok"]
    assert all(r["max_abs"] == 0 for r in parity)
    bf16 = [r for r in rows if r["part"] == "precision" and r.get("precision") == "bf16" and r["status"] == "ok"]
    assert bf16 and all(isinstance(r["within"], bool) and r["tolerance"] > 0 for r in bf16)
    fp16 = [r for r in rows if r["part"] == "precision" and r.get("precision") == "fp16"]
    assert fp16 and all("fp16" in r["status"] and "CPU" in r["status"] for r in fp16)
    cpu_only = [n for n in names if "cuda" not in methods.get(n).devices]
    for row in rows:
        if row["method"] in cpu_only and row["part"] in PER_VARIANT:
            assert "CPU only" in row["status"], row

    # the table: a row per registered method and variant, numbers or a numbered reason in every cell
    lines = table.splitlines()
    for name in names:
        spec = methods.get(name)
        for variant in [v.name for v in spec.variants] or ["-"]:
            assert any(line.startswith(f"| {name} | {variant} |") for line in lines), (name, variant)
    assert "skipped [" in table and "\n- [1] skipped: " in table
