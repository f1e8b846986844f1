"""Issue 31, reliability second round, through the CLI where a user meets it: dangling links are
reported, FIFOs never hang a run, SIGTERM / SIGHUP are as clean as Ctrl-C, ``--json`` and error lines
keep file names byte-exact, zip bombs are refused before they inflate, outputs that are devices,
FIFOs or sockets are never replaced, and a PNG with an oversized metadata chunk still decodes."""

from __future__ import annotations

import io as pyio
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import test_weights
import torch
from conftest import BLOCKING_WRITER, REPO, invoke, synthetic_scene, write_gray, write_rgb
from test_weights import official_toy_sd

from mattecli import io
from mattecli.errors import ImageReadError, OutputError, UnsafeCheckpointError
from mattecli.pipelines import runner as job_runner

# the toy weights environment of the library tests (an isolated cache, a test manifest, toy networks)
env = test_weights.env

ENV = {k: v for k, v in os.environ.items() if not k.startswith("MATTECLI_")}


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def _warning_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.part")) if folder.exists() else []


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output and "Traceback" not in result.stderr


def _snapshot(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file() and not p.is_symlink()}


def _scene(root: Path, names: list[str], size: tuple[int, int] = (12, 16)) -> None:
    """``root/in/<name>`` images and ``root/tri/<name>`` trimaps (cf runs on them in milliseconds)."""
    for i, name in enumerate(names):
        image, _alpha, trimap = synthetic_scene(*size, seed=i)
        write_rgb(root / "in" / name, image)
        write_gray(root / "tri" / name, trimap)


# ============================================================================ 1. dangling links, FIFOs
def test_a_dangling_symlink_and_a_link_loop_in_a_folder_are_reported_failures(runner, tmp_path):
    _scene(tmp_path, ["a.png", "b.png", "c.png"])
    (tmp_path / "in" / "y.png").symlink_to("missing.png")
    (tmp_path / "in" / "loop.png").symlink_to("loop.png")
    (tmp_path / "tri" / "c.png").unlink()
    (tmp_path / "tri" / "c.png").symlink_to("gone.png")  # a dangling trimap says so, too
    before = _snapshot(tmp_path / "in", tmp_path / "tri")
    out = tmp_path / "out"
    result = invoke(runner, ["matte", "-m", "cf", tmp_path / "in", out, "-t", tmp_path / "tri", "--json"])
    assert result.exit_code == 1, result.output
    _no_traceback(result)
    rows = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"a.png", "b.png", "c.png", "y.png", "loop.png"}
    assert rows["a.png"]["status"] == rows["b.png"]["status"] == "ok"
    assert rows["c.png"]["status"] == rows["y.png"]["status"] == rows["loop.png"]["status"] == "error"
    loop, dangling, trimap = tmp_path / "in" / "loop.png", tmp_path / "in" / "y.png", tmp_path / "tri" / "c.png"
    assert _error_lines(result.stderr) == [
        f"error: trimap {trimap}: broken symbolic link (its target gone.png does not exist)",
        f"error: {loop}: symbolic link loop (it never reaches a file)",
        f"error: {dangling}: broken symbolic link (its target missing.png does not exist)",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"] and not _parts(out)
    assert _snapshot(tmp_path / "in", tmp_path / "tri") == before


def test_fifos_and_sockets_in_a_folder_are_skipped_with_a_note_and_never_opened(runner, tmp_path):
    _scene(tmp_path, ["a.png"])
    fifo = tmp_path / "in" / "f.png"
    os.mkfifo(fifo)  # nobody ever writes: opening it for reading would block forever
    sock_path = tmp_path / "in" / "s.png"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(sock_path))
    except OSError:  # a path too long for AF_UNIX: the FIFO alone
        sock_path = None
    try:
        start = time.perf_counter()
        result = invoke(
            runner, ["matte", "-m", "cf", tmp_path / "in", tmp_path / "out", "-t", tmp_path / "tri", "--json"]
        )
        assert time.perf_counter() - start < 60
    finally:
        sock.close()
    assert result.exit_code == 0, result.output
    _no_traceback(result)
    assert [Path(json.loads(r)["input"]).name for r in result.stdout.splitlines()] == ["a.png"]
    notes = _warning_lines(result.stderr)
    assert f"warning: {fifo}: skipped, it is a pipe (FIFO), not an image file" in notes
    if sock_path is not None:
        assert f"warning: {sock_path}: skipped, it is a socket, not an image file" in notes
    assert len(notes) == (2 if sock_path is not None else 1) and not _error_lines(result.stderr)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_globs_recursion_stdin_and_shards_keep_broken_entries_and_skip_fifos(tmp_path):
    root = tmp_path / "imgs"
    for rel in ["a.png", "sub/b.png", "sub/deep/c.png"]:
        write_gray(root / rel, np.zeros((4, 4), np.uint8))
    (root / "sub" / "gone.png").symlink_to("nowhere.png")
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    os.mkfifo(root / "sub" / "pipe.png")
    (root / "notes.txt").symlink_to("nowhere.txt")  # not named like an image: not an input of a folder
    with pytest.warns(UserWarning, match="pipe.png: skipped, it is a pipe"):
        deep = io.discover([root], recursive=True)
    rels = [it.rel.as_posix() for it in deep]
    assert rels == ["a.png", "dangling.jpg", "sub/b.png", "sub/deep/c.png", "sub/gone.png"]
    # every shard is decided by the relative path alone: the shards cover the folder, broken entries included
    seen: list[str] = []
    for k in range(1, 4):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            part = io.discover([root], recursive=True, shard=(k, 3))
        seen += [it.rel.as_posix() for it in part]
        # the FIFO's note comes from the shard that would own it, not from every shard
        notes = [w for w in caught if issubclass(w.category, io.SkippedInputWarning)]
        assert len(notes) == int(io.in_shard("sub/pipe.png", (k, 3)))
    assert sorted(seen) == rels
    with pytest.warns(io.SkippedInputWarning):
        globbed = io.discover([str(root / "sub" / "*.png")])
    assert [it.path.name for it in globbed] == ["b.png", "gone.png"]
    stdin = pyio.StringIO(f"{root / 'sub' / 'gone.png'}\n{root / 'a.png'}\n")
    assert [it.path.name for it in io.discover(["-"], stdin=stdin)] == ["gone.png", "a.png"]
    # a dangling link named on the command line is an input whose read fails, not "no such file or folder"
    (named,) = io.discover([root / "sub" / "gone.png"])
    with pytest.raises(ImageReadError, match="broken symbolic link"):
        io.read_image(named.path)


# ============================================================================ 2. SIGTERM, SIGHUP
def _as_from_a_shell() -> None:
    """A child's signals as a shell starts it: SIGTERM and SIGHUP at their defaults, whatever this
    test process inherited (under ``nohup`` SIGHUP is ignored, and an ignored signal is inherited)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("command", "sig"),
    [
        ("trimap", signal.SIGTERM),  # written on the main thread
        ("matte", signal.SIGTERM),  # written by an I/O thread, which stays blocked: abandoned after 5 s
        ("trimap", signal.SIGHUP),
    ],
)
def test_a_signal_during_a_write_exits_cleanly_and_leaves_no_temporary_file(tmp_path, command, sig):
    _scene(tmp_path, ["m.png"], size=(30, 40))
    out = tmp_path / "out"
    fifo = tmp_path / "block.fifo"
    os.mkfifo(fifo)
    before = _snapshot(tmp_path / "in", tmp_path / "tri")
    args = (
        ["trimap", str(tmp_path / "tri" / "m.png"), str(out), "--width", "4"]
        if command == "trimap"
        else ["matte", "-m", "cf", str(tmp_path / "in" / "m.png"), str(out), "-t", str(tmp_path / "tri" / "m.png")]
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKING_WRITER, str(fifo), *args],
        cwd=REPO,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_as_from_a_shell,
    )
    try:
        deadline = time.monotonic() + 120
        while not _parts(out) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        (part,) = _parts(out)
        assert f".{proc.pid}." in part.name
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, stderr.decode()
    assert stderr.decode().splitlines() == [f"terminated ({name}): finished outputs are kept; run again to resume"]
    assert stdout == b""
    assert not _parts(out) and not (out / "m.png").exists()
    assert _snapshot(tmp_path / "in", tmp_path / "tri") == before


def test_sigterm_in_process_removes_the_file_being_written(runner, tmp_path, monkeypatch):
    """Deterministic: the signal is sent from inside the write, after the data and before the rename."""
    _scene(tmp_path, ["a.png", "b.png"])
    out = tmp_path / "out"
    real_fsync = os.fsync

    def fsync_then_terminated(fd):
        real_fsync(fd)
        os.kill(os.getpid(), signal.SIGTERM)

    class NoHandler(Exception):
        pass

    def fallback(signum, frame):  # what runs when the CLI installed none: fail the test, not the test runner
        raise NoHandler

    monkeypatch.setattr(os, "fsync", fsync_then_terminated)
    previous = signal.signal(signal.SIGTERM, fallback)
    try:
        result = invoke(runner, ["trimap", tmp_path / "tri", out, "--width", "2", "--json"])
        handler = signal.getsignal(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    _no_traceback(result)
    assert result.stderr.splitlines() == ["terminated (SIGTERM): finished outputs are kept; run again to resume"]
    assert not _parts(out) and not list(out.glob("*.png"))
    assert handler is fallback  # the CLI put the previous handler back


def test_signal_handlers_come_from_the_cli_only_and_an_ignored_sighup_stays_ignored(runner, tmp_path, monkeypatch):
    code = (
        "import signal, mattecli, mattecli.io, mattecli.pipelines.runner, mattecli.pipelines.matte, "
        "mattecli.backends, mattecli.weights\n"
        "print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, signal.getsignal(signal.SIGHUP) == signal.SIG_DFL)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, check=True,
        preexec_fn=_as_from_a_shell,
    )  # fmt: skip
    assert out.stdout.split() == ["True", "True"]  # importing the library installs no handler
    _scene(tmp_path, ["a.png"])
    seen = {}
    real = io.atomic_write_bytes

    def spy(path, data):
        seen["term"], seen["hup"] = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)
        real(path, data)

    monkeypatch.setattr(io, "atomic_write_bytes", spy)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        result = invoke(runner, ["trimap", tmp_path / "tri" / "a.png", tmp_path / "out.png", "--width", "2"])
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert result.exit_code == 0, result.output
    assert callable(seen["term"]) and seen["term"] not in (signal.SIG_DFL, signal.SIG_IGN)
    assert seen["hup"] == signal.SIG_IGN


def test_sigterm_stops_every_device_worker_cleanly(tmp_path):
    """Two CPU workers (``--device cpu,cpu``): the parent's SIGTERM reaches them, each completes or
    removes the file it writes, no worker prints a traceback, the parent exits 143."""
    _scene(tmp_path, [f"{i:03d}.png" for i in range(24)], size=(90, 120))
    out = tmp_path / "out"
    args = ["matte", "-m", "cf", str(tmp_path / "in"), str(out), "-t", str(tmp_path / "tri"), "--device", "cpu,cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mattecli", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_as_from_a_shell,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not (out.is_dir() and len(list(out.glob("*.png"))) >= 2) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = stderr.decode()
    assert proc.returncode == 143, text
    assert text.splitlines() == ["terminated (SIGTERM): finished outputs are kept; run again to resume"]
    assert not _parts(out)
    for png in out.glob("*.png"):  # whatever was written is complete
        assert cv2.imread(str(png), cv2.IMREAD_UNCHANGED).shape == (90, 120)


# ============================================================================ 3. byte-exact names
ODD_NAMES = [":fire: shot.png", "[red]x.png", "a:x:b.png", "back\\slash.png", "tab\there.png", "[bold]:smile:.png"]


def test_json_rows_and_error_lines_keep_file_names_byte_exact(runner, tmp_path):
    _scene(tmp_path, ODD_NAMES)
    bad = tmp_path / "in" / ":x: [red]bad\t\\.png"
    bad.write_bytes(b"not an image")
    write_gray(tmp_path / "tri" / bad.name, np.zeros((12, 16), np.uint8))
    out = tmp_path / "out"
    result = invoke(runner, ["matte", "-m", "cf", tmp_path / "in", out, "-t", tmp_path / "tri", "--json"])
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["input"] for r in rows) == sorted(str(tmp_path / "in" / n) for n in [*ODD_NAMES, bad.name])
    for row in rows:
        assert row["output"] == str(out / Path(row["input"]).name)
    assert "🔥" not in result.stdout and "😄" not in result.stdout and "\u274c" not in result.stdout
    assert '"tab\\there.png"' not in result.stdout  # a tab is escaped as JSON requires ...
    assert "tab\\there.png" in result.stdout and "back\\\\slash.png" in result.stdout  # ... and nothing more
    (line,) = _error_lines(result.stderr)
    assert line == f"error: {bad}: not a readable image (corrupt or unsupported format)"
    assert sorted(p.name for p in out.iterdir()) == sorted(ODD_NAMES)


def test_a_name_that_is_not_utf8_round_trips_through_json_and_error_lines(runner, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/caf\xe9.png"  # Latin-1 bytes: not UTF-8
    with open(raw, "wb") as fh:
        fh.write(b"garbage")
    result = invoke(runner, ["trimap", folder, tmp_path / "out", "--json"])
    assert result.exit_code == 1, result.output
    _no_traceback(result)
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert "\\udce9" in result.stdout and os.fsencode(row["input"]) == raw
    assert b"error: " + raw + b": not a readable image" in result.stderr_bytes


# ============================================================================ 4. zip bombs
def _torch_zip_with_bomb(path: Path, state: dict, *, inflated: int, declare: int | None = None) -> Path:
    """A ``torch.save`` zip whose ``data.pkl`` is replaced by ``inflated`` zero bytes, deflated and
    written 1 MiB at a time (the test never holds them); ``declare``: patch the size its central
    directory declares (a directory that lies)."""
    buf = pyio.BytesIO()
    torch.save(state, buf)
    original = zipfile.ZipFile(pyio.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for info in original.infolist():
            if info.filename.endswith("data.pkl"):
                member = zipfile.ZipInfo(info.filename)
                member.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(member, "w", force_zip64=True) as fh:
                    zeros = bytes(1 << 20)
                    for _ in range(inflated >> 20):
                        fh.write(zeros)
            else:
                zf.writestr(info, original.read(info.filename), compress_type=zipfile.ZIP_STORED)
    if declare is not None:  # rewrite the uncompressed size its central directory entry declares
        data = bytearray(path.read_bytes())
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("data.pkl")).encode()
        pos = data.find(b"PK\x01\x02")
        while data[pos + 46 : pos + 46 + struct.unpack_from("<H", data, pos + 28)[0]] != name:
            pos = data.find(b"PK\x01\x02", pos + 4)
        struct.pack_into("<I", data, pos + 24, declare)
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("inflated", "declare", "message"),
    [
        (256 << 20, None, "would inflate from"),  # a real deflate bomb: 256 MiB of zeros in ~1 MB
        (0, 3 << 30, "would inflate to"),  # the directory claims 3 GiB
        (8 << 20, 64, "does not inflate to the 64 bytes it declares"),  # it claims less than it holds
    ],
)
def test_a_checkpoint_zip_bomb_is_refused_before_torch_reads_it(env, tmp_path, monkeypatch, inflated, declare, message):
    from mattecli import weights
    from mattecli.weights import reading

    bomb = _torch_zip_with_bomb(
        tmp_path / "bomb.pth", {"state_dict": official_toy_sd()}, inflated=inflated, declare=declare
    )
    assert bomb.stat().st_size < 4 << 20

    def never(*args, **kwargs):
        raise AssertionError("torch.load was called on a zip bomb")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(UnsafeCheckpointError) as caught:
        weights.import_checkpoint("toy", bomb)
    assert caught.value.message.startswith(f"{bomb} is refused unread: ") and message in caught.value.message
    assert "\n" not in caught.value.message
    with zipfile.ZipFile(bomb) as zf:  # what a legitimate torch.save zip looks like passes
        assert reading.zip_bomb_reason(zf, max_bytes=8 << 30) is not None
    good = tmp_path / "good.pth"
    torch.save({"state_dict": official_toy_sd()}, good)
    with zipfile.ZipFile(good) as zf:
        assert reading.zip_bomb_reason(zf, max_bytes=reading.MAX_CHECKPOINT_BYTES) is None


def test_weights_import_of_a_bomb_is_one_line_and_never_inflates(tmp_path):
    """The real command on the real AIM network: exit 2, one line naming the file, and the peak memory
    of the process stays that of a refused file (a 768 MiB data.pkl inflated would add 768 MiB)."""
    bomb = _torch_zip_with_bomb(tmp_path / "bomb.pth", {"a": torch.zeros(3)}, inflated=768 << 20)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x80\x04not a pickle at all")

    def run(path: Path) -> tuple[int, str, int]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mattecli", "weights", "import", "aim", str(path)],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        err = proc.stderr.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, err, usage.ru_maxrss * 1024  # KiB on Linux

    code, err, peak = run(bomb)
    _, _, baseline = run(junk)
    assert peak < baseline + (256 << 20), (peak, baseline)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith(f"error: {bomb} is refused unread: archive/data.pkl would inflate from ")
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "Traceback" not in err


def test_the_drive_zip_path_refuses_a_bomb_member_and_streams_with_a_cap(tmp_path):
    from mattecli.weights import download

    archive = tmp_path / "k.download"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("release/model.pth", "w", force_zip64=True) as fh:
            zeros = bytes(1 << 20)
            for _ in range(200):
                fh.write(zeros)
    with pytest.raises(download.FetchError) as caught:
        download._unpack(archive, tmp_path, "model.pth")
    assert caught.value.kind == "archive" and "decompression bomb" in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.download"]  # nothing extracted
    fine = tmp_path / "fine.download"
    with zipfile.ZipFile(fine, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("release/model.pth", os.urandom(3 << 20))
    path, member = download._unpack(fine, tmp_path, "model.pth")
    assert member == "release/model.pth" and path.stat().st_size == 3 << 20


def test_a_parquet_dataset_bomb_is_refused_before_any_row_is_read(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from mattecli.benchmark import parquet as dataset_parquet
    from mattecli.benchmark.manifest import HubColumns, UnpackLayout
    from mattecli.errors import DatasetError

    png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()
    path = tmp_path / "test-00000.parquet"
    # each image cell is 64 MiB of zeros: zstd makes the file tiny, reading it would inflate 256 MiB
    table = pa.table(
        {
            "name": [f"s{i}" for i in range(4)],
            "image": [png + bytes(64 << 20) for _ in range(4)],
            "alpha": [png for _ in range(4)],
        }
    )
    pq.write_table(table, path, compression="zstd", use_dictionary=False, row_group_size=4)
    del table
    assert path.stat().st_size < 8 << 20
    columns = HubColumns(name="name", image="image", alpha="alpha", trimap=None, groups={})
    layout = UnpackLayout(image="image", alpha="alpha", trimap=None, groups=None)
    with pytest.raises(DatasetError, match=r"test-00000.parquet: column 'image' .* decompression bomb"):
        dataset_parquet.unpack_parquet([path], tmp_path / "out", columns, layout)
    assert not (tmp_path / "out").exists()


# ============================================================================ 5. outputs that are not files
def _special(kind: str, path: Path):
    """Make a FIFO, a socket or (as root) a character device at ``path``; returns something to close."""
    if kind == "fifo":
        os.mkfifo(path)
        return None
    if kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(path))
        except OSError:
            sock.close()
            pytest.skip("the temporary path is too long for a unix socket")
        return sock
    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers
    except (PermissionError, OSError) as err:
        pytest.skip(f"mknod refused here: {err}")
    return None


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("kind", ["fifo", "socket", "chardev"])
def test_an_output_that_is_not_a_regular_file_is_refused_up_front(runner, tmp_path, kind, overwrite):
    _scene(tmp_path, ["a.png", "b.png"])
    out = tmp_path / "out"
    out.mkdir()
    target = out / "a.png"
    closer = _special(kind, target)
    try:
        mode = os.lstat(target).st_mode
        args = ["matte", "-m", "cf", tmp_path / "in", out, "-t", tmp_path / "tri", "--json"]
        result = invoke(runner, [*args, "--overwrite"] if overwrite else args)
        assert result.exit_code == 2, result.output
        _no_traceback(result)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[0].startswith(f"error: output {target} is ") and "not a regular file" in lines[0]
        assert len(lines) == 2 and lines[1].startswith("hint: ") and result.stdout == ""
        assert os.lstat(target).st_mode == mode  # still the same kind of node, never renamed over
        assert sorted(p.name for p in out.iterdir()) == ["a.png"] and not _parts(out)
        # a single output named directly: refused the same way
        result = invoke(runner, ["trimap", tmp_path / "tri" / "b.png", target])
        assert result.exit_code == 2 and str(target) in _error_lines(result.stderr)[0]
        assert os.lstat(target).st_mode == mode
    finally:
        if closer is not None:
            closer.close()


def test_a_fifo_that_appears_after_planning_is_an_error_of_its_job_never_replaced(tmp_path):
    items = [io.InputItem(tmp_path / f"{n}.png", Path(f"{n}.png")) for n in "ab"]
    jobs = job_runner.plan_jobs(items, tmp_path / "out")
    (tmp_path / "out").mkdir()
    os.mkfifo(jobs[0].output)
    assert not job_runner.is_done(jobs[0])  # a FIFO is not a finished output
    results = list(job_runner.run_jobs(jobs, lambda job: io.atomic_write_bytes(job.output, b"x"), overwrite=True))
    assert [r["status"] for r in results] == ["error", "ok"]
    assert "is a pipe (FIFO), not a regular file" in results[0]["error"]
    assert stat.S_ISFIFO(os.lstat(jobs[0].output).st_mode)
    with pytest.raises(OutputError, match="not a regular file"):
        io.atomic_write_bytes(jobs[0].output, b"x")  # the writer refuses on its own too
    assert stat.S_ISFIFO(os.lstat(jobs[0].output).st_mode) and not _parts(tmp_path / "out")


# ============================================================================ 6. PNG metadata chunks
def _png_with_chunk(ctype: bytes, payload: bytes, pixels: np.ndarray) -> bytes:
    png = cv2.imencode(".png", pixels)[1].tobytes()
    chunk = struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the 25-byte IHDR


def test_a_png_with_an_oversized_metadata_chunk_decodes(runner, tmp_path):
    pixels = (np.arange(6 * 8, dtype=np.uint8).reshape(6, 8) * 5).astype(np.uint8)
    xmp = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + b"<x:xmpmeta/>" * 800_000  # 9.6 MB of XMP history
    path = tmp_path / "in" / "big_xmp.png"
    path.parent.mkdir()
    path.write_bytes(_png_with_chunk(b"iTXt", xmp, pixels))
    gray = io.read_gray(path)
    assert np.array_equal(np.round(gray * 255).astype(np.uint8), pixels)
    result = invoke(runner, ["trimap", path, tmp_path / "out.png", "--threshold", "0.5", "--width", "2"])
    assert result.exit_code == 0, result.output


def test_a_corrupt_png_with_an_oversized_chunk_says_so(tmp_path):
    data = bytearray(_png_with_chunk(b"iCCP", b"icc\x00\x00" + os.urandom(9_000_000), np.zeros((4, 4), np.uint8)))
    data[-20:-12] = b"\x00" * 8  # break the pixels too
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError) as caught:
        io.read_image(path)
    assert caught.value.message.startswith(f"{path}: not a readable image: an oversized metadata chunk (iCCP (9.0 MB))")
