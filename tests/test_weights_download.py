"""Downloads from the authors' links: Google Drive's flow, plain servers, resume, checksums, locks.

Everything runs against :class:`drive_server.FakeDrive` on 127.0.0.1; the manifest under test
points its links there (``MATTECLI_MANIFEST``), exactly as a company mirror would.
"""

from __future__ import annotations

import hashlib
import io as bytes_io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
from drive_server import FakeDrive
from hub_server import FakeHub, hub_entry, use_fake_hub
import test_weights
from test_weights import assert_same, official_toy_sd, remap_toy
from typer.testing import CliRunner

from mattecli import weights
from mattecli.errors import ChecksumMismatchError, WeightsNotCachedError, WeightsUnavailableError
from mattecli.weights import download

REPO = Path(__file__).resolve().parents[1]
FILENAME = "toy_best.pth"


def official_bytes(seed: int = 0) -> bytes:
    buffer = bytes_io.BytesIO()
    torch.save({"state_dict": official_toy_sd(seed)}, buffer)
    return buffer.getvalue()


def zipped(content: bytes, member: str = f"pretrained/{FILENAME}") -> bytes:
    buffer = bytes_io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pretrained/README.txt", "unzip me")
        zf.writestr(member, content)
    return buffer.getvalue()


def drive_entry(variant: str, *urls: str, sha256: str | None = None, baidu: bool = False) -> dict:
    """A manifest entry whose official file lives at ``urls`` (Drive-style links first)."""
    entry = hub_entry(variant, official_sha256=sha256)
    links = [{"host": "Google Drive", "url": u} for u in urls]
    if baidu:
        links.append({"host": "Baidu Netdisk", "url": "https://pan.baidu.com/s/1abc", "password": "evik", "manual": True})
    entry["official"]["files"][0]["links"] = links
    return entry


env = test_weights.env  # the fixture: an empty HF cache, a test manifest, toy architectures


@pytest.fixture
def drive(env, monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0, 0.0, 0.0))
    with FakeDrive() as server:
        server.env = env
        yield server


def imports_repo(env, variant: str = "toy") -> Path:
    return env.cache / f"models--mattecli-imports--{variant}"


def assert_nothing_taken_for_weights(env, variant: str = "toy") -> None:
    """No weights a method or `weights list/path/verify` would use: no ref, no snapshot file."""
    repo = imports_repo(env, variant)
    assert not (repo / "refs" / "main").exists()
    assert not any((repo / "snapshots").glob("*/*")) if (repo / "snapshots").exists() else True
    assert weights.status(variant)[0].active is None
    with pytest.raises((WeightsNotCachedError, WeightsUnavailableError)):
        weights.local_path(variant)


# ============================================================================ Google Drive flow
def test_drive_confirmation_form_and_zip_archive(drive):
    content = official_bytes()
    link = drive.add("ID-toy", zipped(content), name="toy.zip", mode="confirm")
    drive.env.set_manifest([drive_entry("toy", link)])

    result = weights.pull("toy")

    paths = [r.path for r in drive.requests]
    assert paths[0] == "/uc?export=download&id=ID-toy"  # the link as the manifest writes it
    assert paths[1] == "/download?id=ID-toy&export=download"  # Drive's redirect
    assert paths[2].startswith("/download?id=ID-toy&export=download&confirm=t&uuid=")  # the form, submitted
    assert len(paths) == 3
    digest = hashlib.sha256(content).hexdigest()  # of the checkpoint inside the zip
    assert result.source == "Google Drive" and result.url == link
    assert result.official_sha256 == digest and result.first_download
    record = weights.trusted_source("toy")
    assert record["sha256"] == digest and record["filename"] == FILENAME and record["url"] == link
    assert_same(weights.load_model("toy"), remap_toy(official_toy_sd()))
    assert [c.ok for c in weights.verify("toy")] == [True]
    leftovers = sorted(p.name for p in (imports_repo(drive.env) / "downloads").iterdir())
    assert leftovers == []  # neither the archive nor the extracted checkpoint is kept
    assert weights.pull("toy").source == "cache"  # a second pull downloads nothing
    assert len(drive.requests) == 3


def test_pulled_file_is_the_imported_file(drive, tmp_path, monkeypatch):
    """pull through the stand-in == `weights import` of the same file, byte for byte."""
    content = official_bytes(3)
    drive.env.set_manifest([drive_entry("toy", drive.add("ID", content, name=FILENAME, mode="direct"))])
    pulled = weights.pull("toy").path.read_bytes()
    by_hand = tmp_path / FILENAME
    by_hand.write_bytes(content)
    use_fake_hub(monkeypatch, tmp_path / "other-cache")
    imported = weights.import_checkpoint("toy", by_hand)
    assert imported.path.read_bytes() == pulled


def test_quota_page_is_one_line_and_nothing_is_saved(drive):
    link = drive.add("ID-q", official_bytes(), mode="quota")
    drive.env.set_manifest([drive_entry("toy", link, baidu=True)])
    with pytest.raises(WeightsNotCachedError) as info:
        weights.pull("toy")
    assert str(info.value) == (
        f"Google Drive quota exceeded for toy: try again later, or download {FILENAME} by hand from Google Drive "
        f"{link} or Baidu Netdisk https://pan.baidu.com/s/1abc (password evik) and run "
        f"`mattecli weights import toy {FILENAME}`"
    )
    assert_nothing_taken_for_weights(drive.env)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("access", "the file is not shared publicly (the server asks to sign in or request access)"),
        ("missing", "the file does not exist there (removed, or a wrong link)"),
        ("html", "the server answered with an HTML page ('Welcome') instead of the file"),
    ],
)
def test_failure_pages_get_their_own_one_liners(drive, mode, expected):
    link = drive.add("ID-x", official_bytes(), mode=mode)
    drive.env.set_manifest([drive_entry("toy", link)])
    with pytest.raises(WeightsNotCachedError) as info:
        weights.pull("toy")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"toy weights could not be downloaded (tried Google Drive {link}: {expected}); ")
    assert message.endswith(f"and run `mattecli weights import toy {FILENAME}`")
    assert_nothing_taken_for_weights(drive.env)


def test_a_zip_without_the_file_is_refused(drive):
    link = drive.add("ID-z", zipped(b"x", member="other/thing.bin"), mode="direct")
    drive.env.set_manifest([drive_entry("toy", link)])
    with pytest.raises(WeightsNotCachedError, match=f"a zip archive without {FILENAME}"):
        weights.pull("toy")
    assert_nothing_taken_for_weights(drive.env)


def test_links_are_tried_in_order(drive):
    dead = drive.add("ID-dead", b"", mode="missing")
    good = drive.add("ID-good", official_bytes(), mode="confirm")
    drive.env.set_manifest([drive_entry("toy", dead, good)])
    result = weights.pull("toy")
    assert result.url == good
    assert [r.path.split("?")[1].split("&")[-1] for r in drive.requests[:1]] == ["id=ID-dead"]


def test_hub_copy_first_then_official_links(drive, monkeypatch):
    """A published hub copy that is gone: the official link is used, and the error would list both."""
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, drive.env.cache, hub)
        missing = {"repo_id": "org/gone", "filename": "toy.safetensors", "revision": "a" * 40, "sha256": "b" * 64, "size": 9}
        entry = drive_entry("toy", drive.add("ID", official_bytes(), mode="missing"))
        entry["hub"] = missing
        drive.env.set_manifest([entry])
        with pytest.raises(WeightsNotCachedError) as info:
            weights.pull("toy")
        message = str(info.value)
        assert message.startswith("toy weights could not be downloaded (tried hub org/gone: ")
        assert "; Google Drive http://127.0.0.1:" in message and "the file does not exist there" in message
        entry["official"]["files"][0]["links"] = [{"host": "Google Drive", "url": drive.add("ID2", official_bytes())}]
        drive.env.set_manifest([entry])
        assert weights.pull("toy").source == "Google Drive"


# ============================================================================ robust transfer
def test_a_transfer_cut_short_resumes_with_a_range_request(drive):
    content = official_bytes()
    link = drive.add("ID-r", content, mode="confirm", drop_after=len(content) // 3)
    drive.env.set_manifest([drive_entry("toy", link)])
    weights.pull("toy")
    bodies = drive.body_gets()
    assert len(bodies) == 2
    assert bodies[0].range is None and bodies[1].range == f"bytes={len(content) // 3}-"
    assert bodies[1].headers.get("if-range", "").startswith('"')  # the validator: a changed file is not spliced
    assert_same(weights.load_model("toy"), remap_toy(official_toy_sd()))


def test_a_server_without_ranges_restarts_from_zero(drive):
    content = official_bytes()
    link = drive.add("ID-n", content, mode="confirm", drop_after=100, ranges=False)
    drive.env.set_manifest([drive_entry("toy", link)])
    weights.pull("toy")
    bodies = drive.body_gets()
    assert len(bodies) == 2 and all(b.range is None for b in bodies)
    assert_same(weights.load_model("toy"), remap_toy(official_toy_sd()))


def test_a_transfer_that_keeps_failing_leaves_nothing_usable(drive):
    content = official_bytes()
    link = drive.add("ID-f", content, mode="direct", drop_after=0, drop_times=99)
    drive.env.set_manifest([drive_entry("toy", link)])
    with pytest.raises(WeightsNotCachedError, match=rf"the transfer stopped after 0 of {len(content)} bytes"):
        weights.pull("toy")
    assert len(drive.body_gets()) == 1 + len(download.RETRY_DELAYS)
    assert_nothing_taken_for_weights(drive.env)


def test_a_slow_transfer_finishes_and_the_bar_sees_every_byte(drive):
    content = official_bytes()
    link = drive.add("ID-s", content, mode="confirm", chunk=512, delay=0.002)
    drive.env.set_manifest([drive_entry("toy", link)])
    seen = {}

    class Bar:
        def __init__(self, *, total=None, initial=0, desc=None, **_):
            seen.update(total=total, initial=initial, desc=desc, done=initial, closed=False)

        def update(self, n):
            seen["done"] += n

        def close(self):
            seen["closed"] = True

    weights.pull("toy", progress=Bar)
    assert seen == {"total": len(content), "initial": 0, "desc": "toy (Google Drive)", "done": len(content), "closed": True}


def test_a_stalled_transfer_times_out_and_resumes(drive, monkeypatch):
    monkeypatch.setattr(download, "TIMEOUT", 0.3)
    content = official_bytes()
    link = drive.add("ID-t", content, mode="direct", chunk=len(content) // 2, delay=1.0)
    drive.env.set_manifest([drive_entry("toy", link)])
    weights.pull("toy")  # first half, then silence past the timeout; the resume gets the rest
    bodies = drive.body_gets()
    assert bodies[0].range is None and bodies[1].range == f"bytes={len(content) // 2}-"
    assert_same(weights.load_model("toy"), remap_toy(official_toy_sd()))


def test_manifest_size_is_checked(drive):
    entry = drive_entry("toy", drive.add("ID", official_bytes(), mode="direct"))
    entry["official"]["files"][0]["size"] = 10
    drive.env.set_manifest([entry])
    with pytest.raises(WeightsNotCachedError, match="bytes where the manifest expects 10"):
        weights.pull("toy")
    assert_nothing_taken_for_weights(drive.env)


# ============================================================================ checksums
def test_pinned_sha256_refuses_a_tampered_file(drive):
    good = official_bytes()
    tampered = official_bytes(seed=9)
    url = drive.add_plain("toy.ckpt", tampered)
    drive.env.set_manifest([drive_entry("toy", url, sha256=hashlib.sha256(good).hexdigest())])
    with pytest.raises(ChecksumMismatchError) as info:
        weights.pull("toy")
    assert f"has sha256 {hashlib.sha256(tampered).hexdigest()}, but the manifest says" in str(info.value)
    assert_nothing_taken_for_weights(drive.env)
    drive.plain["toy.ckpt"].content = good
    result = weights.pull("toy")
    assert result.official_sha256 == hashlib.sha256(good).hexdigest() and not result.first_download
    assert weights.trusted_source("toy") is None  # the manifest's pin is the reference, nothing recorded


def test_trust_on_first_use(drive, tmp_path):
    first = official_bytes(0)
    link = drive.add("ID", first, mode="confirm")
    drive.env.set_manifest([drive_entry("toy", link)])
    assert weights.pull("toy").first_download
    drive.files["ID"].content = official_bytes(1)  # the file behind the link changes
    with pytest.raises(ChecksumMismatchError) as info:
        weights.pull("toy", force=True)
    assert "but the first download" in str(info.value) and "official_sha256.json" in info.value.hint
    assert_same(weights.load_model("toy"), remap_toy(official_toy_sd(0)))  # the first file is still in use
    # a file imported by hand that is not the one first downloaded fails verification
    other = tmp_path / FILENAME
    other.write_bytes(official_bytes(2))
    weights.import_checkpoint("toy", other)
    [copy] = weights.verify("toy")
    assert copy.ok is False and "not the official one" in copy.problem


# ============================================================================ offline, first use
def test_offline_names_pull_and_import_and_asks_nothing(drive, monkeypatch):
    drive.env.set_manifest([drive_entry("toy", drive.add("ID", official_bytes()))])
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsNotCachedError) as info:
        weights.load_model("toy")
    assert str(info.value).startswith(
        "toy weights are not downloaded yet and downloads are off (HF_HUB_OFFLINE is set); "
        "run `mattecli weights pull toy`, or download toy_best.pth by hand"
    )
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(WeightsNotCachedError, match=r"\(--no-download\)"):
        weights.prefetch(["toy"], download=False)
    assert drive.requests == []


def test_prefetch_names_every_missing_file_offline(drive, monkeypatch):
    drive.env.set_manifest([drive_entry("toy", drive.add("A", b"")), drive_entry("toy-other", drive.add("B", b""))])
    with pytest.raises(WeightsNotCachedError) as info:
        weights.prefetch(["toy", "toy-other"], download=False)
    assert str(info.value).startswith("toy, toy-other weights are not downloaded yet and downloads are off")
    assert "run `mattecli weights pull toy toy-other`" in str(info.value)


def _subprocess_env(drive, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MATTECLI_"))}
    env.update(HF_HOME=str(home), MATTECLI_MANIFEST=str(drive.env.manifest), PYTHONPATH=f"{REPO / 'tests'}:{REPO}")
    return env


_PULL = (
    "import sys, test_weights as t\n"
    "from mattecli import weights\n"
    "from mattecli.weights import download\n"
    "download.RETRY_DELAYS = (0.0, 0.0, 0.0)\n"
    "weights.register_architecture('toy', build=t.ToyNet, remap=t.remap_toy, detect=t.is_official_toy, replace=True)\n"
    "r = weights.pull('toy')\n"
    "print(r.source, r.path)\n"
)


def test_two_processes_pulling_at_once_download_once(drive, tmp_path):
    content = official_bytes()
    drive.env.set_manifest([drive_entry("toy", drive.add("ID", content, mode="confirm", chunk=256, delay=0.003))])
    home = tmp_path / "home"
    procs = [
        subprocess.Popen([sys.executable, "-c", _PULL], env=_subprocess_env(drive, home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    sources = sorted(out.split()[0] for out, _ in outs)
    assert sources == ["Google", "cache"]  # one downloaded ("Google Drive ..."), the other found its result
    assert len({out.split()[-1] for out, _ in outs}) == 1
    assert len(drive.body_gets()) == 1
    snapshots = list((home / "hub" / "models--mattecli-imports--toy" / "snapshots").iterdir())
    assert len(snapshots) == 1


def test_a_killed_download_leaves_no_weights_and_the_next_one_resumes(drive, tmp_path):
    content = official_bytes()
    drive.env.set_manifest([drive_entry("toy", drive.add("ID", content, mode="confirm", chunk=64, delay=0.05))])
    home = tmp_path / "home"
    penv = _subprocess_env(drive, home)
    proc = subprocess.Popen([sys.executable, "-c", _PULL], env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    downloads = home / "hub" / "models--mattecli-imports--toy" / "downloads"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        parts = list(downloads.glob("*.part")) if downloads.exists() else []
        if parts and parts[0].stat().st_size > len(content) // 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    got = parts[0].stat().st_size
    assert 0 < got < len(content)
    listing = subprocess.run(
        [sys.executable, "-m", "mattecli", "weights", "list", "--json"], env=penv, capture_output=True, text=True
    )
    toy = next(json.loads(line) for line in listing.stdout.splitlines() if '"toy"' in line)
    assert toy["state"] == "missing" and toy["path"] is None  # the .part file is not weights
    for f in drive.files.values():
        f.delay = 0.0
    again = subprocess.run([sys.executable, "-c", _PULL], env=penv, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    resumed = drive.body_gets()[-1]
    assert resumed.range is not None and int(resumed.range[len("bytes=") : -1]) >= got


# ============================================================================ CLI
@pytest.fixture
def app():
    from mattecli.cli import app as real

    return real


def test_cli_pull_prints_the_recorded_sha256_and_list_shows_the_source(drive, app):
    content = official_bytes()
    drive.env.set_manifest([drive_entry("toy", drive.add("ID", zipped(content)), baidu=True)])
    runner = CliRunner()
    listing = runner.invoke(app, ["weights", "list", "--json"])
    toy = next(json.loads(line) for line in listing.stdout.splitlines() if '"toy"' in line)
    assert toy["state"] == "missing" and toy["origin"] == "Google Drive" and toy["downloadable"]
    result = runner.invoke(app, ["weights", "pull", "toy"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    text = " ".join(result.stderr.split())
    assert "pulled toy from Google Drive: " in text
    assert f"sha256 of the downloaded official file: {hashlib.sha256(content).hexdigest()}" in text
    result = runner.invoke(app, ["weights", "verify", "toy", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True


def test_cli_pull_quota_is_one_line_with_exit_2(drive, app):
    link = drive.add("ID", b"", mode="quota")
    drive.env.set_manifest([drive_entry("toy", link)])
    result = CliRunner().invoke(app, ["weights", "pull", "toy"])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == (
        f"error: Google Drive quota exceeded for toy: try again later, or download {FILENAME} by hand from "
        f"Google Drive {link} and run `mattecli weights import toy {FILENAME}`"
    )
    assert len(lines) == 2 and lines[1].startswith("hint: ") and "Traceback" not in result.output


def test_cli_pull_several_and_method_names(drive, app):
    drive.env.set_manifest([drive_entry("toy", drive.add("A", official_bytes()))])
    result = CliRunner().invoke(app, ["weights", "pull", "toy", "toy-other"])
    assert result.exit_code == 1  # toy pulled; toy-other has nothing to download: reported
    assert "pulled toy from Google Drive" in " ".join(result.stderr.split())
    assert "error: toy-other weights are not imported and cannot be downloaded automatically" in result.stderr


def test_cache_location_that_is_a_file_is_one_line(drive, app, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(blocker / "hub"))
    drive.env.set_manifest([drive_entry("toy", drive.add("A", official_bytes()))])
    result = CliRunner().invoke(app, ["weights", "pull", "toy"])
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: cannot write toy weights into the Hugging Face cache ")
    assert "Traceback" not in result.output and len(lines) <= 2


def test_threads_pulling_at_once_in_one_process(drive):
    drive.env.set_manifest([drive_entry("toy", drive.add("ID", official_bytes(), chunk=256, delay=0.002))])
    results, errors = [], []

    def go():
        try:
            results.append(weights.pull("toy"))
        except Exception as err:  # noqa: BLE001 - collected for the assertion
            errors.append(err)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and sorted(r.source for r in results) == ["Google Drive", "cache"]
    assert len(drive.body_gets()) == 1
