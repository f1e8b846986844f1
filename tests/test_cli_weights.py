"""``mattecli weights ...`` through Typer's CliRunner on an app that mounts the sub-app.

Exit codes: 0 done, 1 some variants failed (``pull --all``), 2 usage and weights errors.
Errors are one red line (plus a hint line) on stderr; stdout carries only results.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import test_weights
import typer
from rich.console import Console
from test_weights import official_toy_sd, write_official
from typer.testing import CliRunner

from mattecli.cli import console
from mattecli.cli import weights as cli_weights

# the toy-network environment of the library tests: an isolated HF cache, a test manifest,
# toy architectures (``env``) and a fake hub publishing ``toy-hub`` / ``toy-hub2`` (``published``)
env = test_weights.env
published = test_weights.published


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    root.add_typer(cli_weights.app, name="weights")
    return root


@pytest.fixture
def run(app):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(app, ["weights", *[str(a) for a in args]])

    return invoke


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_list_table_and_json(env, run):
    result = run("list")
    assert result.exit_code == 0 and result.stdout == ""
    for word in ("toy-alias", "toy-unimpl", "unpublished", "not yet", "MIT"):
        assert word in result.stderr
    result = run("list", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["variant"] for r in rows] == ["toy", "toy-other", "toy-alias", "toy-ms", "toy-unimpl"]
    assert {r["state"] for r in rows} == {"unpublished"}
    assert {r["variant"]: r["implemented"] for r in rows}["toy-unimpl"] is False


def test_import_then_list_path_verify(env, run):
    source = write_official(env.tmp / "toy_best.pth", {"state_dict": official_toy_sd()})
    result = run("import", "toy", source)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "imported toy from toy_best.pth (torch, 9 tensors)" in result.stderr

    rows = [json.loads(line) for line in run("list", "--json").stdout.splitlines()]
    toy = next(r for r in rows if r["variant"] == "toy")
    assert toy["state"] in ("imported", "checksum ok") and toy["source"] == "imported"

    result = run("path", "toy")
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout == toy["path"] + "\n"
    assert Path(toy["path"]).is_file()

    result = run("list", "--check", "--json")
    assert next(json.loads(line) for line in result.stdout.splitlines())["state"] == "checksum ok"

    result = run("verify")
    assert result.exit_code == 0 and result.stdout == ""
    # the table's one row: the variant, where it came from, its verdict and sha256 prefix
    lines = result.stderr.splitlines()
    cells = [[c.strip() for c in line.split("│")] for line in lines if line.strip().startswith("toy")]
    assert [c[:4] for c in cells] == [["toy", "imported", "ok", toy["imported"]["sha256"][:16]]], result.stderr
    result = run("verify", "toy", "--json")
    assert [json.loads(line)["ok"] for line in result.stdout.splitlines()] == [True]

    tampered = bytearray(Path(toy["path"]).read_bytes())
    tampered[-1] ^= 0xFF
    Path(toy["path"]).write_bytes(bytes(tampered))
    result = run("verify")
    assert result.exit_code == 2
    assert "mismatch" in result.stderr
    assert "error: 1 of 1 weights files failed verification: toy (imported)" in result.stderr


def test_pull_and_path(published, run):
    result = run("pull", "toy-hub")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    # stderr is not a terminal here: one line when the download starts and one when it ends, no bar
    lines = error_lines(result)
    assert lines[0].startswith("downloading ") and lines[0].endswith("toy-hub.safetensors (1.2 kB)")
    assert lines[1].startswith("downloaded ") and " 1.2 kB in " in lines[1]
    assert lines[2].startswith("pulled toy-hub from hub: ")
    result = run("pull", "toy-hub")  # already here: nothing downloaded, said so
    assert result.exit_code == 0 and error_lines(result)[0].startswith("ok toy-hub is already here: ")
    result = run("path", "toy-hub")
    expected = published.env.cache / "models--org--toy" / "snapshots" / published.commit / "toy-hub.safetensors"
    assert result.stdout == f"{expected}\n"


def test_pull_all_reports_each_variant(published, run):
    tampered = bytearray(published.data)
    tampered[0] ^= 0xFF
    published.hub.add_file("org/toy", "toy-hub.safetensors", bytes(tampered), commit=published.commit)
    result = run("pull", "--all")
    assert result.exit_code == 1  # some variants failed, each reported
    assert (
        "skipped toy: download toy_best.pth by hand from example https://example.invalid/toy_best.pth and run "
        "`mattecli weights import toy toy_best.pth`" in result.stderr
    )
    assert "pulled toy-hub2 from hub: " in result.stderr
    assert "error: toy-hub: cached file" in result.stderr and "it was not loaded" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: give a VARIANT or --all"),
        (("toy", "--all"), "error: give a VARIANT or --all, not both"),
        (("nope",), "error: unknown weights variant 'nope'; known variants: toy, toy-other, "),
        (
            ("toy",),
            "error: toy weights are not imported and cannot be downloaded automatically; download toy_best.pth "
            "by hand from example https://example.invalid/toy_best.pth and run `mattecli weights import toy "
            "toy_best.pth`",
        ),
    ],
)
def test_pull_errors_are_one_line_with_exit_2(env, run, args, message):
    result = run("pull", *args)
    assert result.exit_code == 2
    lines = error_lines(result)
    assert lines[0].startswith(message)
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: "))
    assert "Traceback" not in result.output


def test_pull_offline_without_cache(published, run, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    result = run("pull", "toy-hub")
    assert result.exit_code == 2
    lines = error_lines(result)
    assert lines[0] == (
        "error: toy-hub weights are not downloaded yet and downloads are off (HF_HUB_OFFLINE is set); run "
        "`mattecli weights pull toy-hub`, or download toy_best.pth by hand from example "
        "https://example.invalid/toy_best.pth and run `mattecli weights import toy-hub toy_best.pth`"
    )
    assert lines[1] == "hint: `mattecli weights list` shows where each variant comes from"
    assert published.hub.requests == []  # offline: not even a HEAD


def test_import_errors(env, run):
    sd = official_toy_sd()
    del sd["features.0.bias"]
    bad = write_official(env.tmp / "bad.pth", {"state_dict": sd})
    result = run("import", "toy", bad)
    assert result.exit_code == 2
    assert error_lines(result)[0] == ("error: bad.pth does not match the toy network: missing (1): conv.bias")

    evil = env.tmp / "evil.pth"
    evil.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    result = run("import", "toy", evil)
    assert result.exit_code == 2
    assert error_lines(result)[0] == (
        f"error: {evil} is a pickle that is not a plain checkpoint (it refers to os.system); "
        "mattecli never unpickles code"
    )

    result = run("import", "toy-unimpl", bad)
    assert result.exit_code == 2
    assert error_lines(result)[0] == (
        "error: method later is not implemented yet, so weights for toy-unimpl cannot be imported or loaded"
    )

    result = run("import", "toy")  # missing FILE: Typer's usage error
    assert result.exit_code == 2


def test_import_warns_when_the_source_is_not_the_official_file(env, run):
    from hub_server import hub_entry

    env.set_manifest([hub_entry("toy", official_sha256="0" * 64)])
    result = run("import", "toy", write_official(env.tmp / "toy_best.pth", {"state_dict": official_toy_sd()}))
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "is not the official file the manifest records" in result.stderr


def test_path_and_verify_without_weights(env, run):
    result = run("path", "toy")
    assert result.exit_code == 2 and result.stdout == ""
    assert error_lines(result)[0] == (
        "error: toy weights are not imported and cannot be downloaded automatically; download toy_best.pth by "
        "hand from example https://example.invalid/toy_best.pth and run `mattecli weights import toy toy_best.pth`"
    )
    result = run("verify")
    assert result.exit_code == 0 and "no weights are cached or imported yet" in result.stderr
    result = run("verify", "toy")
    assert result.exit_code == 2


def test_export(env, run):
    run("import", "toy", write_official(env.tmp / "toy_best.pth", {"state_dict": official_toy_sd()}))
    out = env.tmp / "publish"
    result = run("export", "toy", out, "--repo-id", "me/mattecli-toy")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "manifest_snippet.json", "toy.safetensors"]
    assert "exported toy to" in result.stderr and "warning" not in result.stderr
    assert json.loads((out / "manifest_snippet.json").read_text())["hub"]["repo_id"] == "me/mattecli-toy"
    result = run("export", "toy", out)
    assert result.exit_code == 2 and "not an empty folder" in error_lines(result)[0]


def test_rich_download_bar_counts_bytes(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stderr", Console(file=buffer, force_terminal=True, width=100))
    with cli_weights.RichDownloadBar(total=100, initial=10, desc="toy.safetensors", unit="B") as bar:
        bar.update(60)
        bar.update(-20)  # huggingface_hub rolls back when a server ignores a resume request
        bar.update(50)
        assert bar._progress.tasks[0].completed == 100
    assert "toy.safetensors" in buffer.getvalue()


def test_import_into_an_unusable_cache_is_one_line_exit_1(env, run, monkeypatch):
    """HF_HUB_CACHE under a regular file (NotADirectoryError): one line, exit 1, nothing written."""
    from huggingface_hub import constants

    blocker = env.tmp / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(blocker / "hub"))
    result = run("import", "toy", write_official(env.tmp / "toy_best.pth", {"state_dict": official_toy_sd()}))
    assert result.exit_code == 1
    lines = error_lines(result)
    assert lines[0].startswith(f"error: cannot write toy weights into the Hugging Face cache {blocker / 'hub'}: ")
    assert "Not a directory" in lines[0] and len(lines) == 2 and lines[1].startswith("hint: ")
    assert "Traceback" not in result.output and blocker.read_text() == "not a folder"


def test_import_on_a_full_disk_leaves_no_half_written_entry(env, run, monkeypatch):
    import errno

    real = Path.write_bytes

    def full_disk(self, data):
        if self.name.startswith(".import-"):
            real(self, data[: len(data) // 2])  # part of it made it to disk, then the disk was full
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    result = run("import", "toy", write_official(env.tmp / "toy_best.pth", {"state_dict": official_toy_sd()}))
    assert result.exit_code == 1
    lines = error_lines(result)
    assert lines[0].startswith("error: cannot write toy weights into the Hugging Face cache ")
    assert "No space left on device" in lines[0] and "Traceback" not in result.output
    repo = env.cache / "models--mattecli-imports--toy"
    leftovers = [p for p in repo.rglob("*") if p.is_file()]
    assert leftovers == []  # no temp file, no snapshot, no refs/main
    monkeypatch.setattr(Path, "write_bytes", real)
    assert run("path", "toy").exit_code == 2  # nothing that looks like weights


def test_hf_home_under_a_regular_file_in_a_fresh_process(tmp_path):
    """As a user meets it: HF_HOME set to a path below a file."""
    import subprocess
    import sys

    from test_shm import MS_FILENAME, _ms_net, write_official_ckpt

    blocker = tmp_path / "file"
    blocker.write_text("x")
    ckpt = write_official_ckpt(tmp_path / MS_FILENAME, _ms_net(1))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, "HF_HOME": str(blocker / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "mattecli", "weights", "import", "shm-mindspore", str(ckpt)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: cannot write shm-mindspore weights into the Hugging Face cache ")
    assert len(lines) == 2 and "Traceback" not in result.stderr
