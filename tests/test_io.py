"""Image I/O: every reader format / bit depth / orientation, atomic writes, input discovery."""

from __future__ import annotations

import io as pyio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO
from helpers import give_to_nobody, unprivileged_dir
from PIL import Image

from mattecli import io
from mattecli.errors import ImageReadError, ImageTooLargeError, NoInputsError, OutputError, TrimapError
from mattecli.io import files

RNG = np.random.default_rng(1)
RGB8 = RNG.integers(0, 256, (13, 17, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (13, 17, 3), dtype=np.uint16)


def _cv_write(path: Path, rgb_or_gray: np.ndarray) -> Path:
    arr = rgb_or_gray
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
    assert cv2.imwrite(str(path), arr)
    return path


@pytest.mark.parametrize("ext", [".png", ".tif", ".bmp", ".webp"])
def test_lossless_8bit_rgb_roundtrip(tmp_path, ext):
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    path = tmp_path / f"x{ext}"
    assert cv2.imwrite(str(path), RGB8[:, :, ::-1], params)
    img = io.read_image(path)
    assert img.dtype == np.float32 and img.shape == (13, 17, 3)
    np.testing.assert_array_equal(np.round(img * 255).astype(np.uint8), RGB8)


def test_jpeg_reads_close(tmp_path):
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (24, 1, 3))
    path = _cv_write(tmp_path / "x.jpg", smooth)
    img = io.read_image(path)
    assert img.shape == (24, 32, 3)
    assert np.abs(img * 255 - smooth).max() < 8


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16bit_rgb_keeps_precision(tmp_path, ext):
    path = _cv_write(tmp_path / f"x{ext}", RGB16)
    img = io.read_image(path)
    np.testing.assert_allclose(img, RGB16.astype(np.float32) / 65535, atol=1e-6)


def test_16bit_gray_and_8bit_gray(tmp_path):
    g16 = RNG.integers(0, 65536, (9, 11), dtype=np.uint16)
    g8 = RNG.integers(0, 256, (9, 11), dtype=np.uint8)
    np.testing.assert_allclose(io.read_gray(_cv_write(tmp_path / "a.png", g16)), g16 / 65535, atol=1e-6)
    np.testing.assert_allclose(io.read_gray(_cv_write(tmp_path / "b.png", g8)), g8 / 255, atol=1e-6)
    rgb = io.read_image(tmp_path / "b.png")  # gray image read as RGB replicates the channel
    assert rgb.shape == (9, 11, 3)
    np.testing.assert_array_equal(rgb[:, :, 0], rgb[:, :, 2])


def test_rgba_image_drops_alpha_and_gray_uses_it(tmp_path):
    rgba = np.dstack([RGB8, np.full((13, 17), 200, np.uint8)])
    path = _cv_write(tmp_path / "x.png", rgba)
    img = io.read_image(path)
    np.testing.assert_array_equal(np.round(img * 255).astype(np.uint8), RGB8)
    # a cutout used as a mask: its (non-opaque) alpha channel is the map
    np.testing.assert_allclose(io.read_gray(path), 200 / 255, atol=1e-6)
    # an opaque RGBA map (like pymatting's trimaps) gives its red channel
    opaque = np.dstack([RGB8, np.full((13, 17), 255, np.uint8)])
    np.testing.assert_allclose(io.read_gray(_cv_write(tmp_path / "o.png", opaque)), RGB8[:, :, 0] / 255, atol=1e-6)


def _jpeg_with_orientation(path: Path, pixels: np.ndarray, orientation: int) -> None:
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, quality=100, subsampling=0, exif=exif.tobytes())


@pytest.mark.parametrize(
    "orientation,expect",
    [
        (1, lambda a: a),
        (2, lambda a: a[:, ::-1]),
        (3, lambda a: a[::-1, ::-1]),
        (4, lambda a: a[::-1, :]),
        (5, lambda a: np.swapaxes(a, 0, 1)),
        (6, lambda a: np.rot90(a, -1)),  # camera rotated: display turns it 90 deg clockwise
        (7, lambda a: np.swapaxes(a[::-1, ::-1], 0, 1)),
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def test_exif_orientation_matches_pillow(tmp_path, orientation, expect):
    # big flat blocks survive JPEG exactly enough to compare orientation
    pixels = np.zeros((32, 48, 3), np.uint8)
    pixels[:16, :24] = (255, 0, 0)
    pixels[:16, 24:] = (0, 255, 0)
    pixels[16:, :24] = (0, 0, 255)
    pixels[16:, 24:] = (255, 255, 0)
    path = tmp_path / f"o{orientation}.jpg"
    _jpeg_with_orientation(path, pixels, orientation)
    ours = np.round(io.read_image(path) * 255).astype(int)
    from PIL import ImageOps

    reference = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    assert ours.shape == reference.shape
    assert np.abs(ours - reference).max() <= 2
    assert np.abs(ours - expect(pixels).astype(int)).mean() < 6


def test_non_ascii_path(tmp_path):
    path = _cv_write(tmp_path / "фото_写真 é.png", RGB8)
    assert io.read_image(path).shape == (13, 17, 3)
    io.write_alpha(tmp_path / "выход" / "α.png", np.full((4, 5), 0.5, np.float32))
    assert (tmp_path / "выход" / "α.png").exists()


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (400, 300)).save(path)
    calls = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: calls.append(1) or real(*a))
    with pytest.raises(ImageTooLargeError, match="exceeds the limit"):
        io.read_image(path, max_pixels=100_000)
    assert calls == []  # refused from the header alone
    assert io.read_image(path, max_pixels=120_000).shape == (300, 400, 3)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"not an image at all", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a readable"),
    ],
)
def test_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message):
        io.read_image(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        io.read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        io.read_image(tmp_path)


def test_truncated_png(tmp_path):
    good = _cv_write(tmp_path / "g.png", RGB8).read_bytes()
    path = tmp_path / "t.png"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError):
        io.read_image(path)


# ----------------------------------------------------------------------------- trimaps
def test_read_trimap_normalises_any_gray_to_unknown(tmp_path):
    raw = np.array([[0, 1, 102, 128], [200, 254, 255, 0]], np.uint8)
    path = _cv_write(tmp_path / "t.png", raw)
    np.testing.assert_array_equal(io.read_trimap(path), [[0, 128, 128, 128], [128, 128, 255, 0]])


def test_read_trimap_size_mismatch(tmp_path):
    path = _cv_write(tmp_path / "t.png", np.zeros((5, 6), np.uint8))
    with pytest.raises(TrimapError, match="6x5 but the image is 7x5"):
        io.read_trimap(path, shape=(5, 7))


# ----------------------------------------------------------------------------- writing
@pytest.mark.parametrize("bits,dtype,top", [(8, np.uint8, 255), (16, np.uint16, 65535)])
def test_write_alpha_bit_depth_roundtrip(tmp_path, bits, dtype, top):
    alpha = np.linspace(0, 1, 7 * 9, dtype=np.float32).reshape(7, 9)
    io.write_alpha(tmp_path / "a.png", alpha, bit_depth=bits)
    raw = cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == dtype and raw.shape == (7, 9)
    np.testing.assert_array_equal(raw, np.round(alpha * top).astype(dtype))
    np.testing.assert_allclose(io.read_gray(tmp_path / "a.png"), alpha, atol=0.5 / top + 1e-7)


def test_write_rgba_roundtrip(tmp_path):
    rgb = RGB8.astype(np.float32) / 255
    alpha = RNG.random((13, 17)).astype(np.float32)
    io.write_rgba(tmp_path / "c.png", rgb, alpha)
    raw = cv2.imread(str(tmp_path / "c.png"), cv2.IMREAD_UNCHANGED)
    assert raw.shape == (13, 17, 4)
    np.testing.assert_array_equal(raw[:, :, [2, 1, 0]], RGB8)
    np.testing.assert_array_equal(raw[:, :, 3], np.round(alpha * 255).astype(np.uint8))


def test_written_files_get_normal_permissions(tmp_path):
    io.write_alpha(tmp_path / "a.png", np.zeros((2, 2), np.float32))
    mode = os.stat(tmp_path / "a.png").st_mode & 0o777
    assert mode == 0o666 & ~files._current_umask()


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.png"

    class Boom(Exception):
        pass

    real_fsync = os.fsync

    def failing_fsync(fd):
        raise Boom("killed mid-write")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(Boom):
        io.write_alpha(target, np.ones((8, 8), np.float32))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert list(tmp_path.iterdir()) == []  # no target, no temp file


def test_failed_write_keeps_old_content(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    io.write_alpha(target, np.zeros((4, 4), np.float32))
    before = target.read_bytes()

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        io.write_alpha(target, np.ones((4, 4), np.float32))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


_WRITE_INTO = """
import sys
import numpy as np
from mattecli import io
from mattecli.errors import OutputError
try:
    io.write_alpha(sys.argv[1], np.zeros((2, 2), np.float32))
except OutputError as err:
    print(err.message)
    sys.exit(3)
"""


def test_read_only_folder_is_output_error(tmp_path):
    """A real read-only folder (as ``nobody`` in a subprocess when root: root ignores permission bits)."""
    folder, as_user = unprivileged_dir(tmp_path)
    ro = folder / "ro"
    ro.mkdir()
    give_to_nobody(ro)
    ro.chmod(0o500)
    try:
        if as_user:
            proc = subprocess.run([*as_user, sys.executable, "-c", _WRITE_INTO, str(ro / "a.png")],
                                  cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
            assert proc.returncode == 3, proc.stderr
            assert "cannot write" in proc.stdout and "Permission denied" in proc.stdout, proc.stdout
        else:
            with pytest.raises(OutputError, match="cannot write"):
                io.write_alpha(ro / "a.png", np.zeros((2, 2), np.float32))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)
        if as_user:
            shutil.rmtree(folder)


def test_unwritable_parent_is_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create output folder"):
        io.write_alpha(blocker / "sub" / "a.png", np.zeros((2, 2), np.float32))


# ----------------------------------------------------------------------------- discovery
def _touch_images(root: Path, names: list[str]) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        _cv_write(p, RGB8)


def test_discover_folder_recursive_glob_stdin(tmp_path):
    _touch_images(tmp_path, ["b.png", "a.jpg", "sub/c.png", "sub/deep/d.tif"])
    (tmp_path / "notes.txt").write_text("skip me")
    (tmp_path / ".hidden.png").write_bytes(b"")
    flat = io.discover([tmp_path])
    assert [it.rel.as_posix() for it in flat] == ["a.jpg", "b.png"]
    deep = io.discover([tmp_path], recursive=True)
    assert [it.rel.as_posix() for it in deep] == ["a.jpg", "b.png", "sub/c.png", "sub/deep/d.tif"]
    globbed = io.discover([str(tmp_path / "**" / "*.png")])
    assert sorted(it.path.name for it in globbed) == ["b.png", "c.png"]
    stdin = pyio.StringIO(f"{tmp_path / 'b.png'}\n\n  {tmp_path / 'sub' / 'c.png'}  \n")
    from_stdin = io.discover(["-"], stdin=stdin)
    assert [it.path.name for it in from_stdin] == ["b.png", "c.png"]
    # the same file named twice is processed once
    assert len(io.discover([tmp_path / "a.jpg", tmp_path / "a.jpg"])) == 1


def test_discover_errors(tmp_path):
    with pytest.raises(NoInputsError, match="no images in folder"):
        io.discover([tmp_path])
    with pytest.raises(NoInputsError, match="no such file"):
        io.discover([tmp_path / "missing.png"])
    with pytest.raises(NoInputsError, match="no files match"):
        io.discover([str(tmp_path / "*.png")])
    with pytest.raises(NoInputsError, match="no input images"):
        io.discover(["-"], stdin=pyio.StringIO("\n\n"))


def test_find_by_stem(tmp_path):
    _touch_images(tmp_path / "tri", ["a.png", "sub/b.png", "c.jpg"])
    items = {it.rel.as_posix(): it for it in io.discover([tmp_path / "tri"], recursive=True)}
    item_b = io.InputItem(Path("/x/sub/b.jpg"), Path("sub/b.jpg"))
    assert io.find_by_stem(item_b, tmp_path / "tri") == tmp_path / "tri" / "sub" / "b.png"
    item_c = io.InputItem(Path("/x/deep/c.png"), Path("deep/c.png"))  # falls back to the flat folder
    assert io.find_by_stem(item_c, tmp_path / "tri") == tmp_path / "tri" / "c.jpg"
    with pytest.raises(TrimapError, match="no trimap named zz"):
        io.find_by_stem(io.InputItem(Path("zz.png"), Path("zz.png")), tmp_path / "tri")
    assert "a.png" in items
