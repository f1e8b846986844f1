"""Freed C-heap blocks kept for reuse (``mattecli/runtime/allocator.py``), and who turns it on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_CHILD = r"""
import json, sys
import torch
from mattecli.runtime.allocator import keep_freed_memory, keeps_freed_memory

def rss(field="VmRSS"):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(field + ":"))

kept = keep_freed_memory() if sys.argv[1] == "keep" else False
peaks, after_free = [], []
for _ in range(16):  # the pattern of a network's layers, repeated as over a folder of images
    a = torch.ones(64 << 20)  # 256 MB, touched
    b = torch.ones(16 << 20)
    c = a + 1
    del a
    d = torch.ones(32 << 20)
    del b, c, d
    after_free.append(rss())
    peaks.append(rss("VmHWM"))
print(json.dumps({"kept": kept, "flag": keeps_freed_memory(), "after_free": after_free, "peaks": peaks,
                  "again": keep_freed_memory()}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_kept_blocks_stay_resident_and_are_reused_released_ones_go_back():
    kept, released = _run("keep"), _run("release")
    if not kept["kept"]:
        pytest.skip("no glibc mallopt here")
    assert kept["flag"] and kept["again"] and not released["flag"]
    mb = 1 << 20
    # released: every block went back to the OS on free; kept: they stay in the heap ...
    assert kept["after_free"][-1] - released["after_free"][-1] > 200 * mb
    # ... and are reused: the heap grows for some rounds and stops, at 1.3-2.9x the released peak in
    # these runs (torch's aligned allocations cannot reuse a freed block of exactly their size; when and
    # how far the heap grows depends on the address layout: seen settling from round 2 to round 15).
    # Nothing leaks: one 256 MB block kept per round would be 6x the released peak by round 16
    assert kept["peaks"][-1] <= 4 * released["peaks"][-1]
    assert released["peaks"][-1] - released["peaks"][0] < 16 * mb


def test_library_code_never_changes_the_heap_the_cli_does_for_uncapped_cpu_runs(monkeypatch):
    from mattecli import constants, methods
    from mattecli.methods.base import EngineOptions, MethodOptions
    from mattecli.runtime import allocator

    calls = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or True)
    # building and running a method (what a program importing mattecli does) sets nothing process-wide
    from conftest import synthetic_scene

    image, _, trimap = synthetic_scene()
    for options in (MethodOptions(device="cpu"), MethodOptions(device="cpu", engine=EngineOptions(max_memory=3 << 30))):
        methods.get("cf").create(options).predict(image, trimap)
    assert calls == []
    # the command line's start-up choice: CPU without a cap only, and never with the variable off
    assert allocator.configure_for_cli("cpu", None) and calls == [1]
    calls.clear()
    allocator.configure_for_cli("cpu", 3 << 30)
    allocator.configure_for_cli("cuda:0", None)
    monkeypatch.setattr(constants, "MATTECLI_KEEP_FREED_MEMORY", False)
    allocator.configure_for_cli("cpu", None)
    assert calls == []


def test_the_matte_command_keeps_freed_memory_unless_told_not_to(tmp_path):
    """In a child process (the switch is process-wide): ``matte`` on the CPU keeps freed blocks;
    ``MATTECLI_KEEP_FREED_MEMORY=0`` or ``--max-memory`` keep glibc's defaults."""
    import os
    import subprocess

    from conftest import REPO, synthetic_scene, write_rgb

    image, _, trimap = synthetic_scene()
    write_rgb(tmp_path / "img.png", image)
    import cv2

    cv2.imwrite(str(tmp_path / "tri.png"), trimap)
    code = (
        "import sys\nfrom mattecli.cli import app\nfrom mattecli.runtime import allocator\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('KEPT' if allocator.keeps_freed_memory() else 'DEFAULT', file=sys.stderr)\n"
    )
    base = ["matte", "-m", "cf", str(tmp_path / "img.png"), "--trimap", str(tmp_path / "tri.png"), "--device", "cpu"]

    def run(extra, env=None, out="o"):
        args = [*base, str(tmp_path / out), *extra]
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
            env={**os.environ, **(env or {})},
        )  # fmt: skip
        return proc.stderr.strip().splitlines()[-1]

    assert run([]) == "KEPT"
    assert run([], {"MATTECLI_KEEP_FREED_MEMORY": "0"}, "o2") == "DEFAULT"
    assert run(["--max-memory", "4G"], out="o3") == "DEFAULT"
