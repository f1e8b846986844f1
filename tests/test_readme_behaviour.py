"""Issue 20: README's "Shared behaviour" through the CLI -- debug tracebacks, Ctrl-C, --quiet, the
summary table, --max-pixels / MATTECLI_MAX_PIXELS, the --json keys of every command, exit 1 for
a failed input, EXIF orientation. Real processes where the behaviour is the process's (signals,
environment variables read at start-up), CliRunner elsewhere."""

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
from helpers import assert_equals_at_16_bits
from test_cli_options import fakes  # noqa: F401  (the recording fake networks, a fixture)

from mattecli import io

ENV = {k: v for k, v in os.environ.items() if not k.startswith("MATTECLI_")}
#: what README promises in every --json row of a file command
README_KEYS = {"input", "output", "method", "seconds", "status", "error"}
#: what ``matte`` adds: what ran (the README names them)
MATTE_KEYS = README_KEYS | {"strategy", "tile", "tiles", "fallback", "budget"}


def _mattecli(args: list, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mattecli", *map(str, args)],
        cwd=REPO, env=env or ENV, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _masks(root: Path, n: int, shape=(12, 16)) -> Path:
    mask = np.zeros(shape, np.uint8)
    mask[shape[0] // 4 : 3 * shape[0] // 4, shape[1] // 4 : 3 * shape[1] // 4] = 255
    for i in range(n):
        write_gray(root / "masks" / f"m{i}.png", mask)
    return root / "masks"


def _table_row(stderr: str) -> dict[str, str]:
    """The summary table's one row: column -> value (``done skipped failed seconds s/image``)."""
    lines = [line for line in stderr.splitlines() if "│" in line or "┃" in line]
    header = [c.strip() for c in lines[0].split("┃")]
    values = [c.strip() for c in lines[-1].split("│")]
    assert len(lines) == 2 and len(header) == len(values), stderr
    return dict(zip(header, values, strict=True))


# ----------------------------------------------------------------------------- errors and MATTECLI_DEBUG
def test_an_error_is_one_line_and_mattecli_debug_shows_the_traceback(tmp_path):
    missing = tmp_path / "nope.png"
    plain = _mattecli(["trimap", missing, tmp_path / "o.png"])
    assert plain.returncode == 2
    assert plain.stderr.splitlines() == [f"error: no such file or folder: {missing}"]
    debug = _mattecli(["trimap", missing, tmp_path / "o.png"], env={**ENV, "MATTECLI_DEBUG": "1"})
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr and "NoInputsError" in debug.stderr


# ----------------------------------------------------------------------------- Ctrl-C
_STALLS_ON_THE_SECOND_IMAGE = """
import faulthandler, signal, sys, time
faulthandler.register(signal.SIGUSR1)  # the test asks for the threads' stacks if the interrupt does not end it
from pathlib import Path
import numpy as np
from mattecli.methods import base
calls = []
def predict(self, image, trimap=None, *, extras=False):  # a method that takes forever on the second image
    calls.append(1)
    if len(calls) == 2:
        Path(sys.argv[1]).write_text("working")
        time.sleep(600)
    return base.MatteResult(np.full(image.shape[:2], 0.5, np.float32))
base.Matter.predict = predict
from mattecli.cli import app
app(sys.argv[2:], prog_name="mattecli")
"""


def test_ctrl_c_exits_130_keeps_finished_outputs_and_prints_no_traceback(tmp_path):
    for i in range(3):
        image, _, trimap = synthetic_scene(16, 20, seed=i)
        write_rgb(tmp_path / "images" / f"s{i}.png", image)
        write_gray(tmp_path / "trimaps" / f"s{i}.png", trimap)
    out, marker = tmp_path / "out", tmp_path / "working"
    args = ["matte", "-m", "cf", tmp_path / "images", out, "-t", tmp_path / "trimaps", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-c", _STALLS_ON_THE_SECOND_IMAGE, str(marker), *map(str, args)],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a shell: SIGINT at its default (a child inherits an ignored SIGINT, and something in a
        # long pytest session, not pinned down, left it ignored in CI, so Python never raised KeyboardInterrupt)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while not (marker.exists() and (out / "s0.png").exists()) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # where it hangs, then fail with it
            time.sleep(2)
            proc.kill()
            stdout, stderr = proc.communicate()
            pytest.fail(f"still running 120 s after SIGINT; stacks:\n{stderr[-6000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "interrupted: finished outputs are kept; run again to resume" in stderr.splitlines()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["s0.png"]  # the finished one, nothing half-written
    # a row is printed once its file is written (s0's may still be pending when the signal comes)
    assert [json.loads(line)["input"] for line in stdout.splitlines()] in ([], [str(tmp_path / "images" / "s0.png")])


# ----------------------------------------------------------------------------- --quiet and the summary table
def test_summary_table_counts_and_quiet_keeps_only_errors(runner, tmp_path):
    masks = _masks(tmp_path, 4)
    (masks / "m2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    out = tmp_path / "out"
    result = invoke(runner, ["trimap", masks, out, "--width", "2"])
    assert result.exit_code == 1  # one input failed, the others were done
    assert sorted(p.name for p in out.iterdir()) == ["m0.png", "m1.png", "m3.png"]
    error = f"error: {masks / 'm2.png'}: not a readable image (corrupt or unsupported format)"
    assert result.stderr.splitlines()[0] == error
    row = _table_row(result.stderr)
    assert (row["done"], row["skipped"], row["failed"]) == ("3", "0", "1")
    # s/image is seconds / done, each rounded for display (2 and 3 decimals): 0.005 / 3 + 0.0005 apart at most
    assert float(row["s/image"]) == pytest.approx(float(row["seconds"]) / 3, abs=0.005 / 3 + 0.0005 + 1e-9)
    # a re-run skips the three and retries the failed one; --quiet: the error line, nothing else
    quiet = invoke(runner, ["trimap", masks, out, "--width", "2", "--quiet"])
    assert quiet.exit_code == 1 and quiet.stderr.splitlines() == [error] and quiet.stdout == ""
    (masks / "m2.png").unlink()
    again = invoke(runner, ["trimap", masks, out, "--width", "2"])
    assert again.exit_code == 0
    row = _table_row(again.stderr)
    assert (row["done"], row["skipped"], row["failed"]) == ("0", "3", "0")
    assert again.stderr.splitlines()[-1] == "all outputs already exist; use --overwrite to redo them"
    assert invoke(runner, ["trimap", masks, out, "--width", "2", "-q"]).stderr == ""


# ----------------------------------------------------------------------------- --max-pixels / MATTECLI_MAX_PIXELS
def _mixed_sizes(root: Path) -> Path:
    folder = _masks(root, 2)  # 12 x 16 = 192 px
    write_gray(folder / "big.png", np.zeros((20, 20), np.uint8))  # 400 px
    return folder


def _check_big_refused(code: int, stdout: str, folder: Path, out: Path) -> None:
    assert code == 1
    rows = {Path(r["input"]).name: r for r in map(json.loads, stdout.splitlines())}
    assert {n: r["status"] for n, r in rows.items()} == {"big.png": "error", "m0.png": "ok", "m1.png": "ok"}
    assert rows["big.png"]["error"] == f"{folder / 'big.png'}: 20x20 = 400 pixels exceeds the limit of 300 pixels"
    assert sorted(p.name for p in out.iterdir()) == ["m0.png", "m1.png"]


def test_max_pixels_refuses_larger_images_and_keeps_going(runner, tmp_path):
    folder = _mixed_sizes(tmp_path)
    result = invoke(runner, ["trimap", folder, tmp_path / "out", "--width", "2", "--max-pixels", "300", "--json"])
    _check_big_refused(result.exit_code, result.stdout, folder, tmp_path / "out")
    assert "--max-pixels" in result.stderr  # the hint says how to raise it
    # the limit counts the image's pixels, read from its header: 400 px pass at 400
    ok = invoke(runner, ["trimap", folder / "big.png", tmp_path / "big.png", "--max-pixels", "400"])
    assert ok.exit_code == 0, ok.output


def test_mattecli_max_pixels_from_the_environment(tmp_path):
    folder = _mixed_sizes(tmp_path)
    proc = _mattecli(["trimap", folder, tmp_path / "out", "--width", "2", "--json"],
                     env={**ENV, "MATTECLI_MAX_PIXELS": "300"})  # fmt: skip
    _check_big_refused(proc.returncode, proc.stdout, folder, tmp_path / "out")
    # --max-pixels wins over the variable
    proc = _mattecli(["trimap", folder / "big.png", tmp_path / "big.png", "--max-pixels", "400"],
                     env={**ENV, "MATTECLI_MAX_PIXELS": "300"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_max_pixels_applies_to_matte_and_its_trimaps(runner, tmp_path):
    image, _, trimap = synthetic_scene(20, 20)
    img = write_rgb(tmp_path / "i.png", image)
    small_tri = write_gray(tmp_path / "t.png", trimap)
    result = invoke(runner, ["matte", "-m", "cf", img, tmp_path / "o.png", "-t", small_tri, "--max-pixels", "399"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"error: {img}: 20x20 = 400 pixels exceeds the limit of 399 pixels"
    assert not (tmp_path / "o.png").exists()
    # the trimap is read with the same limit
    big_tri = write_gray(tmp_path / "big_t.png", np.zeros((20, 20), np.uint8))
    small = write_rgb(tmp_path / "s.png", image[:10, :10])
    args = ["matte", "-m", "cf", small, tmp_path / "o.png", "-t", big_tri, "--max-pixels", "399"]
    result = invoke(runner, args)
    assert result.exit_code == 1 and "big_t.png: 20x20 = 400 pixels exceeds the limit" in result.stderr


# ----------------------------------------------------------------------------- --json of every command
def _json_rows(result) -> list[dict]:
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout is JSON lines, nothing else
    assert rows
    return rows


def _check_row(row: dict, method: str | None) -> None:
    assert README_KEYS <= set(row) and "hint" not in row, row
    assert row["status"] == "ok" and row["error"] is None and row["method"] == method
    assert isinstance(row["seconds"], float) and row["seconds"] >= 0 and Path(row["output"]).is_file()
    assert Path(row["input"]).is_file()


def test_json_keys_of_matte_trimap_and_composite(runner, tmp_path):
    image, alpha, trimap = synthetic_scene(16, 20)
    img, tri = write_rgb(tmp_path / "i.png", image), write_gray(tmp_path / "t.png", trimap)
    a = write_gray(tmp_path / "a.png", alpha)
    (row,) = _json_rows(invoke(runner, ["matte", "-m", "cf", img, tmp_path / "m.png", "-t", tri, "--json"]))
    _check_row(row, "cf")
    assert set(row) == MATTE_KEYS and row["strategy"] == "whole" and row["fallback"] is None
    (row,) = _json_rows(invoke(runner, ["trimap", a, tmp_path / "t2.png", "--width", "2", "--json"]))
    _check_row(row, "trimap")
    assert 0 < row["unknown_fraction"] < 1
    args = ["composite", img, a, tmp_path / "c.png", "--no-estimate-foreground", "--json"]
    (row,) = _json_rows(invoke(runner, args))
    _check_row(row, "composite")


def test_json_keys_of_bench_and_the_listing_commands(runner, tmp_path):
    for i in range(2):
        image, alpha, trimap = synthetic_scene(16, 20, seed=i)
        write_rgb(tmp_path / "data" / "images" / f"s{i}.png", image)
        write_gray(tmp_path / "data" / "alpha" / f"s{i}.png", alpha)
        write_gray(tmp_path / "data" / "trimaps" / f"s{i}.png", trimap)
        write_gray(tmp_path / "preds" / f"s{i}.png", np.clip(alpha * 0.9, 0, 1))
    args = ["bench", "--dataset", "folder", "--root", tmp_path / "data", "--predictions", tmp_path / "preds"]
    (report,) = _json_rows(invoke(runner, [*args, "--json", "-q"]))
    assert {"summary", "rows", "speed", "failures", "published", "settings_key", "method"} <= set(report)
    assert report["summary"]["count"] == 2 and {"sad", "mse", "grad", "conn"} <= set(report["summary"]["metrics"])
    assert [r["name"] for r in report["rows"]] == ["s0", "s1"]
    datasets = _json_rows(invoke(runner, ["bench", "datasets", "--json"]))
    assert {"comp1k", "aim500"} <= {d["name"] for d in datasets} and all("licence" in d or "license" in d
                                                                            for d in datasets)  # fmt: skip
    variants = _json_rows(invoke(runner, ["weights", "list", "--json"]))
    assert {"aim", "sim-comp1k", "shm-mindspore", "msia"} <= {v["variant"] for v in variants}
    assert all({"variant", "method", "state", "path"} <= set(v) for v in variants)


def test_json_keys_of_trimap_from_image(runner, tmp_path, fakes):
    img = write_rgb(tmp_path / "i.png", synthetic_scene(64, 80)[0])
    args = ["trimap", "--from-image", "--method", "aim", img, tmp_path / "t.png", "--device", "cpu", "--json"]
    (row,) = _json_rows(invoke(runner, args))
    _check_row(row, "aim")
    assert set(np.unique(io.read_trimap(tmp_path / "t.png"))) <= {0, 128, 255}


# ----------------------------------------------------------------------------- exit 1 for trimap
def test_trimap_exits_1_when_an_input_fails_and_does_the_rest(runner, tmp_path):
    masks = _masks(tmp_path, 3)
    (masks / "m1.png").write_bytes(b"not an image")
    result = invoke(runner, ["trimap", masks, tmp_path / "out", "--width", "2", "--json"])
    assert result.exit_code == 1
    status = {Path(r["input"]).name: r["status"] for r in map(json.loads, result.stdout.splitlines())}
    assert status == {"m0.png": "ok", "m1.png": "error", "m2.png": "ok"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m0.png", "m2.png"]


# ----------------------------------------------------------------------------- EXIF orientation
def _jpeg_rotated_for_display(path: Path, display: np.ndarray) -> None:
    """A JPEG whose stored pixels are ``display`` turned 90 degrees counter-clockwise, with EXIF
    orientation 6 ("rotate 90 CW to display"): viewers show ``display``."""
    from PIL import Image

    stored = np.ascontiguousarray(np.rot90(np.round(display * 255).astype(np.uint8), k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, quality=100, subsampling=0, exif=exif.tobytes())


def test_exif_orientation_6_gives_outputs_in_display_orientation(runner, tmp_path):
    from PIL import Image, ImageOps

    from mattecli import methods
    from mattecli.methods.base import MethodOptions

    image, alpha, trimap = synthetic_scene(40, 56)  # portrait display: 40 rows, 56 columns, ramp along x
    photo = tmp_path / "photo.jpg"
    _jpeg_rotated_for_display(photo, image)
    assert Image.open(photo).size == (40, 56)  # stored 56 rows x 40 columns
    shown = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"), np.float32) / 255
    assert shown.shape == (40, 56, 3) and np.abs(shown - image).max() < 0.03  # what a viewer shows
    tri = write_gray(tmp_path / "photo_trimap.png", trimap)  # drawn on the image as displayed
    out = tmp_path / "alpha.png"
    result = invoke(runner, ["matte", "-m", "cf", photo, out, "-t", tri, "--bit-depth", "16"])
    assert result.exit_code == 0, result.output  # a stored-orientation read would refuse the trimap's size
    got = io.read_gray(out)
    assert got.shape == (40, 56)
    assert np.abs(got - alpha)[trimap == 128].mean() < 0.03  # the ramp runs along the displayed x axis
    want = methods.get("cf").create(MethodOptions()).predict(io.read_image(photo), io.read_trimap(tri)).alpha
    assert_equals_at_16_bits(out, want)
    # trimaps from a rotated mask come out in display orientation too
    mask = np.zeros((40, 56), np.float32)
    mask[10:30, 5:25] = 1
    mask_jpg = tmp_path / "mask.jpg"
    _jpeg_rotated_for_display(mask_jpg, np.repeat(mask[:, :, None], 3, 2))
    result = invoke(runner, ["trimap", mask_jpg, tmp_path / "mask_tri.png", "--width", "2"])
    assert result.exit_code == 0, result.output
    made = io.read_trimap(tmp_path / "mask_tri.png")
    assert made.shape == (40, 56) and (made[15:25, 8:22] == 255).all() and (made[:, 35:] == 0).all()
