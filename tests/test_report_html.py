"""``bench --html``: a self-contained page of the report, its numbers as the CLI prints them, thumbnails,
sorting, merges; rendered in a real (headless) Chromium: ``--dump-dom`` and ``--screenshot``.

The report scores a small AIM-500-layout folder in predictions mode, labelled ``aim``, so it has
groups (type, category) and the AIM papers' published numbers, without running a network.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import EXAMPLES, invoke

from mattecli import io
from mattecli.benchmark import html_report
from mattecli.benchmark.html_report import render_html, write_html
from mattecli.benchmark.report_text import COLUMNS, columns, fmt
from mattecli.benchmark.run import run_bench
from mattecli.benchmark.settings import BenchSettings
from mattecli.benchmark.thumbnails import THUMB_SIDE, error_map, reduce, sample_thumbnails
from mattecli.cli import bench as cli_bench

NAMES = ["a_cat", "b_dog", "c_fern", "d_glass", "e_toy", "f_face"]
TYPES = {"a_cat": "SO", "b_dog": "SO", "c_fern": "NS", "d_glass": "STM", "e_toy": "SO", "f_face": "SO"}
CATEGORY = {"a_cat": "animal", "b_dog": "animal", "c_fern": "plant", "d_glass": "transparent", "e_toy": "toy",
            "f_face": "portrait"}  # fmt: skip


def _dataset(root: Path, preds: Path, size=(48, 64)) -> None:
    """An AIM-500 layout (original/ mask/ trimap/ + types) and predictions of increasing blur, one per sample."""
    h, w = size
    base = cv2.resize(io.read_image(EXAMPLES / "images" / "fluffy.png"), (w, h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(io.read_gray(EXAMPLES / "alpha" / "fluffy.png"), (w, h), interpolation=cv2.INTER_AREA)
    for folder in ("original", "mask", "trimap"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    preds.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(NAMES):
        image = np.roll(base, 5 * i, axis=1)[:, :, [(i + k) % 3 for k in range(3)]]
        gt = np.roll(alpha, 5 * i, axis=1)
        cv2.imwrite(str(root / "original" / f"{name}.jpg"), np.rint(image[:, :, ::-1] * 255).astype(np.uint8))
        cv2.imwrite(str(root / "mask" / f"{name}.png"), np.rint(gt * 255).astype(np.uint8))
        tri = np.full((h, w), 128, np.uint8)
        tri[gt == 0] = 0
        tri[gt == 1] = 255
        cv2.imwrite(str(root / "trimap" / f"{name}.png"), tri)
        k = 1 + 2 * ((i * 4) % 7)  # blur differs per sample, so the SADs differ (and not in name order)
        pred = cv2.GaussianBlur(gt, (k, k), 0) if k > 1 else gt
        cv2.imwrite(str(preds / f"{name}.png"), np.rint(pred * 255).astype(np.uint8))
    (root / "aim_category_type.json").write_text(
        json.dumps({n: {"type": TYPES[n], "category": CATEGORY[n]} for n in NAMES})
    )


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(report with thumbnails, dataset root, predictions folder)."""
    tmp = tmp_path_factory.mktemp("html")
    root, preds = tmp / "AIM-500", tmp / "preds"
    _dataset(root, preds)
    settings = BenchSettings(
        dataset="aim500", root=str(root), predictions=str(preds), method="aim", thumbnails=THUMB_SIDE
    )
    return run_bench(settings), root, preds


class Tables(HTMLParser):
    """Every ``<table>`` of a page by id: header cells (text, data-key) and body rows (cell texts)."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = self._row = self._cell = None
        self._in_head = False
        self.imgs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id") or f"t{len(self.tables)}", {"head": [], "rows": []})
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"text": "", "key": a.get("data-key"), "sort": a.get("aria-sort")}
        elif tag == "img":
            self.imgs.append(a.get("src", ""))

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._cell["text"] = self._cell["text"].strip()
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            (self._table["head"] if self._in_head else self._table["rows"]).append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def parse(page: str) -> Tables:
    t = Tables()
    t.feed(page)
    return t


def _column(table: dict, key: str) -> list[str]:
    index = [c["key"] for c in table["head"][0]].index(key)
    return [row[index]["text"] for row in table["rows"]]


# ----------------------------------------------------------------------------- the page
def test_the_page_is_self_contained(scored):
    page = render_html(scored[0])
    lower = page.lower()
    for needle in ("http://", "https://", "<script src", "<link", "url(", "@import", "//fonts", "<iframe"):
        assert needle not in lower, needle
    t = parse(page)
    assert len(t.imgs) == 4 * len(NAMES) and all(src.startswith("data:image/") for src in t.imgs)
    assert page.count("<script>") == 1 and page.startswith("<!DOCTYPE html>")


def test_numbers_are_formatted_as_the_cli_prints_them(scored):
    report = scored[0]
    terminal = cli_bench._tables(report)[0]  # the summary table `mattecli bench` prints
    cli_cols = columns(report)
    assert [c.header for c in terminal.columns[1:]] == [COLUMNS[c][0] for c in cli_cols]
    assert "mad" in cli_cols and "sad_trans" in cli_cols
    printed = [[list(col.cells)[r] for col in terminal.columns[1:]] for r in range(terminal.row_count)]
    t = parse(render_html(report))
    metrics = t.tables["metrics"]
    ours = metrics["rows"][0]
    assert ours[0]["text"] == "ours"
    assert [cell["text"] for cell in ours[2:]] == printed[0]
    assert printed[0] == [fmt(c, report["summary"]["metrics"][c]) for c in cli_cols]
    # the paper's numbers beside ours: every published entry, formatted the same way
    published = report["published"]
    assert len(published) == 2 and [r[0]["text"] for r in metrics["rows"][1:]] == [p["label"] for p in published]
    for row, line in zip(metrics["rows"][1:], printed[1:], strict=True):
        assert [cell["text"] for cell in row[2:]] == line
    # per-sample metrics
    samples = t.tables["samples"]
    by_name = {r["name"]: r for r in report["rows"]}
    names = _column(samples, "name")
    assert names == sorted(NAMES)  # the report's order (by name) until sorted
    for c in cli_cols:
        assert _column(samples, c) == [fmt(c, by_name[n]["metrics"][c]) for n in names]
    # groups with the published per-group SAD
    group_tables = [v for k, v in t.tables.items() if k not in ("metrics", "samples")]
    assert len(group_tables) == 2
    type_table = next(g for g in group_tables if g["head"][0][0]["text"] == "type")
    assert {r[0]["text"] for r in type_table["rows"]} == {"NS", "SO", "STM"}
    so = next(r for r in type_table["rows"] if r[0]["text"] == "SO")
    assert so[1]["text"] == "4" and so[-2]["text"] == "31.80" and so[-1]["text"] == "32.48"


def test_speed_memory_and_failures_are_shown(scored, tmp_path):
    report = dict(scored[0])
    report["failures"] = [{"name": "z_bad", "status": "error", "error": "no prediction named z_bad.* <x>"}]
    page = render_html(report)
    assert "images/s" in page and "peak memory: CPU RSS" in page
    assert "1 image(s) failed" in page and "no prediction named z_bad.* &lt;x&gt;" in page


def test_every_value_is_escaped_and_only_data_uris_are_shown(scored):
    """The template renders with autoescape on; a thumbnail that is not a data:image/ URI shows "-"."""
    report = copy.deepcopy(scored[0])
    hostile = "<script>alert('x')</script> & \"q\""
    report["method"] = hostile
    report["rows"][0]["name"] = hostile
    report["rows"][1]["groups"]["type"] = hostile
    report["rows"][2]["thumbs"]["gt"] = "javascript:alert(1)"
    report["rows"][3]["thumbs"]["error"] = "https://example.com/e.png"
    report["published"][0]["note"] = hostile
    report["failures"] = [{"name": hostile, "error": hostile}]
    page = render_html(report)
    assert "<script>alert" not in page and page.count("<script>") == 1
    assert "javascript:" not in page and "example.com" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;q&#34;" in page
    t = parse(page)
    assert hostile in _column(t.tables["samples"], "name")  # the text reads back as it was
    assert len(t.imgs) == 4 * len(NAMES) - 2 and all(src.startswith("data:image/") for src in t.imgs)
    fern = next(r for r in t.tables["samples"]["rows"] if r[1]["text"] == "c_fern")
    assert [c["text"] for c in fern if c["text"] == "-"] == ["-"]  # the refused gt thumbnail


def test_the_template_is_beside_the_module():
    """The page's markup lives in the package (pyproject's package-data ships it in wheels)."""
    path = Path(html_report.__file__).parent / "templates" / html_report.TEMPLATE
    assert path.is_file() and html_report.TEMPLATE_DIR == path.parent.resolve()
    assert "<table" not in Path(html_report.__file__).read_text()  # no markup left in the code
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"mattecli.benchmark" = ["templates/*.j2"]' in pyproject  # and wheels carry it


def test_thumbnails_are_small_and_show_image_gt_prediction_and_error(scored):
    report, root, preds = scored
    row = next(r for r in report["rows"] if r["name"] == "c_fern")
    thumbs = row["thumbs"]
    decoded = {}
    for key, uri in thumbs.items():
        head, _, data = uri.partition(",")
        assert head == ("data:image/jpeg;base64" if key in ("image", "error") else "data:image/png;base64")
        decoded[key] = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded["gt"].shape == (48, 64)  # smaller than THUMB_SIDE: kept at its size
    gt = cv2.imread(str(root / "mask" / "c_fern.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded["gt"], gt)
    np.testing.assert_array_equal(decoded["prediction"], cv2.imread(str(preds / "c_fern.png"), cv2.IMREAD_UNCHANGED))
    assert decoded["image"].shape == (48, 64, 3) and decoded["error"].shape == (48, 64, 3)


def test_error_map_and_reduction():
    gt = np.zeros((400, 200), np.float32)
    pred = gt.copy()
    pred[:, 100:] = 1.0
    region = np.zeros_like(gt, bool)
    region[:200] = True
    rgb = error_map(pred, gt, region)
    assert (rgb[:, :100] == 0).all()  # no error: black
    assert (rgb[:200, 100:] == 1).all()  # full error, scored: white
    assert np.allclose(rgb[200:, 100:], 0.3)  # full error outside the scored region: dimmed
    assert reduce(np.zeros((400, 200)), 160).shape == (160, 80) and reduce(np.zeros((3, 5)), 160).shape == (3, 5)
    thumbs = sample_thumbnails(np.zeros((400, 200, 3), np.float32), (gt * 255).astype(np.uint8), pred, region)
    assert set(thumbs) == {"image", "gt", "prediction", "error"}


def test_cached_rows_without_thumbnails_are_scored_again_for_html(scored, tmp_path):
    _, root, preds = scored
    cache = tmp_path / "r.rows.jsonl"
    plain = BenchSettings(dataset="aim500", root=str(root), predictions=str(preds), method="aim")
    first = run_bench(plain, cache=cache)
    assert all("thumbs" not in r for r in first["rows"])
    again = run_bench(plain, cache=cache)
    assert again["cached_rows"] == len(NAMES)
    with_html = run_bench(replace(plain, thumbnails=THUMB_SIDE), cache=cache)
    assert with_html["cached_rows"] == 0 and all("thumbs" in r for r in with_html["rows"])
    assert [r["metrics"] for r in with_html["rows"]] == [r["metrics"] for r in first["rows"]]
    assert with_html["settings_key"] == first["settings_key"]  # thumbnails do not change what is scored
    # now cached with thumbnails: reused
    assert run_bench(replace(plain, thumbnails=THUMB_SIDE), cache=cache)["cached_rows"] == len(NAMES)


def test_bench_html_and_merge_html_through_the_cli(scored, runner, tmp_path):
    _, root, preds = scored
    common = ["bench", "--dataset", "aim500", "--root", root, "--predictions", preds, "--method", "aim", "-q"]
    parts = []
    for k in (1, 2):
        part = tmp_path / f"part{k}.json"
        result = invoke(runner, [*common, "--shard", f"{k}/2", "--report", part, "--html", tmp_path / f"part{k}.html"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / f"part{k}.html").read_text().startswith("<!DOCTYPE html>")
        parts.append(part)
    merged = tmp_path / "merged.html"
    result = invoke(runner, ["bench", "--merge", parts[0], "--merge", parts[1], "--html", merged, "-q"])
    assert result.exit_code == 0, result.output
    t = parse(merged.read_text())
    assert sorted(_column(t.tables["samples"], "name")) == sorted(NAMES)
    assert len(t.imgs) == 4 * len(NAMES)
    whole = tmp_path / "whole.html"
    assert invoke(runner, [*common, "--html", whole]).exit_code == 0
    assert _column(parse(whole.read_text()).tables["samples"], "sad") == _column(t.tables["samples"], "sad")


# ----------------------------------------------------------------------------- in a real browser
def _find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (chromium, chromium-browser or google-chrome): the HTML report's browser test "
    "needs it; on Debian: apt-get install -y chromium (.ci/run installs it)",
)


def _browser(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]  # fmt: skip
    proc = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@needs_chromium
@pytest.mark.parametrize("key", ["sad", "-sad", "mse", "-conn", "name", "-name", "model_seconds"])
def test_chromium_renders_the_table_sorted_by_the_url_fragment(scored, tmp_path, key):
    report = scored[0]
    page = tmp_path / "report.html"
    write_html(report, page)
    dom = _browser(tmp_path, "--dump-dom", f"{page.as_uri()}#sort={key}").stdout
    t = parse(dom)
    samples = t.tables["samples"]
    desc, column = key.startswith("-"), key.lstrip("-")
    if column == "name":
        expected = sorted(NAMES, reverse=desc)
    else:
        value = (lambda r: r["metrics"][column]) if column in COLUMNS else (lambda r: r[column])
        expected = [r["name"] for r in sorted(report["rows"], key=value, reverse=desc)]  # stable, as the page's sort
    assert _column(samples, "name") == expected
    if column in COLUMNS:  # the numbers in the rendered cells are the report's, in that order
        by_name = {r["name"]: r for r in report["rows"]}
        assert _column(samples, column) == [fmt(column, by_name[n]["metrics"][column]) for n in expected]
    sort_state = {c["key"]: c["sort"] for c in samples["head"][0] if c["key"]}
    assert sort_state[column] == ("descending" if desc else "ascending")
    assert all(v == "none" for k, v in sort_state.items() if k != column)
    assert len(t.imgs) == 4 * len(NAMES)


@needs_chromium
def test_chromium_screenshot_is_not_blank(scored, tmp_path):
    page = tmp_path / "report.html"
    write_html(scored[0], page)
    shot = tmp_path / "shot.png"
    _browser(tmp_path, f"--screenshot={shot}", "--window-size=1280,900", f"{page.as_uri()}#sort=-sad")
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (900, 1280)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    assert gray.std() > 20  # text, tables and thumbnails, not a flat page
    assert (gray < 200).mean() > 0.03  # a real share of the page is drawn
    # the thumbnails are painted: colourful pixels (the photo and the error map), not only grey text
    saturation = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[:, :, 1]
    assert (saturation > 80).mean() > 0.01
