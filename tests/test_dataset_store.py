"""Benchmark datasets by name: the datasets manifest, default folders, completeness, Hub downloads, the CLI.

Downloads go to :class:`hub_server.FakeHub` on 127.0.0.1, which serves a tiny AIM-500-like dataset
repository in the published layout (one parquet shard with ``image`` / ``mask`` image cells and
``image_name`` / ``type`` / ``category`` columns). The default dataset folder, the HF cache and the
manifest all live under ``tmp_path``.
"""

from __future__ import annotations

import io as _io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import typer
from hub_server import FakeHub, use_fake_hub
from PIL import Image
from typer.testing import CliRunner

from mattecli import constants, io, methods
from mattecli.benchmark import download, metrics
from mattecli.benchmark import manifest as dataset_manifest
from mattecli.benchmark import store as dataset_store
from mattecli.errors import DatasetError, ManifestError
from mattecli.methods.base import Capabilities, MethodSpec, Prediction

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "nobg/AIM-500"
SHARD = "data/test-00000-of-00001.parquet"
N = 4  # images in the test repository


# ----------------------------------------------------------------------------- builders
def _encode(arr: np.ndarray, fmt: str) -> bytes:
    buf = _io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def make_rows(n: int = N, seed: int = 0) -> list[dict]:
    """AIM-500-like rows: JPEG photo, 8-bit PNG alpha, name, type and category."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image = rng.integers(0, 256, (10 + i, 14, 3), dtype=np.uint8)
        alpha = rng.integers(0, 256, (10 + i, 14), dtype=np.uint8)
        alpha[:, :3] = 0
        alpha[:, -3:] = 255
        rows.append(
            {
                "image": {"bytes": _encode(image, "JPEG"), "path": f"o_{i:04d}.jpg"},
                "mask": {"bytes": _encode(alpha, "PNG"), "path": None},
                "image_name": f"o_{i:04d}",
                "type": ("SO", "STM", "NS")[i % 3],
                "category": ("animal", "plant")[i % 2],
            }
        )
    return rows


def parquet_bytes(rows: list[dict]) -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buf = _io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, row_group_size=3)
    return buf.getvalue()


def write_manifest(path: Path, *, revision: str | None, images: int = N, files=("*.parquet",), **hub_changes) -> Path:
    """The repository manifest with its aim500 entry pointed at the test repository."""
    data = json.loads((REPO / "datasets_manifest.json").read_text())
    for entry in data["datasets"]:
        if entry["name"] == "aim500":
            entry["size"]["images"] = images
            entry["hub"].update({"revision": revision, "files": list(files), **hub_changes})
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty default dataset folder, an empty HF cache, downloads allowed, the real manifest."""
    monkeypatch.setenv(dataset_store.ENV_DATASETS, str(tmp_path / "datasets"))
    monkeypatch.delenv(dataset_manifest.ENV_MANIFEST, raising=False)
    monkeypatch.delenv("MATTECLI_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "MATTECLI_OFFLINE", False)
    use_fake_hub(monkeypatch, tmp_path / "hf" / "hub")
    return tmp_path


@pytest.fixture
def hub(env, monkeypatch):
    """A running FakeHub with the test repository; the manifest pins its commit."""
    with FakeHub() as server:
        server.commit = server.add_dataset(REPO_ID, {SHARD: parquet_bytes(make_rows()), "README.md": b"card"})
        use_fake_hub(monkeypatch, env / "hf" / "hub", server)
        manifest = write_manifest(env / "manifest.json", revision=server.commit)
        monkeypatch.setenv(dataset_manifest.ENV_MANIFEST, str(manifest))
        yield server


class MeanMatter:
    """A fast trimap-free 'method' (its processor): the image's mean channel."""

    def process(self, image: np.ndarray, trimap: np.ndarray | None, *, extras: bool = False) -> Prediction:
        return Prediction(image.mean(axis=2).astype(np.float32))


@pytest.fixture
def mean_method(monkeypatch):
    real_get = methods.get
    spec = MethodSpec(name="mean", summary="test double", paper="-", capabilities=Capabilities(),
                      load=lambda resolved: MeanMatter())  # fmt: skip
    monkeypatch.setattr(methods, "get", lambda name: spec if name == "mean" else real_get(name))


def run_cli(*args):
    from mattecli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- manifest
def test_repository_manifest_is_valid_and_honest():
    from mattecli.benchmark.datasets import DATASETS

    manifest = dataset_manifest.load_manifest(REPO / "datasets_manifest.json")
    assert set(manifest.names()) == set(DATASETS) - {"folder"}
    sizes = {name: e.size.images for name, e in manifest.entries.items()}
    assert sizes == {"comp1k": 1000, "dist646": 1000, "aim500": 500, "am2k": 200, "simd": 890}
    comp1k = manifest.get("comp1k")
    assert (comp1k.size.foregrounds, comp1k.size.backgrounds) == (50, 1000)
    for entry in manifest.entries.values():
        if entry.official.access == "request":
            assert entry.hub is None, entry.name  # never mirrored
    aim = manifest.get("aim500").hub
    assert aim.repo_id == REPO_ID and aim.license == "mit" and aim.format == "parquet"
    # no commit was checked: none is pinned (never invented), and the note says so
    assert aim.revision is None and "no commit" in aim.revision_note
    # the packaged copy is the same file
    assert (REPO / "mattecli" / "datasets_manifest.json").resolve() == (REPO / "datasets_manifest.json").resolve()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"datasets_manifest.json"' in pyproject


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda e: e["hub"].update(revision="main"), "field 'revision' has an invalid value"),
        (lambda e: e["hub"].update(revison="0" * 40), "field 'revison' is not a known field"),
        (lambda e: e["hub"]["unpack"].update(image=".."), "field 'image'"),
        (lambda e: e["hub"]["unpack"].update(image="a/b"), "field 'image' has an invalid value"),
        (lambda e: e["official"].update(access="email"), "field 'access' must be one of public, request"),
        (lambda e: e["size"].update(images=0), "field 'images' must be positive"),
        (lambda e: e.update(name="coco"), "field 'name' is not a dataset mattecli can load"),
        (lambda e: e["hub"].pop("revision_note"), "field 'revision_note' is missing"),
    ],
)
def test_manifest_errors_name_the_entry_and_field(tmp_path, change, expected):
    data = json.loads((REPO / "datasets_manifest.json").read_text())
    change(next(e for e in data["datasets"] if e["name"] == "aim500"))
    with pytest.raises(ManifestError) as err:
        dataset_manifest.parse_manifest(data)
    assert expected in str(err.value) and "datasets[2]" in str(err.value)


def test_default_location_and_manifest_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(dataset_store.ENV_DATASETS, raising=False)
    assert dataset_store.location("aim500") == constants.MATTECLI_HOME / "datasets" / "aim500"
    monkeypatch.setenv(dataset_store.ENV_DATASETS, str(tmp_path / "sets"))
    assert dataset_store.location("comp1k") == tmp_path / "sets" / "comp1k"
    manifest = write_manifest(tmp_path / "m.json", revision="a" * 40)
    monkeypatch.setenv(dataset_manifest.ENV_MANIFEST, str(manifest))
    assert dataset_manifest.get_entry("aim500").hub.revision == "a" * 40
    with pytest.raises(DatasetError, match="not in m.json; known datasets: comp1k"):
        dataset_manifest.get_entry("folder")


# ----------------------------------------------------------------------------- status
def _aim_folder(root: Path, n: int, *, drop_alpha: int | None = None) -> Path:
    for i, row in enumerate(make_rows(n)):
        io.atomic_write_bytes(root / "original" / f"{row['image_name']}.jpg", row["image"]["bytes"])
        if i != drop_alpha:
            io.atomic_write_bytes(root / "mask" / f"{row['image_name']}.png", row["mask"]["bytes"])
    return root


def test_status_counts_against_the_published_size(env, monkeypatch):
    monkeypatch.setenv(dataset_manifest.ENV_MANIFEST, str(write_manifest(env / "m.json", revision=None)))
    st = dataset_store.check("aim500")
    assert (st.state, st.counts(), st.path) == ("missing", f"0/{N}", env / "datasets" / "aim500")
    _aim_folder(dataset_store.location("aim500"), N - 1)
    st = dataset_store.check("aim500")
    assert (st.state, st.found, st.expected, st.layout) == ("incomplete", N - 1, N, "original")
    assert st.problem == f"{N - 1} of {N} images"
    # one alpha missing: the loader's message, no count to score
    _aim_folder(dataset_store.location("aim500"), N, drop_alpha=1)
    (dataset_store.location("aim500") / "mask" / "o_0001.png").unlink()
    st = dataset_store.check("aim500")
    assert st.state == "incomplete" and st.found is None and "1 of 4 images have no alpha" in st.problem
    io.atomic_write_bytes(dataset_store.location("aim500") / "mask" / "o_0001.png", make_rows()[1]["mask"]["bytes"])
    st = dataset_store.check("aim500")
    assert st.complete and st.counts() == "4/4" and st.how_to_get() == "in place"
    assert [s.name for s in dataset_store.status()] == ["comp1k", "dist646", "aim500", "am2k", "simd"]


# ----------------------------------------------------------------------------- first use, offline, cache
def test_first_use_fetches_unpacks_and_scores_then_uses_the_cache(hub, env, mean_method, monkeypatch):
    report_path = env / "report.json"
    first = run_cli("bench", "--dataset", "aim500", "--method", "mean", "--report", report_path)
    assert first.exit_code == 0, first.stderr
    assert first.stdout == ""  # progress and tables on stderr only
    folder = env / "datasets" / "aim500"
    assert sorted(p.name for p in (folder / "original").iterdir()) == [f"o_{i:04d}.jpg" for i in range(N)]
    assert sorted(p.name for p in (folder / "mask").iterdir()) == [f"o_{i:04d}.png" for i in range(N)]
    groups = json.loads((folder / "aim_category_type.json").read_text())
    assert groups["o_0001"] == {"type": "STM", "category": "plant"}
    marker = json.loads((folder / dataset_store.MARKER).read_text())
    assert marker["repo_id"] == REPO_ID and marker["revision"] == hub.commit and marker["license"] == "mit"
    assert marker["files"] == [
        {"path": SHARD, "size": len(hub.repos[f"datasets/{REPO_ID}"]["commits"][hub.commit][SHARD])}
    ]
    assert sorted(p.name for p in folder.parent.iterdir()) == [".aim500.lock", "aim500"]  # no partial folder
    # the bytes are the published ones (no re-encoding) and the scores are the direct ones
    rows = make_rows()
    assert (folder / "original" / "o_0002.jpg").read_bytes() == rows[2]["image"]["bytes"]
    report = json.loads(report_path.read_text())
    ds = report["dataset"]
    assert (ds["found"], ds["expected"], ds["complete"]) == (N, N, True)
    assert ds["source"]["repo_id"] == REPO_ID and ds["source"]["revision"] == hub.commit
    assert ds["metric_mode"] == "whole" and set(report["groups"]) == {"type", "category"}
    row = next(r for r in report["rows"] if r["name"] == "o_0002")
    pred = io.to_uint(MeanMatter().process(io.read_image(folder / "original" / "o_0002.jpg"), None).alpha, 8)
    gt = io.read_gray(folder / "mask" / "o_0002.png")
    direct = metrics.evaluate(pred, np.round(gt * 255).astype(np.uint8), None, mode="whole")
    assert row["metrics"]["sad"] == pytest.approx(direct["sad"], abs=1e-9)
    assert "nobg/AIM-500@" in first.stderr

    # second run: nothing is requested from the hub (it is even stopped)
    seen = len(hub.requests)
    hub.stop()
    second = run_cli("bench", "--dataset", "aim500", "--method", "mean", "--json", "--quiet")
    assert second.exit_code == 0, second.stderr
    assert len(hub.requests) == seen and second.stderr == ""
    assert json.loads(second.stdout)["summary"] == report["summary"]


def test_offline_without_the_dataset_fails_with_one_line(hub, env, mean_method, monkeypatch):
    no_download = run_cli("bench", "--dataset", "aim500", "--method", "mean", "--no-download")
    assert no_download.exit_code == 2
    assert error_lines(no_download) == [
        f"error: AIM-500 (aim500) is not in {env / 'datasets' / 'aim500'} and downloads are off (--no-download); "
        "run `mattecli bench download aim500` while online, or pass --root DIR"
    ]
    use_fake_hub(monkeypatch, env / "hf" / "hub", hub, offline=True)
    offline = run_cli("bench", "--dataset", "aim500", "--method", "mean")
    assert offline.exit_code == 2 and len(error_lines(offline)) == 1
    assert "HF_HUB_OFFLINE" in offline.stderr and "`mattecli bench download aim500`" in offline.stderr
    download = run_cli("bench", "download", "aim500")
    assert download.exit_code == 2 and len(error_lines(download)) == 1 and "downloads are off" in download.stderr
    assert hub.gets() == [] and not (env / "datasets" / "aim500").exists()


def test_incomplete_default_dataset_is_refused_with_the_count(hub, env, mean_method):
    _aim_folder(env / "datasets" / "aim500", N - 1)
    refused = run_cli("bench", "--dataset", "aim500", "--method", "mean")
    assert refused.exit_code == 2 and len(error_lines(refused)) == 1
    assert f"is incomplete: {N - 1} of {N} images" in refused.stderr and "--allow-incomplete" in refused.stderr
    allowed = run_cli("bench", "--dataset", "aim500", "--method", "mean", "--allow-incomplete", "--json")
    assert allowed.exit_code == 0, allowed.stderr
    report = json.loads(allowed.stdout)
    assert report["summary"]["count"] == N - 1 and report["dataset"]["complete"] is False
    assert "scoring what is there" in allowed.stderr and f"{N - 1} of the {N} AIM-500 test images" in allowed.stderr
    # a folder mattecli did not make is never replaced by a download
    download = run_cli("bench", "download", "aim500")
    assert download.exit_code == 2 and "mattecli did not download" in download.stderr
    assert hub.gets() == []


def test_partial_root_dataset_is_scored_with_a_note(env, mean_method, tmp_path):
    root = _aim_folder(tmp_path / "mine", 2)
    result = run_cli("bench", "--dataset", "aim500", "--root", root, "--method", "mean")
    assert result.exit_code == 0, result.stderr
    assert "note:" in result.stderr and "2 of the 500 AIM-500 test images" in result.stderr


def test_request_only_and_manual_sets_explain_where_to_get_them(env):
    comp1k = run_cli("bench", "--dataset", "comp1k", "--method", "cf")
    assert comp1k.exit_code == 2
    [line] = error_lines(comp1k)
    folder = env / "datasets" / "comp1k"
    assert line.startswith(f"error: Composition-1k is not in {folder} and cannot be downloaded")
    for part in (
        "https://sites.google.com/view/deepimagematting",
        "Combined_Dataset/Test_set/",
        "merged/ + alpha_copy/ + trimaps/",
        "PASCAL VOC 2012",
        str(folder / "VOCdevkit/VOC2012/JPEGImages"),
    ):
        assert part in line, part  # fmt: skip
    d646 = run_cli("bench", "download", "dist646")
    assert d646.exit_code == 2 and len(error_lines(d646)) == 1
    assert "github.com/yuhaoliu7456/CVPR2020-HAttMatting" in d646.stderr and "Test/merged/" in d646.stderr
    am2k = run_cli("bench", "--dataset", "am2k", "--method", "cf")
    assert am2k.exit_code == 2 and "github.com/JizhiziLi/GFM" in am2k.stderr and "validation/original/" in am2k.stderr
    # the real manifest pins no AIM-500 commit but has a Hub copy: offline, the line names the download
    aim = run_cli("bench", "--dataset", "aim500", "--method", "cf", "--no-download")
    assert aim.exit_code == 2 and len(error_lines(aim)) == 1
    assert "`mattecli bench download aim500`" in aim.stderr
    folder_ds = run_cli("bench", "--dataset", "folder", "--method", "cf")
    assert folder_ds.exit_code == 2 and "--root" in folder_ds.stderr


# ----------------------------------------------------------------------------- bench download
def test_download_command_revision_force_and_json(env, monkeypatch):
    with FakeHub() as server:
        commit = server.add_dataset(REPO_ID, {SHARD: parquet_bytes(make_rows())})
        use_fake_hub(monkeypatch, env / "hf" / "hub", server)
        monkeypatch.setenv(dataset_manifest.ENV_MANIFEST, str(write_manifest(env / "m.json", revision=None)))
        # no revision pinned and none given: the commit 'main' resolves to, recorded as such
        result = run_cli("bench", "download", "aim500", "--json")
        assert result.exit_code == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["source"]["revision"] == commit and status["source"]["requested_revision"] == "main"
        shutil.rmtree(dataset_store.location("aim500"))
        result = run_cli("bench", "download", "aim500", "--revision", "main", "--json")
        assert result.exit_code == 0, result.stderr
        status = json.loads(result.stdout)
        assert status["state"] == "complete" and status["found"] == N
        assert status["source"]["revision"] == commit and status["source"]["requested_revision"] == "main"
        assert "downloaded" in result.stderr and commit[:12] in result.stderr
        again = run_cli("bench", "download", "aim500", "--revision", "main")
        assert again.exit_code == 0 and "already complete" in again.stderr
        gets = len(server.gets(SHARD))
        forced = run_cli("bench", "download", "aim500", "--revision", commit, "--force", "--quiet")
        assert forced.exit_code == 0 and forced.stderr == ""
        assert len(server.gets(SHARD)) == gets  # the parquet itself comes from the HF cache
        listed = run_cli("bench", "datasets", "--json")
        rows = {r["name"]: r for r in map(json.loads, listed.stdout.splitlines())}
        assert rows["aim500"]["state"] == "complete" and rows["aim500"]["source"]["revision"] == commit
        bad = run_cli("bench", "download", "aim500", "--revision", "f" * 40)
        assert bad.exit_code == 0  # complete already: nothing to do without --force
        bad = run_cli("bench", "download", "aim500", "--revision", "f" * 40, "--force")
        assert bad.exit_code == 2 and len(error_lines(bad)) == 1 and "RevisionNotFound" in bad.stderr
        assert dataset_store.check("aim500").complete  # the previous copy is untouched


def test_failed_unpack_installs_nothing(hub, env, monkeypatch):
    # the hub copy holds another number of rows than the published size
    monkeypatch.setenv(
        dataset_manifest.ENV_MANIFEST, str(write_manifest(env / "m.json", revision=hub.commit, images=5))
    )
    with pytest.raises(DatasetError, match="holds 4 rows but AIM-500 has 5 test images; nothing was installed"):
        download.fetch("aim500")
    # a column the manifest names is not in the parquet file
    broken = {"name": "image_name", "image": "picture", "alpha": "mask", "trimap": None,
              "groups": {"type": "type"}}  # fmt: skip
    monkeypatch.setenv(
        dataset_manifest.ENV_MANIFEST, str(write_manifest(env / "m2.json", revision=hub.commit, columns=broken))
    )
    with pytest.raises(DatasetError, match="no column 'picture'; it has image, mask"):
        download.fetch("aim500")
    monkeypatch.setenv(
        dataset_manifest.ENV_MANIFEST, str(write_manifest(env / "m3.json", revision=hub.commit, files=["*.arrow"]))
    )
    with pytest.raises(DatasetError, match=r"no file of nobg/AIM-500@\w+ matches \*\.arrow"):
        download.fetch("aim500")
    root = env / "datasets"
    assert [p.name for p in root.iterdir()] == [".aim500.lock"]  # no dataset, no partial folder


def test_without_pyarrow_the_error_names_the_extra(hub, env, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails
    result = run_cli("bench", "download", "aim500")
    assert result.exit_code == 2
    assert error_lines(result) == [
        "error: reading the Hub's parquet copy of a dataset needs pyarrow: pip install 'mattecli[datasets]'"
    ]
    assert hub.gets() == []  # checked before downloading anything


def test_two_processes_do_not_unpack_over_each_other(hub, env):
    results: list = []

    def worker() -> None:
        results.append(download.fetch("aim500")[1])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]  # one fetched, the other found it complete under the lock
    assert dataset_store.check("aim500").complete


def test_bench_datasets_table_on_stderr(env):
    result = run_cli("bench", "datasets")
    assert result.exit_code == 0 and result.stdout == ""
    for part in (
        "comp1k",
        "Composition-1k",
        "Adobe DIM licence",
        "0/1000",
        "aim500",
        "0/500",
        "missing",
        "request at",
        "am2k",
        "0/200",
        "simd",
        "0/890",
        "dist646",
    ):
        assert part in result.stderr, part  # fmt: skip
    assert f"put original/ + mask/ [+ trimap/] + aim_category_type.json in {env / 'datasets' / 'aim500'}" in (
        result.stderr.replace("\n", " ")
    )


def test_bench_datasets_runs_as_an_installed_command(env, tmp_path):
    """The real entry point (a subprocess): `bench` is a group whose subcommands work."""
    environ = dict(os.environ, MATTECLI_DATASETS=str(tmp_path / "sets"), MATTECLI_OFFLINE="1")
    environ.pop(dataset_manifest.ENV_MANIFEST, None)
    done = subprocess.run(
        [sys.executable, "-m", "mattecli", "bench", "datasets", "--json"],
        capture_output=True, text=True, env=environ, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["comp1k", "dist646", "aim500", "am2k", "simd"]
    assert rows[2]["hub"] == {"repo_id": REPO_ID, "revision": None, "license": "mit"}
    assert rows[0]["path"] == str(tmp_path / "sets" / "comp1k") and rows[0]["access"] == "request"


def test_bench_group_keeps_the_plain_command_and_help(env):
    app = typer.Typer()
    from mattecli.cli.bench import app as bench_app

    app.add_typer(bench_app, name="bench")
    helped = CliRunner().invoke(app, ["bench", "--help"])
    assert helped.exit_code == 0 and "datasets" in helped.stdout and "download" in helped.stdout
    assert "--allow-incomplete" in helped.stdout and "--no-download" in helped.stdout
    nothing = CliRunner().invoke(app, ["bench"])
    assert nothing.exit_code == 2 and "give --dataset" in nothing.stderr
