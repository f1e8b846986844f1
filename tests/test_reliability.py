"""Issue 17, through the CLI: no input is ever overwritten, no leftovers after a kill, tiny images,
bounded work and clean one-line errors (exit code, the file named, no traceback, nothing left behind)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import BLOCKING_WRITER, REPO, invoke, synthetic_scene, write_gray, write_rgb

from mattecli import io

ENV = {k: v for k, v in os.environ.items() if not k.startswith("MATTECLI_")}


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output and "Traceback" not in result.stderr


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def _snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.part"))


@pytest.fixture
def scene(tmp_path):
    """images/img0{0,1}.png, trimaps/img0{0,1}.png, alphas/img0{0,1}.png, bg.png."""
    for i in range(2):
        image, alpha, trimap = synthetic_scene(20, 28, seed=i)
        write_rgb(tmp_path / "images" / f"img{i:02d}.png", image)
        write_gray(tmp_path / "trimaps" / f"img{i:02d}.png", trimap)
        write_gray(tmp_path / "alphas" / f"img{i:02d}.png", alpha)
    write_rgb(tmp_path / "bg.png", np.full((20, 28, 3), 0.3, np.float32))
    return tmp_path


# ----------------------------------------------------------------------------- 1. inputs are never overwritten
def _overwrite_cases(root: Path) -> dict[str, tuple[list, Path]]:
    """case -> (arguments, the input that would be overwritten)."""
    img, tri, alpha = root / "images" / "img00.png", root / "trimaps" / "img00.png", root / "alphas" / "img00.png"
    link = root / "hardlink.png"
    if not link.exists():
        os.link(tri, link)
    symlinked = root / "linked_out"
    if not symlinked.exists():
        symlinked.symlink_to(root / "images", target_is_directory=True)
    return {
        "matte output is the trimap": (["matte", "-m", "cf", img, tri, "--trimap", tri], tri),
        "matte output is the image": (["matte", "-m", "cf", img, img, "--trimap", tri], img),
        "matte OUT is the trimap folder": (
            ["matte", "-m", "cf", root / "images", root / "trimaps", "-t", root / "trimaps"],
            tri,
        ),
        "matte output hard-links the trimap": (["matte", "-m", "cf", img, link, "--trimap", tri], tri),
        "matte OUT is a symlink to the image folder": (
            ["matte", "-m", "cf", root / "images", symlinked, "-t", root / "trimaps"],
            img,
        ),
        "composite output is the alpha": (["composite", img, alpha, alpha], alpha),
        "composite output is the image": (["composite", img, alpha, img], img),
        "composite output is the background image": (
            ["composite", img, alpha, root / "bg.png", "-b", root / "bg.png"],
            root / "bg.png",
        ),
        "composite OUT is the alpha folder": (["composite", root / "images", root / "alphas", root / "alphas"], alpha),
        "trimap output is its alpha": (["trimap", alpha, alpha], alpha),
        "trimap OUT is the input folder": (["trimap", root / "alphas", root / "alphas"], alpha),
    }


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(
    "case",
    [
        "matte output is the trimap",
        "matte output is the image",
        "matte OUT is the trimap folder",
        "matte output hard-links the trimap",
        "matte OUT is a symlink to the image folder",
        "composite output is the alpha",
        "composite output is the image",
        "composite output is the background image",
        "composite OUT is the alpha folder",
        "trimap output is its alpha",
        "trimap OUT is the input folder",
    ],
)
def test_an_output_that_is_an_input_is_a_usage_error(runner, scene, case, overwrite):
    args, victim = _overwrite_cases(scene)[case]
    before = _snapshot(scene)
    result = invoke(runner, args + (["--overwrite"] if overwrite else []))
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.stderr)
    assert "would overwrite the" in line and victim.name in line, line
    _no_traceback(result)
    assert _snapshot(scene) == before  # nothing overwritten, nothing written
    assert not _parts(scene)


def test_semantic_trimap_output_that_is_its_trimap_is_refused_before_the_classifier(runner, scene):
    tri = scene / "trimaps" / "img00.png"
    before = _snapshot(scene)
    result = invoke(
        runner, ["semantic-trimap", scene / "images" / "img00.png", tri, "--trimap", tri, "--no-scores", "--overwrite"]
    )
    assert result.exit_code == 2, result.output
    assert "would overwrite the trimap" in result.stderr and "img00.png" in result.stderr
    _no_traceback(result)
    assert _snapshot(scene) == before


def test_outputs_beside_the_inputs_are_still_fine(runner, scene):
    """Writing into the trimap folder is allowed when no output is a trimap."""
    out = scene / "trimaps" / "img00_alpha.png"
    result = invoke(
        runner, ["matte", "-m", "cf", scene / "images" / "img00.png", out, "-t", scene / "trimaps" / "img00.png"]
    )
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_check_inputs_kept_matches_companions_by_stem_and_identity(tmp_path):
    from mattecli.errors import BadOptionError
    from mattecli.pipelines import runner

    items = [io.InputItem(tmp_path / "in" / "a.jpg", Path("a.jpg"))]
    write_rgb(items[0].path, np.zeros((2, 2, 3), np.float32))
    write_gray(tmp_path / "tri" / "a.png", np.zeros((2, 2), np.uint8))
    write_gray(tmp_path / "tri" / "a.old.png", np.zeros((2, 2), np.uint8))
    # an output named like a trimap that is not the image's trimap: fine
    runner.check_inputs_kept(
        [runner.Job(items[0], {"main": tmp_path / "tri" / "a.old.png"})], {"trimap": tmp_path / "tri"}
    )
    with pytest.raises(BadOptionError, match="would overwrite the trimap"):
        runner.check_inputs_kept(
            [runner.Job(items[0], {"main": tmp_path / "tri" / "a.png"})], {"trimap": tmp_path / "tri"}
        )
    # a missing companion is that file's error later, not a planning error
    (tmp_path / "empty").mkdir()
    runner.check_inputs_kept([runner.Job(items[0], {"main": tmp_path / "out.png"})], {"trimap": tmp_path / "empty"})


# ----------------------------------------------------------------------------- 2. no leftovers after kill -9


def test_kill_9_during_a_write_leaves_a_part_file_that_the_next_run_removes(runner, tmp_path):
    mask = np.zeros((30, 40), np.uint8)
    mask[8:22, 10:30] = 255
    src = write_gray(tmp_path / "masks" / "m.png", mask)
    out = tmp_path / "out"
    fifo = tmp_path / "block.fifo"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_WRITER, str(fifo), "trimap", str(src), str(out), "--width", "4"],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out.is_dir() and _parts(out)) and time.monotonic() < deadline:
            assert proc.poll() is None, "the writer exited before blocking"
            time.sleep(0.05)
        (part,) = _parts(out)
        assert part.name.startswith(".m.png.") and f".{proc.pid}." in part.name
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _parts(out) == [part] and not (out / "m.png").exists()  # what the kill leaves
    # a live writer's file, an unknown old-style name and another tool's file are left alone
    live = out / f".x.png.{os.getpid()}.abcdefgh.part"
    foreign_old = out / ".other.png.abcdefgh.part"
    unrelated = out / "notes.part"
    for path in (live, foreign_old, unrelated):
        path.write_bytes(b"x")
    result = invoke(runner, ["trimap", src, out, "--width", "4", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "ok"
    assert not part.exists() and _parts(out) == sorted([live, foreign_old, unrelated])
    expected = cv2.imread(str(out / "m.png"), cv2.IMREAD_UNCHANGED)
    assert expected.shape == (30, 40) and set(np.unique(expected)) == {0, 128, 255}


def test_stale_part_files_need_a_dead_owner_and_no_lock(tmp_path):
    import fcntl

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.png.{dead.pid}.abc12345.part"
    locked = tmp_path / f".b.png.{dead.pid}.abc12345.part"  # e.g. a writer on another host sharing the folder
    old_style = tmp_path / ".a.png.zz_00000.part"
    for path in (stale, locked, old_style):
        path.write_bytes(b"partial")
    holder = open(locked, "rb")
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
    try:
        removed = io.remove_stale_parts(tmp_path, {"a.png"})
    finally:
        holder.close()
    assert sorted(removed) == sorted([stale, old_style])
    assert locked.exists() and not stale.exists() and not old_style.exists()


def test_written_temp_files_carry_the_pid_and_are_locked_while_written(tmp_path, monkeypatch):
    import fcntl

    seen = {}
    real_fsync = os.fsync

    def spy(fd):
        (name,) = [p.name for p in tmp_path.iterdir()]
        seen["name"] = name
        probe = os.open(tmp_path / name, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    io.atomic_write_bytes(tmp_path / "x.png", b"data")
    assert seen["name"].startswith(f".x.png.{os.getpid()}.") and seen["name"].endswith(".part")
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


# ----------------------------------------------------------------------------- 3. tiny images, degenerate trimaps
@pytest.mark.parametrize("method", ["cf", "knn"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 12), (12, 2)])
def test_tiny_images_get_mattes_not_solver_failures(runner, tmp_path, method, shape):
    h, w = shape
    image = np.random.default_rng(h * 31 + w).random((h, w, 3)).astype(np.float32)
    trimap = np.full(shape, 128, np.uint8)
    trimap.flat[0], trimap.flat[-1] = 0, 255
    if h * w == 1:
        trimap[:] = 255
    img, tri = write_rgb(tmp_path / "i.png", image), write_gray(tmp_path / "t.png", trimap)
    result = invoke(runner, ["matte", "-m", method, img, tmp_path / "a.png", "-t", tri, "--cutout"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no solver message, no numpy warning
    alpha = io.read_gray(tmp_path / "a.png")
    assert alpha.shape == shape
    assert alpha.flat[0] == 0.0 or h * w == 1
    assert alpha.flat[-1] == 1.0
    assert io.read_image(tmp_path / "a_cutout.png").shape == (h, w, 3)


@pytest.mark.parametrize("known,expected", [(0, 0.0), (255, 1.0)])
def test_trimap_with_one_kind_of_known_pixel_gives_that_value(runner, tmp_path, known, expected):
    trimap = np.full((10, 12), known, np.uint8)
    trimap[3:7, 4:8] = 128
    img = write_rgb(tmp_path / "i.png", np.random.default_rng(0).random((10, 12, 3)).astype(np.float32))
    tri = write_gray(tmp_path / "t.png", trimap)
    result = invoke(runner, ["matte", "-m", "cf", img, tmp_path / "a.png", "-t", tri])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(io.read_gray(tmp_path / "a.png"), np.full((10, 12), expected, np.float32))


def test_all_unknown_trimap_is_one_line_naming_the_file(runner, tmp_path):
    img = write_rgb(tmp_path / "i.png", np.zeros((6, 6, 3), np.float32))
    tri = write_gray(tmp_path / "t.png", np.full((6, 6), 128, np.uint8))
    result = invoke(runner, ["matte", "-m", "cf", img, tmp_path / "a.png", "-t", tri])
    assert result.exit_code == 1
    (line,) = _error_lines(result.stderr)
    assert "i.png" in line and "no known pixel" in line
    _no_traceback(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.png", "t.png"]


# ----------------------------------------------------------------------------- 5. nothing but our line on stderr
def _broken_files(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    pixels = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    files = {}
    for ext in (".png", ".jpg", ".tif", ".webp"):
        ok, buf = cv2.imencode(ext, pixels)
        data = buf.tobytes()
        files[f"truncated {ext}"] = root / f"truncated{ext}"
        files[f"truncated {ext}"].write_bytes(data[: len(data) // 2])
    ok, buf = cv2.imencode(".png", pixels)
    crc = bytearray(buf.tobytes())
    crc[200:260] = b"x" * 60  # inside IDAT: libpng prints "libpng error: IDAT: CRC error"
    files["bad CRC .png"] = root / "crc.png"
    files["bad CRC .png"].write_bytes(bytes(crc))
    return files


def test_broken_files_give_exactly_one_line_on_stderr(tmp_path):
    """A real process: libpng and OpenCV print from C straight to fd 2, which CliRunner would not see."""
    files = _broken_files(tmp_path)
    for case, path in files.items():
        proc = subprocess.run(
            [sys.executable, "-m", "mattecli", "trimap", str(path), str(tmp_path / "out" / f"{path.stem}.png")],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=ENV,
            timeout=120,
        )
        assert proc.returncode == 1, (case, proc.stderr)
        assert proc.stderr == f"error: {path}: not a readable image (corrupt or unsupported format)\n", case
        assert proc.stdout == ""
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_codec_chatter_is_shown_with_mattecli_debug(tmp_path):
    path = _broken_files(tmp_path)["bad CRC .png"]
    proc = subprocess.run(
        [sys.executable, "-c", f"from mattecli import io\ntry: io.read_image({str(path)!r})\nexcept Exception: pass"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**ENV, "MATTECLI_DEBUG": "1"},
        timeout=120,
    )
    assert "libpng" in proc.stderr


def test_what_other_threads_print_during_a_decode_is_kept(tmp_path):
    """fd 2 is held back only for codec noise: a line our own code prints meanwhile still comes out."""
    path = _broken_files(tmp_path)["bad CRC .png"]
    code = (
        "import os\nfrom mattecli import io\nfrom mattecli.io.decode import codec_chatter_held_back\n"
        "with codec_chatter_held_back():\n"
        "    os.write(2, b'error: ours\\n')\n"
        f"    try: io.read_image({str(path)!r})\n    except Exception: pass\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)
    assert proc.stderr == "error: ours\n"


# ----------------------------------------------------------------------------- 6. bad values are usage errors
@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", ["matte", "trimap", "composite", "semantic-trimap"])
def test_bad_max_pixels_is_a_usage_error(runner, scene, command, value):
    img, tri, alpha = scene / "images" / "img00.png", scene / "trimaps" / "img00.png", scene / "alphas" / "img00.png"
    out = scene / "out.png"
    args = {
        "matte": ["matte", "-m", "cf", img, out, "-t", tri],
        "trimap": ["trimap", alpha, out],
        "composite": ["composite", img, alpha, out],
        "semantic-trimap": ["semantic-trimap", img, out, "-t", tri],
    }[command]
    result = invoke(runner, args + ["--max-pixels", value])
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.stderr)
    assert "--max-pixels" in line and value in line
    _no_traceback(result)
    assert not out.exists()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "2e9", "1.5"])
def test_bad_mattecli_max_pixels_is_a_usage_error(runner, scene, monkeypatch, value):
    from mattecli import constants

    monkeypatch.setattr(constants, "MATTECLI_MAX_PIXELS_TEXT", value)
    result = invoke(runner, ["trimap", scene / "alphas" / "img00.png", scene / "out.png"])
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.stderr)
    assert "MATTECLI_MAX_PIXELS" in line
    _no_traceback(result)


def test_max_pixels_above_opencvs_cap_is_refused_and_below_it_works(runner, scene, monkeypatch):
    from mattecli import constants

    result = invoke(runner, ["trimap", scene / "alphas" / "img00.png", scene / "o.png", "--max-pixels", str(2**31)])
    assert (
        result.exit_code == 2
        and "OpenCV's decode cap" in result.stderr
        and "OPENCV_IO_MAX_IMAGE_PIXELS" in result.stderr
    )
    monkeypatch.setattr(constants, "MATTECLI_MAX_PIXELS_TEXT", "2e8")
    assert invoke(runner, ["trimap", scene / "alphas" / "img00.png", scene / "o.png"]).exit_code == 0


@pytest.mark.parametrize("spec", ["blur:nan", "blur:inf", "blur:-inf", "blur:1e9", "blur:0", "blur:"])
def test_bad_blur_strength_is_a_usage_error(runner, scene, spec):
    out = scene / "c.png"
    result = invoke(
        runner, ["composite", scene / "images" / "img00.png", scene / "alphas" / "img00.png", out, "-b", spec]
    )
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.stderr)
    assert "blur" in line and "internal error" not in line
    _no_traceback(result)
    assert not out.exists()


def test_strong_blur_is_quick_and_close_to_the_exact_one():
    from mattecli.composite import gaussian_blur

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.random((300, 420, 3)).astype(np.float32), (0, 0), 2)
    image[100:200, 100:250] = 1.0
    for sigma in (17.0, 40.0, 90.0):
        exact = cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        assert np.abs(gaussian_blur(image, sigma) - exact).max() < 2e-3  # under one 8-bit step
    np.testing.assert_array_equal(
        gaussian_blur(image, 3.0), cv2.GaussianBlur(image, (0, 0), 3.0, borderType=cv2.BORDER_REFLECT)
    )
    big = rng.random((1000, 1500, 3)).astype(np.float32)
    start = time.perf_counter()
    gaussian_blur(big, 5000.0)
    assert time.perf_counter() - start < 5  # the exact blur would take minutes
    assert gaussian_blur(np.ones((1, 1, 3), np.float32), 5000.0).shape == (1, 1, 3)


# ----------------------------------------------------------------------------- 7. inputs that never end
@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_non_regular_inputs_are_refused_unread(runner, tmp_path, kind):
    path = Path("/dev/zero") if kind == "device" else tmp_path / "pipe.png"
    if kind == "fifo":
        os.mkfifo(path)  # nobody ever writes: reading it would block forever
    start = time.perf_counter()
    result = invoke(runner, ["trimap", path, tmp_path / "out.png"])
    assert time.perf_counter() - start < 30
    assert result.exit_code == 1, result.output
    (line,) = _error_lines(result.stderr)
    assert str(path) in line and ("a device" in line if kind == "device" else "a pipe" in line)
    _no_traceback(result)
    assert not (tmp_path / "out.png").exists()


def test_a_file_larger_than_the_pixel_limit_explains_is_refused_unread(runner, tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as fh:  # sparse: no disk used, but 100 MB to read
        fh.truncate(100 << 20)
    read = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: read.append(p) or real_open(p, *a, **k))
    result = invoke(runner, ["trimap", path, tmp_path / "out.png", "--max-pixels", "1000"])
    assert result.exit_code == 1, result.output
    (line,) = _error_lines(result.stderr)
    assert "huge.png" in line and "more than an image of at most" in line
    assert str(path) not in map(str, read)
    assert io.max_file_bytes(1000) == 1000 * 32 + (64 << 20)


# ----------------------------------------------------------------------------- more hostile cases
def test_an_output_path_that_is_a_folder_is_an_error_not_a_skip(runner, tmp_path):
    mask = write_gray(tmp_path / "masks" / "m.png", np.full((6, 6), 255, np.uint8))
    (tmp_path / "out" / "m.png").mkdir(parents=True)
    result = invoke(runner, ["trimap", mask, tmp_path / "out", "--json"])
    assert result.exit_code == 1, result.output
    row = json.loads(result.stdout)
    assert row["status"] == "error" and "is a folder" in row["error"]
    _no_traceback(result)


def test_trimap_matched_by_exact_stem_only(runner, tmp_path):
    """`a.old.png` in the trimap folder sorts before `a.png` and used to be taken as a.jpg's trimap."""
    image, _, trimap = synthetic_scene(12, 16)
    write_rgb(tmp_path / "images" / "a.png", image)
    write_gray(tmp_path / "trimaps" / "a.png", trimap)
    write_gray(tmp_path / "trimaps" / "a.old.png", np.full((3, 3), 128, np.uint8))  # wrong size: would fail
    result = invoke(runner, ["matte", "-m", "cf", tmp_path / "images", tmp_path / "out", "-t", tmp_path / "trimaps"])
    assert result.exit_code == 0, result.output


def test_stdin_lists_with_blank_lines_and_names_with_spaces(runner, tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2:6] = 255
    spaced = write_gray(tmp_path / " lead and trail .png", mask)
    plain = write_gray(tmp_path / "plain.png", mask)
    listing = f"\n   \n{spaced}\n\t{plain}  \r\n\n"
    result = invoke(runner, ["trimap", "-", tmp_path / "out", "--json"], input=listing)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [" lead and trail .png", "plain.png"]


def test_float_tiff_trimap_with_nan_and_16_bit_trimaps(tmp_path):
    values = np.zeros((4, 6), np.float32)
    values[:, 2:4] = 0.5
    values[:, 4:] = 1.0
    values[0, 0] = np.nan
    assert cv2.imwrite(str(tmp_path / "f.tif"), values)
    assert cv2.imwrite(str(tmp_path / "s.png"), np.round(np.nan_to_num(values) * 65535).astype(np.uint16))
    expected = np.array([[0, 0, 128, 128, 255, 255]] * 4, np.uint8)
    np.testing.assert_array_equal(io.read_trimap(tmp_path / "f.tif"), expected)  # NaN reads as 0
    np.testing.assert_array_equal(io.read_trimap(tmp_path / "s.png"), expected)


def test_single_failed_file_prints_no_summary_table(runner, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n")
    result = invoke(runner, ["trimap", bad, tmp_path / "o.png"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {bad}: not a readable image (corrupt or unsupported format)"]


def test_an_output_name_near_the_file_name_limit_is_written(runner, tmp_path):
    """The temporary name adds ~25 bytes: it is shortened instead of failing with 'File name too long'."""
    mask = write_gray(tmp_path / "m.png", np.full((6, 6), 255, np.uint8))
    out = tmp_path / ("é" * 100 + "a" * 46 + ".png")  # 250 bytes in UTF-8
    assert len(out.name.encode()) == 250
    result = invoke(runner, ["trimap", mask, out])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.png", out.name])


@pytest.mark.parametrize("command", ["trimap", "composite"])
def test_an_output_folder_that_cannot_be_made_is_a_usage_error(runner, scene, command):
    blocker = scene / "blocker"
    blocker.write_text("a file")
    img, alpha = scene / "images" / "img00.png", scene / "alphas" / "img00.png"
    args = ["trimap", alpha] if command == "trimap" else ["composite", img, alpha]
    result = invoke(runner, args + [blocker / "sub" / "o.png"])
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.stderr)
    assert "cannot create output folder" in line and "blocker" in line


def test_an_unreadable_background_image_is_a_usage_error_before_any_work(runner, scene):
    bad = scene / "bad_bg.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    out = scene / "out"
    result = invoke(runner, ["composite", scene / "images", scene / "alphas", out, "-b", bad])
    assert result.exit_code == 2, result.output
    (line,) = _error_lines(result.stderr)
    assert line.startswith("error: --background") and "bad_bg.png" in line and "not a readable image" in line
    assert not out.exists() or not any(out.iterdir())


def test_an_image_too_wide_for_its_format_is_a_clear_error(tmp_path):
    from mattecli.errors import OutputError

    with pytest.raises(OutputError, match="at most 16383 px a side"):
        io.write_image(tmp_path / "wide.webp", np.zeros((2, 17000, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_dash_as_out_is_a_usage_error_not_a_folder_named_dash(runner, tmp_path, monkeypatch):
    mask = write_gray(tmp_path / "m.png", np.full((6, 6), 255, np.uint8))
    monkeypatch.chdir(tmp_path)
    result = invoke(runner, ["trimap", mask, "-"])
    assert result.exit_code == 2, result.output
    assert "never stdout" in result.stderr
    assert not (tmp_path / "-").exists()
