"""First use of a deep method on a fresh machine: `mattecli matte` fetches the weights itself.

The real manifest is copied with the MindSpore SHM checkpoint's link pointed at a stand-in server
on 127.0.0.1 (and its pinned sha256 at a file with random weights), as a company mirror would be
named through ``MATTECLI_MANIFEST``. Each command runs in a fresh process with an empty
``HF_HOME``, as a new user's first command does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from drive_server import FakeDrive
from test_shm import MS_FILENAME, _ms_net, write_official_ckpt

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "images" / "fluffy.png"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    path = write_official_ckpt(tmp_path_factory.mktemp("ckpt") / MS_FILENAME, _ms_net(4))
    return path.read_bytes()


def manifest_with(tmp_path: Path, url: str, sha256: str | None) -> Path:
    data = json.loads((REPO / "weights_manifest.json").read_text())
    for entry in data["checkpoints"]:
        if entry["variant"] == "shm-mindspore":
            entry["official"]["files"][0]["links"] = [{"host": "MindSpore download", "url": url}]
            entry["official"]["files"][0]["sha256"] = sha256
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def fresh_env(home: Path, manifest: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATTECLI_"))}
    env.update(HF_HOME=str(home), MATTECLI_MANIFEST=str(manifest), **extra)
    return env


def mattecli(args: list, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mattecli", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def run(args: list, env: dict) -> subprocess.CompletedProcess:
    proc = mattecli(args, env)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_first_use_downloads_then_mattes_and_equals_the_imported_chain(checkpoint, tmp_path):
    with FakeDrive() as server:
        url = server.add_plain(MS_FILENAME, checkpoint)
        manifest = manifest_with(tmp_path, url, hashlib.sha256(checkpoint).hexdigest())

        first = run(["matte", "-m", "shm", IMAGE, tmp_path / "pulled", "--json"], fresh_env(tmp_path / "a", manifest))
        assert first.returncode == 0, first.stderr
        rows = [json.loads(line) for line in first.stdout.splitlines()]  # stdout is only the JSON result
        assert [r["status"] for r in rows] == ["ok"]
        assert "downloading shm-mindspore (MindSpore download)" in first.stderr
        assert len(server.body_gets()) == 1

        again = run(["matte", "-m", "shm", IMAGE, tmp_path / "again", "--json"], fresh_env(tmp_path / "a", manifest))
        assert again.returncode == 0 and "downloading" not in again.stderr
        assert len(server.body_gets()) == 1  # the cache is used

    # the same file imported by hand, then matte (no server at all now)
    (tmp_path / MS_FILENAME).write_bytes(checkpoint)
    hand = fresh_env(tmp_path / "b", manifest, MATTECLI_OFFLINE="1")
    imported = run(["weights", "import", "shm-mindspore", tmp_path / MS_FILENAME], hand)
    assert imported.returncode == 0, imported.stderr
    by_hand = run(["matte", "-m", "shm", IMAGE, tmp_path / "imported"], hand)
    assert by_hand.returncode == 0, by_hand.stderr
    assert (tmp_path / "pulled" / "fluffy.png").read_bytes() == (tmp_path / "imported" / "fluffy.png").read_bytes()


def test_first_use_offline_is_one_line_with_exit_2(checkpoint, tmp_path):
    with FakeDrive() as server:
        manifest = manifest_with(tmp_path, server.add_plain(MS_FILENAME, checkpoint), None)
        for extra in ({"HF_HUB_OFFLINE": "1"}, {"MATTECLI_OFFLINE": "1"}):
            result = run(["matte", "-m", "shm", IMAGE, tmp_path / "out"], fresh_env(tmp_path / "h", manifest, **extra))
            assert result.returncode == 2
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert lines[0].startswith("error: shm-mindspore weights are not downloaded yet and downloads are off (")
            assert "`mattecli weights pull shm-mindspore`" in lines[0]
            assert f"`mattecli weights import shm-mindspore {MS_FILENAME}`" in lines[0]
            assert len(lines) == 2 and lines[1].startswith("hint: ") and "Traceback" not in result.stderr
        result = run(["matte", "-m", "shm", IMAGE, tmp_path / "out", "--no-download"], fresh_env(tmp_path / "h", manifest))
        assert result.returncode == 2 and "(--no-download)" in result.stderr
        assert server.requests == []
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_two_first_uses_at_once_share_one_download(checkpoint, tmp_path):
    """Two `matte` commands start together on a fresh machine (a zip from a Drive-style host, slowly)."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"shm/{MS_FILENAME}", checkpoint)
    with FakeDrive() as server:
        link = server.add("SHM", buffer.getvalue(), mode="confirm", chunk=1 << 15, delay=0.02)
        manifest = manifest_with(tmp_path, link, None)
        env = fresh_env(tmp_path / "home", manifest)
        procs = [mattecli(["matte", "-m", "shm", IMAGE, tmp_path / f"out{i}", "--json"], env) for i in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
        assert len(server.body_gets()) == 1
    repo = tmp_path / "home" / "hub" / "models--mattecli-imports--shm-mindspore"
    assert len(list((repo / "snapshots").iterdir())) == 1
    assert (tmp_path / "out0" / "fluffy.png").read_bytes() == (tmp_path / "out1" / "fluffy.png").read_bytes()
    verify = run(["weights", "verify", "--json"], env)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
    record = json.loads((repo / "official_sha256.json").read_text())
    assert record["sha256"] == hashlib.sha256(checkpoint).hexdigest()


def test_trimap_from_image_fetches_on_first_use_too(checkpoint, tmp_path):
    with FakeDrive() as server:
        manifest = manifest_with(tmp_path, server.add_plain(MS_FILENAME, checkpoint), None)
        result = run(
            ["trimap", "--from-image", "-m", "shm", IMAGE, tmp_path / "tri.png", "--json"],
            fresh_env(tmp_path / "h", manifest),
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "ok" and len(server.body_gets()) == 1
    assert (tmp_path / "tri.png").is_file()


@pytest.mark.parametrize(
    ("args", "variant"),
    [
        (["semantic-trimap", IMAGE, "OUT/x.png", "--trimap", REPO / "examples" / "trimaps" / "fluffy.png"], "sim-classifier"),
        (["trimap", "--from-image", IMAGE, "OUT/x.png"], "aim"),
        (["matte", "-m", "sim", IMAGE, "OUT/x.png", "--trimap", REPO / "examples" / "trimaps" / "fluffy.png"], "sim-comp1k"),
    ],
)
def test_every_command_refuses_offline_before_any_image(args, variant, tmp_path):
    """The real manifest, offline: the one-liner names the variant(s), pull and import; nothing written."""
    args = [str(a).replace("OUT", str(tmp_path / "out")) for a in args]
    result = run(args, fresh_env(tmp_path / "h", REPO / "weights_manifest.json", MATTECLI_OFFLINE="1"))
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("error: ") and variant in lines[0]
    assert "downloads are off (MATTECLI_OFFLINE is set)" in lines[0] and "mattecli weights import" in lines[0]
    if variant == "sim-comp1k":  # SIM needs two files: both are named
        assert lines[0].startswith("error: sim-comp1k, sim-classifier weights are not downloaded yet")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bench_fetches_the_method_weights_on_first_use(checkpoint, tmp_path):
    with FakeDrive() as server:
        manifest = manifest_with(tmp_path, server.add_plain(MS_FILENAME, checkpoint), None)
        args = ["bench", "--dataset", "folder", "--root", REPO / "examples", "--method", "shm", "--json"]
        result = run(args, fresh_env(tmp_path / "h", manifest))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)  # stdout: the report only, downloads on stderr
        assert sorted(r["name"] for r in report["rows"]) == ["fluffy", "veil"] and report["failures"] == []
        assert "downloading shm-mindspore" in result.stderr and len(server.body_gets()) == 1
        offline = run([*args, "--no-download"], fresh_env(tmp_path / "h2", manifest))
        assert offline.returncode == 2 and "(--no-download)" in offline.stderr
