"""bench: reports equal metrics computed directly, predictions mode, resume, merge, and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from test_datasets import _write_triplets, build_mini_comp1k
from typer.testing import CliRunner

from mattecli import __version__, io, methods
from mattecli.benchmark import metrics, reports
from mattecli.benchmark.datasets import load_dataset
from mattecli.benchmark.row_cache import cache_path_for
from mattecli.benchmark.run import run_bench
from mattecli.benchmark.settings import BenchSettings
from mattecli.errors import DatasetError, UsageError
from mattecli.methods.base import Capabilities, MethodOptions, MethodSpec, Prediction


@pytest.fixture(scope="module")
def comp1k(tmp_path_factory) -> Path:
    """A miniature official Composition-1k tree (2 fg x 20 bg, 24x30 images)."""
    root = tmp_path_factory.mktemp("comp1k")
    build_mini_comp1k(root, fg_size=(24, 30))
    return root


class CountingMatter:
    """A fast deterministic trimap-based 'method' (its processor) that counts its calls."""

    calls = 0

    def process(self, image: np.ndarray, trimap: np.ndarray | None, *, extras: bool = False) -> Prediction:
        CountingMatter.calls += 1
        assert trimap is not None and set(np.unique(trimap)) <= {0, 128, 255}
        return Prediction(np.clip(image.mean(axis=2) * 1.3 - 0.1, 0, 1).astype(np.float32))


@pytest.fixture
def counting(monkeypatch):
    """Make methods.get('counting') return the counting method (the registry itself is untouched)."""
    real_get = methods.get
    spec = MethodSpec(
        name="counting",
        summary="test double",
        paper="-",
        capabilities=Capabilities(needs_trimap=True),
        load=lambda resolved: CountingMatter(),
    )
    monkeypatch.setattr(methods, "get", lambda name: spec if name == "counting" else real_get(name))
    CountingMatter.calls = 0
    return CountingMatter


def direct_metrics(sample, predict, *, exact=True, clamp=True, grad_norm="minmax", mode="unknown"):
    """Score one sample without bench: predict, clamp, round to 8 bit, evaluate."""
    image = sample.load_image()
    gt = sample.load_alpha()
    metric_tri, model_tri = sample.load_trimap(exact=exact)
    alpha = np.asarray(predict(image, model_tri), dtype=np.float64)
    if clamp:
        alpha[model_tri == 0] = 0
        alpha[model_tri == 255] = 1
    pred = np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8)
    return pred, metrics.evaluate(pred, gt, metric_tri, mode=mode, grad_norm=grad_norm)


# ----------------------------------------------------------------------------- library
def test_cf_report_equals_metrics_computed_directly(comp1k, tmp_path):
    settings = BenchSettings(
        dataset="comp1k", root=str(comp1k), method="cf", options=MethodOptions(device="cpu"), limit=3,
        save_predictions=str(tmp_path / "pred"),
    )  # fmt: skip
    report = run_bench(settings)
    assert report["format"] == reports.REPORT_FORMAT
    assert report["tool"] == {"name": "mattecli", "version": __version__}
    assert report["method"] == "cf" and report["weights_sha256"] is None and report["device"] == "cpu"
    assert report["settings"]["grad_norm"] == "minmax" and report["settings"]["clamp_known"] is True
    assert report["dataset"]["name"] == "comp1k" and report["dataset"]["evaluated"] == 3
    assert not report["failures"]
    assert {p["label"] for p in report["published"]} == {"MSIA paper, Table 1", "SIM paper, Table 2"}

    ds = load_dataset("comp1k", comp1k, limit=3)
    matter = methods.get("cf").create(MethodOptions(device="cpu"))
    rows = {r["name"]: r for r in report["rows"]}
    assert list(rows) == [s.name for s in ds]
    for sample in ds:
        pred, expected = direct_metrics(sample, lambda image, trimap: matter.predict(image, trimap).alpha)
        assert rows[sample.name]["metrics"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        saved = cv2.imread(str(tmp_path / "pred" / f"{sample.name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(saved, pred)
        assert rows[sample.name]["megapixels"] == pytest.approx(24 * 30 / 1e6)
    for key in ("sad", "mse", "mad", "grad", "conn"):
        mean = np.mean([rows[n]["metrics"][key] for n in rows])
        assert report["summary"]["metrics"][key] == pytest.approx(mean, rel=1e-12)
    speed = report["speed"]
    assert speed["images"] == 3 and speed["model_seconds"] > 0
    assert speed["seconds_per_megapixel"] == pytest.approx(speed["model_seconds"] / speed["megapixels"])
    assert report["memory"]["peak_rss_bytes"] > 0 and report["memory"]["cuda_peak_bytes"] is None
    json.dumps(report, allow_nan=False)  # serialisable, no NaN

    # the saved predictions score the same in predictions mode (any tool's output)
    again = run_bench(BenchSettings(dataset="comp1k", root=str(comp1k), predictions=str(tmp_path / "pred"), limit=3))
    assert again["source"] == "predictions" and again["method"] is None
    assert [r["metrics"] for r in again["rows"]] == [r["metrics"] for r in report["rows"]]


def test_predictions_mode_scores_a_folder_by_stem(tmp_path):
    root = tmp_path / "AIM-500"
    names = ["a1", "a2", "b1", "b2"]
    _write_triplets(root, names, image="original", alpha="mask", trimap="trimap", size=(12, 14))
    (root / "aim_category_type.json").write_text(
        json.dumps({n: {"type": "SO" if n[0] == "a" else "NS", "category": "animal"} for n in names})
    )
    preds = tmp_path / "preds"
    rng = np.random.default_rng(0)
    made = {}
    for i, n in enumerate(names):
        p = rng.integers(0, 256, (12, 14), dtype=np.uint8)
        made[n] = p
        # AIM's test script writes <type>/<name>.png; another tool might write JPEG-free 16-bit: both fine
        target = preds / ("SO" if n[0] == "a" else "NS") / f"{n}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if i == 3:
            cv2.imwrite(str(target), p.astype(np.uint16) * 257)
        else:
            cv2.imwrite(str(target), p)
    report = run_bench(BenchSettings(dataset="aim500", root=str(root), predictions=str(preds)))
    assert report["dataset"]["metric_mode"] == "whole"
    ds = load_dataset("aim500", root)
    for row, sample in zip(report["rows"], ds, strict=True):
        tri = sample.load_trimap(exact=True)[0]
        expected = metrics.evaluate(made[sample.name], sample.load_alpha(), tri, mode="whole")
        assert row["metrics"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert "sad_trans" in row["metrics"]
    so = [r["metrics"]["sad"] for r in report["rows"] if r["groups"]["type"] == "SO"]
    assert report["groups"]["type"]["SO"]["metrics"]["sad"] == pytest.approx(np.mean(so))
    assert report["groups"]["type"]["SO"]["count"] == 2
    assert report["groups"]["category"]["animal"]["count"] == 4

    # a missing prediction fails that image only
    (preds / "NS" / "b2.png").unlink()
    partial = run_bench(BenchSettings(dataset="aim500", root=str(root), predictions=str(preds)))
    assert [f["name"] for f in partial["failures"]] == ["b2"]
    assert "no prediction named b2" in partial["failures"][0]["error"]
    assert partial["summary"]["count"] == 3


def test_resume_reuses_cached_rows(comp1k, tmp_path, counting):
    cache = cache_path_for(tmp_path / "out.json")
    assert cache.name == "out.rows.jsonl"
    settings = BenchSettings(dataset="comp1k", root=str(comp1k), method="counting", limit=6)

    class Killed(Exception):
        pass

    def kill_after_two(row, done, total):
        if done == 2:
            raise Killed

    with pytest.raises(Killed):
        run_bench(settings, cache=cache, progress=kill_after_two)
    assert counting.calls == 2
    with open(cache, "a") as fh:
        fh.write('{"key": "cut sho')  # the line a killed run was writing
    resumed = run_bench(settings, cache=cache)
    assert counting.calls == 2 + 4  # only the four missing images ran
    assert resumed["cached_rows"] == 2 and resumed["summary"]["count"] == 6

    fresh = run_bench(settings)  # no cache
    assert counting.calls == 12
    assert [r["metrics"] for r in resumed["rows"]] == [r["metrics"] for r in fresh["rows"]]
    assert resumed["summary"]["metrics"] == fresh["summary"]["metrics"]

    again = run_bench(settings, cache=cache)
    assert counting.calls == 12 and again["cached_rows"] == 6
    # other settings are another key: nothing reused
    run_bench(replace(settings, grad_norm="255", limit=2), cache=cache)
    assert counting.calls == 14


def test_merge_of_partial_reports_equals_the_single_report(comp1k, counting):
    settings = BenchSettings(dataset="comp1k", root=str(comp1k), method="counting", limit=7)
    full = run_bench(settings)

    # split one run's rows into two partial reports: merging gives the same report
    meta = {k: v for k, v in full.items() if k in reports.META_KEYS}
    part_a = reports.build_report(meta, full["rows"][4:])
    part_b = reports.build_report(meta, full["rows"][:4])
    merged = reports.merge_reports([part_a, part_b])
    for key in ("rows", "summary", "groups", "speed", "failures", "published", "settings_key", "method"):
        assert merged[key] == full[key], key

    # real shards (two runs on halves of the dataset) give the same metrics
    ds = load_dataset("comp1k", comp1k, limit=7)
    shard1 = run_bench(settings, dataset=replace(ds, samples=ds.samples[0::2]))
    shard2 = run_bench(settings, dataset=replace(ds, samples=ds.samples[1::2]))
    combined = reports.merge_reports([shard1, shard2])
    assert [r["metrics"] for r in combined["rows"]] == [r["metrics"] for r in full["rows"]]
    assert combined["summary"]["metrics"] == pytest.approx(full["summary"]["metrics"], rel=1e-12)
    assert combined["dataset"]["evaluated"] == 7 and len(combined["runs"]) == 2
    assert combined["speed"]["images"] == 7

    other = run_bench(replace(settings, grad_norm="255", limit=1))
    with pytest.raises(UsageError, match="different benchmarks"):
        reports.merge_reports([full, other])
    with pytest.raises(UsageError):
        reports.merge_reports([])


def test_report_round_trip_and_errors(comp1k, tmp_path, counting):
    report = run_bench(BenchSettings(dataset="comp1k", root=str(comp1k), method="counting", limit=2))
    reports.write_report(report, tmp_path / "r.json")
    assert reports.load_report(tmp_path / "r.json") == json.loads(json.dumps(report))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(UsageError):
        reports.load_report(tmp_path / "bad.json")
    with pytest.raises(UsageError):
        run_bench(BenchSettings(dataset="comp1k", root=str(comp1k)))
    # a trimap-based method on a dataset without trimaps
    _write_triplets(tmp_path / "f", ["x"], image="images", alpha="alpha", trimap=None)
    with pytest.raises(DatasetError, match="needs trimaps"):
        run_bench(BenchSettings(dataset="folder", root=str(tmp_path / "f"), method="counting"))


def test_published_numbers():
    sim = reports.published_for("sim", "comp1k")
    assert sim[0].metrics == {"sad": 28.0, "mse": 5.8e-3, "grad": 10.8, "conn": 24.8}
    assert reports.published_for("msia", "dist646")[0].metrics == {
        "sad": 49.51, "mse": 9e-3, "grad": 39.70, "conn": 46.68,
    }  # fmt: skip
    aim = reports.published_for("aim", "aim500")[0]
    assert aim.metrics["sad"] == 43.92 and aim.metrics["mad"] == 0.0262 and aim.metrics["grad"] == 33.05
    assert aim.groups["type"] == {"SO": 31.80, "STM": 94.02, "NS": 134.31}
    assert reports.published_for("sim", "simd")[0].metrics["conn"] == 20.83
    assert reports.published_for("aim", "comp1k") == []


# ----------------------------------------------------------------------------- CLI
@pytest.fixture
def cli():
    """``mattecli bench ...`` with the bench group mounted as the real app mounts it."""
    from mattecli.cli.bench import app as bench_app

    app = typer.Typer()
    app.add_typer(bench_app, name="bench")

    @app.command("noop")
    def noop() -> None:  # a second command keeps "bench" a sub-command, as in the real app
        """Nothing."""

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["bench", *map(str, args)])


def test_cli_prints_table_and_writes_report(comp1k, tmp_path, cli):
    out = tmp_path / "out.json"
    result = cli("--dataset", "comp1k", "--root", comp1k, "--method", "cf", "--limit", 2, "--report", out)
    assert result.exit_code == 0, result.output
    assert "SAD" in result.stderr and "Conn" in result.stderr and "MSIA paper, Table 1" in result.stderr
    assert "images/s" in result.stderr and "peak memory" in result.stderr
    assert result.stdout == ""  # tables and progress go to stderr
    report = json.loads(out.read_text())
    assert report["format"] == reports.REPORT_FORMAT and report["summary"]["count"] == 2
    assert cache_path_for(out).is_file()

    as_json = cli("--dataset", "comp1k", "--root", comp1k, "--method", "cf", "--limit", 2, "--report", out,
                  "--json", "--quiet")  # fmt: skip
    assert as_json.exit_code == 0
    data = json.loads(as_json.stdout)
    assert data["cached_rows"] == 2 and data["summary"] == report["summary"]
    assert as_json.stderr == ""


def test_report_says_whether_the_dataset_is_the_full_test_set(comp1k, tmp_path, counting, cli):
    settings = BenchSettings(dataset="comp1k", root=str(comp1k), method="counting", limit=3,
                                   dataset_source={"location": str(comp1k), "revision": "a" * 40})  # fmt: skip
    report = run_bench(settings)
    ds = report["dataset"]
    # the miniature tree has 2 foregrounds x 20 backgrounds of the published 50 x 20
    assert (ds["found"], ds["expected"], ds["complete"], ds["size"]) == (40, 1000, False, 3)
    assert ds["source"]["revision"] == "a" * 40
    assert report["settings_key"] != run_bench(replace(settings, dataset_source=None))["settings_key"]
    shown = cli("--dataset", "comp1k", "--root", comp1k, "--method", "counting", "--limit", 1)
    assert shown.exit_code == 0, shown.stderr
    assert "note:" in shown.stderr and "40 of the 1000 Composition-1k test images" in shown.stderr


def test_cli_without_method_runs_the_default_method_and_says_so(comp1k, counting, cli, monkeypatch):
    monkeypatch.setattr(methods, "DEFAULT_METHOD", "counting")
    result = cli("--dataset", "comp1k", "--root", comp1k, "--limit", 2, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "counting" and counting.calls == 2
    notes = [line for line in result.stderr.splitlines() if "--method" in line]
    assert notes == [
        "note: no --method given: benchmarking counting, the default method (--method NAME runs another; "
        "--predictions DIR scores existing mattes)"
    ]
    quiet = cli("--dataset", "comp1k", "--root", comp1k, "--limit", 2, "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_cli_exit_codes(comp1k, tmp_path, cli):
    bad = cli("--dataset", "coco", "--root", comp1k, "--method", "cf")
    assert bad.exit_code == 2 and "unknown dataset" in bad.stderr
    (tmp_path / "empty").mkdir()
    layout = cli("--dataset", "comp1k", "--root", tmp_path / "empty", "--method", "cf")
    assert layout.exit_code == 2 and "error:" in layout.stderr and "merged/" in layout.stderr
    grad = cli("--dataset", "comp1k", "--root", comp1k, "--method", "cf", "--grad-norm", "max")
    assert grad.exit_code == 2 and "--grad-norm must be minmax or 255, not 'max'" in grad.stderr
    quantize = cli("--dataset", "comp1k", "--root", comp1k, "--method", "cf", "--quantize", "12")
    assert quantize.exit_code == 2 and "--quantize must be 8, 16 or float, not '12'" in quantize.stderr
    unknown = cli("--dataset", "comp1k", "--method", "nope", "--no-download")
    assert unknown.exit_code == 2 and "unknown method 'nope'" in unknown.stderr  # before the dataset is looked up

    # predictions mode with one prediction missing: the others are scored, exit code 1
    preds = tmp_path / "preds"
    ds = load_dataset("comp1k", comp1k, limit=3)
    for s in ds.samples[:2]:
        io.write_alpha(preds / f"{s.name}.png", io.read_gray(s.alpha))
    partial = cli("--dataset", "comp1k", "--root", comp1k, "--predictions", preds, "--limit", 3, "--quiet")
    assert partial.exit_code == 1
    assert f"no prediction named {ds.samples[2].name}" in partial.stderr
