"""ViTMatte's weights: the authors' own ``model.safetensors`` on the Hugging Face Hub, used as it is.

The four vitmatte entries of the repository's manifest are served by the local hub stand-in
(:class:`hub_server.FakeHub` on 127.0.0.1) under their real repository names, with the pins replaced
by those of a random-weight checkpoint written in the hub's key layout: the ``state_dict`` of a
small ``transformers`` ``VitMatteForImageMatting`` saved with safetensors, as the hub's files are.
The network those keys must load into strictly (no key remap) is that same small model, registered
for the vitmatte variants as a stand-in for the method's own network (``methods/vitmatte/net.py``,
whose parameter names are the hub's keys: :func:`test_our_network_has_the_hub_key_layout` checks
them against transformers' at full size, and
:func:`test_the_real_network_loads_a_pulled_hub_file_strictly` pulls a full-size random ViTMatte-S
file into it). Without ``transformers`` the tests use a hand-written module with a slice of the
same key names.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import typer
from hub_server import FakeHub, use_fake_hub, write_manifest
from safetensors.torch import save
from torch import nn
from typer.testing import CliRunner

from mattecli import constants, weights
from mattecli.errors import (
    CheckpointMismatchError,
    ChecksumMismatchError,
    ManifestError,
    WeightsNotCachedError,
)
from mattecli.weights import checkpoints, store

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("vitmatte-s-comp1k", "vitmatte-b-comp1k", "vitmatte-s-d646", "vitmatte-b-d646")
S_COMP1K = "hustvl/vitmatte-small-composition-1k"
B_D646 = "hustvl/vitmatte-base-distinctions-646"


# ============================================================================ the hub's key layout
class _HubLayoutNet(nn.Module):
    """A few modules named as in the hub's checkpoints (only used without ``transformers``)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.embeddings = nn.Module()
        self.backbone.embeddings.projection = nn.Conv2d(4, 8, 4, 4)
        self.backbone.embeddings.position_embeddings = nn.Parameter(torch.zeros(1, 5, 8))
        self.decoder = nn.Module()
        self.decoder.convstream = nn.Module()
        self.decoder.convstream.convs = nn.ModuleList([nn.Module()])
        self.decoder.convstream.convs[0].conv = nn.Conv2d(4, 4, 3, bias=False)
        self.decoder.convstream.convs[0].batch_norm = nn.BatchNorm2d(4)


def small_vitmatte() -> nn.Module:
    """A small ``VitMatteForImageMatting`` (the hub's module names and nesting, few parameters)."""
    try:
        from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting
    except ImportError:
        return _HubLayoutNet()
    backbone = VitDetConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        num_channels=4,
        image_size=64,
        pretrain_image_size=64,
        patch_size=16,
        window_block_indices=[0],
        residual_block_indices=[1],
        window_size=2,
        use_relative_position_embeddings=True,
        out_features=["stage2"],
    )
    config = VitMatteConfig(
        backbone_config=backbone,
        hidden_size=32,
        convstream_hidden_sizes=[8, 16, 16],
        fusion_hidden_sizes=[16, 8, 8, 4],
    )
    return VitMatteForImageMatting(config)


def random_state(seed: int) -> dict[str, torch.Tensor]:
    """Random weights in the hub's key layout (float tensors only; counters as they are)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in small_vitmatte().state_dict().items():
        out[key] = torch.rand(value.shape, generator=gen) + 0.5 if value.is_floating_point() else value.clone()
    return out


def hub_file(seed: int = 0) -> tuple[bytes, dict[str, torch.Tensor]]:
    """``model.safetensors`` as the hub holds it: the state dict, metadata ``{"format": "pt"}``."""
    sd = random_state(seed)
    return save(sd, metadata={"format": "pt"}), sd


@pytest.fixture(scope="module")
def files() -> SimpleNamespace:
    good, sd = hub_file(0)
    other, other_sd = hub_file(1)
    return SimpleNamespace(good=good, sd=sd, other=other, other_sd=other_sd, sha=hashlib.sha256(good).hexdigest())


def assert_same(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


# ============================================================================ fixtures
def real_entries() -> dict[str, dict]:
    data = json.loads((REPO / "weights_manifest.json").read_text())
    return {e["variant"]: e for e in data["checkpoints"] if e["variant"] in VARIANTS}


@pytest.fixture
def vit(tmp_path, monkeypatch, allow_downloads):
    """An empty HF cache, a running hub stand-in, the real vitmatte entries (pins overridable) and
    the stand-in network registered for the four variants."""
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setattr(checkpoints, "_ARCHITECTURES", {})
    builds: list[str] = []

    def build():
        builds.append("built")
        return small_vitmatte()

    for variant in VARIANTS:
        weights.register_architecture(variant, build=build)
    manifest = tmp_path / "manifest.json"
    monkeypatch.setattr(constants, "MATTECLI_MANIFEST", str(manifest), raising=False)
    entries = real_entries()

    def set_hub(variant: str, **official_hub) -> dict:
        """Override fields of one variant's ``official_hub`` and write the manifest."""
        entries[variant] = copy.deepcopy(entries[variant])
        entries[variant]["official_hub"].update(official_hub)
        write_manifest(manifest, list(entries.values()))
        return entries[variant]

    write_manifest(manifest, list(entries.values()))
    with FakeHub() as hub:
        use_fake_hub(monkeypatch, cache, hub)
        yield SimpleNamespace(
            hub=hub, cache=cache, tmp=tmp_path, set_hub=set_hub, builds=builds, monkeypatch=monkeypatch
        )


def pin(vit, files, variant: str = "vitmatte-s-comp1k", repo: str = S_COMP1K) -> str:
    """Publish ``files.good`` at a commit, move ``main`` past it to another file, pin the commit."""
    commit = vit.hub.add_file(repo, "model.safetensors", files.good)
    vit.hub.add_file(repo, "model.safetensors", files.other, commit="f" * 40)  # main moved on
    vit.set_hub(variant, revision=commit, sha256=files.sha, size=len(files.good))
    return commit


def resolve_paths(hub: FakeHub) -> list[tuple[str, str]]:
    return [(r.method, r.path.split("/resolve/", 1)[1]) for r in hub.requests if "/resolve/" in r.path]


@pytest.fixture
def run():
    from mattecli.cli import weights as cli_weights

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """test root"""

    root.add_typer(cli_weights.app, name="weights")
    runner = CliRunner()
    return lambda *args: runner.invoke(root, ["weights", *map(str, args)])


def lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line_error(result, start: str, code: int = 2) -> str:
    """One ``error:`` line (after any download progress lines), at most a hint, no traceback."""
    assert result.exit_code == code, result.output
    out = lines(result)
    out = out[next((i for i, line in enumerate(out) if line.startswith("error: ")), 0) :]
    assert out[0].startswith(f"error: {start}"), out
    assert len(out) <= 2 and (len(out) == 1 or out[1].startswith("hint: ")), out
    assert "Traceback" not in result.output and result.stdout == ""
    return out[0]


# ============================================================================ manifest
def test_the_repository_manifest_names_the_authors_hub_files():
    manifest = weights.load_manifest(REPO / "weights_manifest.json")
    entries = {v: manifest.get(v) for v in VARIANTS}
    assert [e.official_hub.repo_id for e in entries.values()] == [
        "hustvl/vitmatte-small-composition-1k",
        "hustvl/vitmatte-base-composition-1k",
        "hustvl/vitmatte-small-distinctions-646",
        "hustvl/vitmatte-base-distinctions-646",
    ]
    for e in entries.values():
        assert e.method == "vitmatte" and e.license == "Apache-2.0" and e.official_hub.license == "apache-2.0"
        assert e.official_hub.filename == "model.safetensors" and e.official is None and e.hub is None
        assert (e.conversion.source_format, e.conversion.key_mapping) == ("safetensors", "identity")
        assert e.downloadable and e.origin() == "authors' hub"
        assert e.paper.title.startswith("ViTMatte") and e.paper.year == 2024
    s = entries["vitmatte-s-comp1k"].official_hub
    assert s.pinned and s.commit == "6a58ad7646403c1df626fbd746900aec7361ea1d"
    assert s.sha256 == "bda9289db1bb6762d978b42d1c62ae3f34daf7497171a347a1d09657efd788cb" and s.size == 103294572
    d = entries["vitmatte-s-d646"].official_hub
    assert d.pinned and d.commit == "11a82cf49c566221520f371452b91c8ef9f9c8a8"
    assert d.sha256 == "7bbe217ec9d6945679b6191ccd071006a3975675326312df1ecb5518488049a8"
    # no full hash could be confirmed for the base models: fetched once, then recorded (never invented)
    b_comp1k, b_d646 = entries["vitmatte-b-comp1k"].official_hub, entries["vitmatte-b-d646"].official_hub
    assert (b_comp1k.revision, b_comp1k.sha256, b_comp1k.pinned) == ("refs/pr/3", None, False)
    assert (b_d646.revision, b_d646.sha256, b_d646.requested_revision) == (None, None, "main")
    assert entries["vitmatte-s-comp1k"].manual_route() == (
        "download model.safetensors by hand from https://huggingface.co/hustvl/vitmatte-small-composition-1k/resolve/"
        "6a58ad7646403c1df626fbd746900aec7361ea1d/model.safetensors and run "
        "`mattecli weights import vitmatte-s-comp1k model.safetensors`"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha265": "x"}, "official_hub: field 'sha265' is not a known field (typo?)"),
        ({"filename": "pytorch_model.bin"}, "field 'filename' has an invalid value 'pytorch_model.bin'"),
        ({"revision": "main/../x"}, "field 'revision' has an invalid value"),
        ({"revision": ""}, "field 'revision' must not be empty"),
        ({"sha256": "abc"}, "field 'sha256' has an invalid value 'abc'"),
        ({"size": "103 MB"}, "field 'size' must be int, not str"),
        ({"repo_id": "no-owner"}, "field 'repo_id' has an invalid value 'no-owner'"),
    ],
)
def test_official_hub_fields_are_validated(change, message):
    entry = copy.deepcopy(real_entries()["vitmatte-s-comp1k"])
    weights.parse_manifest({"schema_version": 1, "checkpoints": [entry]})  # valid as it is
    entry["official_hub"].update(change)
    with pytest.raises(ManifestError) as info:
        weights.parse_manifest({"schema_version": 1, "checkpoints": [entry]})
    assert "checkpoints[0] (vitmatte-s-comp1k).official_hub" in str(info.value) and message in str(info.value)
    entry = copy.deepcopy(real_entries()["vitmatte-s-comp1k"])
    del entry["official_hub"]["license"]
    with pytest.raises(ManifestError, match="field 'license' is missing"):
        weights.parse_manifest({"schema_version": 1, "checkpoints": [entry]})
    entry = copy.deepcopy(real_entries()["vitmatte-s-comp1k"])
    entry["conversion"]["source_format"] = "torch"
    with pytest.raises(ManifestError, match="must be 'safetensors' for the authors' hub file"):
        weights.parse_manifest({"schema_version": 1, "checkpoints": [entry]})


# ============================================================================ pinned
def test_pull_at_the_pinned_commit_then_load_strictly(vit, files):
    commit = pin(vit, files)
    result = weights.pull("vitmatte-s-comp1k")
    expected = vit.cache / "models--hustvl--vitmatte-small-composition-1k" / "snapshots" / commit / "model.safetensors"
    assert result.path == expected and expected.read_bytes() == files.good  # the standard HF cache, bytes as served
    assert (result.source, result.repo_id, result.revision, result.pinned) == ("authors' hub", S_COMP1K, commit, True)
    assert result.official_sha256 == files.sha and not result.first_download
    assert resolve_paths(vit.hub) == [("HEAD", f"{commit}/model.safetensors"), ("GET", f"{commit}/model.safetensors")]
    assert weights.trusted_source("vitmatte-s-comp1k") is None  # pinned: nothing is recorded
    seen = len(vit.hub.requests)
    assert weights.pull("vitmatte-s-comp1k").source == "cache"
    assert_same(weights.load_model("vitmatte-s-comp1k"), files.sd)  # keys as they are, strictly
    assert len(vit.hub.requests) == seen and weights.local_path("vitmatte-s-comp1k") == expected
    assert [(c.kind, c.ok) for c in weights.verify("vitmatte-s-comp1k")] == [("official-hub", True)]


def test_first_use_fetches_before_loading(vit, files):
    commit = pin(vit, files, "vitmatte-s-d646", "hustvl/vitmatte-small-distinctions-646")
    [path] = weights.prefetch(["vitmatte-s-d646"])
    assert path.parent.name == commit
    store._VERIFIED.clear()  # a new process: the pinned sha256 is checked again before the load
    assert_same(weights.load_model("vitmatte-s-d646"), files.sd)
    vit.cache.joinpath("models--hustvl--vitmatte-small-distinctions-646").rename(vit.tmp / "gone")
    model = weights.load_model("vitmatte-s-d646")  # first use again: downloads, then loads
    assert_same(model, files.sd)
    assert len(vit.hub.gets("model.safetensors")) == 2


def test_a_tampered_file_is_refused_in_one_line_and_never_loaded(vit, files, run):
    commit = pin(vit, files)
    tampered = bytearray(files.good)
    tampered[-1] ^= 0xFF  # same size, other bytes
    vit.hub.add_file(S_COMP1K, "model.safetensors", bytes(tampered), commit=commit)
    mismatch = rf"vitmatte-s-comp1k: cached file .* has sha256 .*, expected {files.sha}"
    with pytest.raises(ChecksumMismatchError, match=mismatch):
        weights.pull("vitmatte-s-comp1k")
    with pytest.raises(ChecksumMismatchError) as info:
        weights.load_model("vitmatte-s-comp1k")
    assert "`mattecli weights pull vitmatte-s-comp1k --force`" in info.value.hint
    assert vit.builds == []  # refused before the network is even built
    result = run("pull", "vitmatte-s-comp1k", "--force")
    message = assert_one_line_error(result, "vitmatte-s-comp1k: cached file ")
    assert message.endswith("it was not loaded") and files.sha in message
    assert weights.status("vitmatte-s-comp1k", check=True)[0].state == "checksum mismatch"


def test_no_key_remap_a_file_of_another_layout_is_refused(vit, files):
    sd = {f"model.{k}": v for k, v in files.sd.items()}  # e.g. a checkpoint saved around the module
    data = save(sd, metadata={"format": "pt"})
    commit = vit.hub.add_file(S_COMP1K, "model.safetensors", data)
    vit.set_hub("vitmatte-s-comp1k", revision=commit, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    with pytest.raises(CheckpointMismatchError) as info:
        weights.load_model("vitmatte-s-comp1k")
    assert "model.safetensors does not match the vitmatte-s-comp1k network: missing (" in info.value.message
    assert "unexpected (" in info.value.message and "\n" not in info.value.message


# ============================================================================ recorded on first use
def test_first_use_records_the_commit_and_sha256_then_checks_them(vit, files, run):
    variant = "vitmatte-b-d646"
    first = vit.hub.add_file(B_D646, "model.safetensors", files.good)
    assert weights.hub_revision(weights.get_entry(variant))["recorded"] is False
    result = weights.pull(variant)
    assert (result.revision, result.first_download, result.pinned) == (first, True, False)
    assert resolve_paths(vit.hub) == [("HEAD", "main/model.safetensors"), ("GET", "main/model.safetensors")]
    record = weights.trusted_source(variant)
    assert (record["revision"], record["sha256"], record["size"]) == (first, files.sha, len(files.good))
    assert record["repo_id"] == B_D646 and record["requested_revision"] == "main"
    info = weights.hub_revision(weights.get_entry(variant))
    assert (info["commit"], info["sha256"], info["recorded"], info["pinned"]) == (first, files.sha, True, False)
    assert_same(weights.load_model(variant), files.sd)

    # main moves on to another file: the recorded commit is what is fetched again, not main
    vit.hub.add_file(B_D646, "model.safetensors", files.other, commit="e" * 40)
    vit.hub.requests.clear()
    again = weights.pull(variant, force=True)
    assert again.revision == first and not again.first_download
    assert resolve_paths(vit.hub)[0] == ("HEAD", f"{first}/model.safetensors")
    assert_same(weights.load_model(variant), files.sd)

    # on a machine whose cache was emptied, the recorded commit serves other bytes: refused, and
    # the hint names the record
    vit.cache.joinpath("models--hustvl--vitmatte-base-distinctions-646").rename(vit.tmp / "emptied")
    vit.hub.add_file(B_D646, "model.safetensors", files.other, commit=first, ref=None)
    result = run("pull", variant)
    message = assert_one_line_error(result, f"{variant}: cached file ")
    assert f"expected {files.sha}" in message
    assert "official_sha256.json" in lines(result)[-1] and lines(result)[-1].startswith("hint: ")
    with pytest.raises(ChecksumMismatchError):
        weights.load_model(variant)


def test_a_pull_request_ref_is_fetched_and_its_commit_recorded(vit, files):
    """vitmatte-b-comp1k: the safetensors file is on the pull request's ref, not on main."""
    commit = vit.hub.add_file("hustvl/vitmatte-base-composition-1k", "model.safetensors", files.good, ref="refs/pr/3")
    vit.hub.add_file("hustvl/vitmatte-base-composition-1k", "pytorch_model.bin", b"a pickle", commit="d" * 40)
    result = weights.pull("vitmatte-b-comp1k")
    assert result.revision == commit and result.first_download
    assert resolve_paths(vit.hub)[0] == ("HEAD", "refs%2Fpr%2F3/model.safetensors")
    assert not any(path.endswith("pytorch_model.bin") for _, path in resolve_paths(vit.hub))
    assert weights.trusted_source("vitmatte-b-comp1k")["revision"] == commit
    assert_same(weights.load_model("vitmatte-b-comp1k"), files.sd)


def test_not_on_the_hub_is_one_line_naming_the_import(vit, run):
    result = run("pull", "vitmatte-b-d646")  # the stand-in has no such repository
    message = assert_one_line_error(result, "vitmatte-b-d646: hustvl/vitmatte-base-distinctions-646/model.safetensors")
    assert "at revision main is not on the hub" in message
    assert message.endswith("run `mattecli weights import vitmatte-b-d646 model.safetensors` instead")


# ============================================================================ offline
def test_offline_is_one_line_naming_pull_and_import(vit, files, run, monkeypatch):
    pin(vit, files)
    vit.hub.requests.clear()
    expected = (
        "vitmatte-s-comp1k weights are not downloaded yet and downloads are off ({}); run `mattecli weights pull "
        "vitmatte-s-comp1k`, or download model.safetensors by hand from "
        "https://huggingface.co/hustvl/vitmatte-small-composition-1k/resolve/{}/model.safetensors and run "
        "`mattecli weights import vitmatte-s-comp1k model.safetensors`"
    )
    commit = weights.get_entry("vitmatte-s-comp1k").official_hub.commit
    with pytest.raises(WeightsNotCachedError) as info:
        weights.prefetch(["vitmatte-s-comp1k"], download=False)
    assert info.value.message == expected.format("--no-download", commit)
    monkeypatch.setattr(constants, "MATTECLI_OFFLINE", True)
    with pytest.raises(WeightsNotCachedError) as info:
        weights.load_model("vitmatte-s-comp1k")
    assert info.value.message == expected.format("MATTECLI_OFFLINE is set", commit)
    monkeypatch.setattr(constants, "MATTECLI_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    result = run("pull", "vitmatte-s-comp1k")
    assert assert_one_line_error(result, "") == "error: " + expected.format("HF_HUB_OFFLINE is set", commit)
    assert vit.hub.requests == []  # not even a HEAD


# ============================================================================ import by hand
def test_import_of_a_hand_fetched_file_is_checked_against_the_pin(vit, files, run, monkeypatch):
    pin(vit, files)
    vit.hub.requests.clear()
    monkeypatch.setattr(constants, "MATTECLI_OFFLINE", True)  # behind a firewall
    by_hand = vit.tmp / "download" / "model.safetensors"
    by_hand.parent.mkdir()
    by_hand.write_bytes(files.other)
    result = run("import", "vitmatte-s-comp1k", by_hand)
    message = assert_one_line_error(result, f"vitmatte-s-comp1k: {by_hand} has sha256 ")
    assert f"but the manifest says {files.sha}" in message and message.endswith("it was not imported")
    assert weights.status("vitmatte-s-comp1k")[0].active is None

    by_hand.write_bytes(files.good)
    result = run("import", "vitmatte-s-comp1k", by_hand)
    assert result.exit_code == 0, result.output
    assert lines(result)[0].startswith("imported vitmatte-s-comp1k from model.safetensors (safetensors, ")
    assert "the source file's sha256 matches the official checkpoint" in result.stderr
    path = run("path", "vitmatte-s-comp1k").stdout.strip()
    assert Path(path).is_file() and "models--mattecli-imports--vitmatte-s-comp1k" in path
    assert_same(weights.load_model("vitmatte-s-comp1k"), files.sd)
    result = run("verify", "vitmatte-s-comp1k", "--json")
    assert result.exit_code == 0 and [json.loads(x)["ok"] for x in result.stdout.splitlines()] == [True]
    assert vit.hub.requests == []


def test_import_without_a_pin_records_its_sha256_then_enforces_it(vit, files, run):
    variant = "vitmatte-b-d646"
    by_hand = vit.tmp / "model.safetensors"
    by_hand.write_bytes(files.good)
    result = run("import", variant, by_hand)
    assert result.exit_code == 0, result.output
    assert f"sha256 of model.safetensors: {files.sha} (the manifest pins none; recorded now" in result.stderr
    record = weights.trusted_source(variant)
    assert (record["sha256"], record["revision"], record["source"]) == (files.sha, None, "imported by hand")

    other = vit.tmp / "other.safetensors"
    other.write_bytes(files.other)
    message = assert_one_line_error(run("import", variant, other), f"{variant}: {other} has sha256 ")
    assert "but the first download" in message and "official_sha256.json" in message

    # a later download from the hub must be the same file; its commit is then recorded too
    commit = vit.hub.add_file(B_D646, "model.safetensors", files.good)
    result = weights.pull(variant, force=True)
    assert result.revision == commit and not result.first_download
    assert weights.trusted_source(variant)["revision"] == commit
    assert weights.local_path(variant).parent.name == commit  # the hub file now comes first


# ============================================================================ weights list
def test_weights_list_says_pinned_or_recorded_on_first_use(vit, files, run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")  # a terminal wide enough for the table's cells not to fold
    pin(vit, files)
    result = run("list")
    assert result.exit_code == 0 and result.stdout == ""
    text = result.stderr
    commit = weights.get_entry("vitmatte-s-comp1k").official_hub.commit
    assert "hustvl/vitmatte-small-composition-1k" in text and f"pinned {commit[:12]}" in text
    assert "recorded on first use (not yet; main)" in text  # vitmatte-b-d646
    assert "recorded on first use (not yet; refs/pr/3)" in text  # vitmatte-b-comp1k
    assert "pinned = the manifest gives their commit and sha256" in text

    commit = vit.hub.add_file(B_D646, "model.safetensors", files.good)
    weights.pull("vitmatte-b-d646")
    result = run("list")
    assert f"recorded on first use: {commit[:12]}" in result.stderr
    rows = {json.loads(x)["variant"]: json.loads(x) for x in run("list", "--json").stdout.splitlines()}
    b = rows["vitmatte-b-d646"]
    assert b["state"] in ("cached", "checksum ok") and b["source"] == "official-hub" and b["origin"] == "authors' hub"
    assert b["revision"] == {
        "repo_id": B_D646,
        "requested": "main",
        "commit": commit,
        "sha256": files.sha,
        "size": len(files.good),
        "pinned": False,
        "recorded": True,
    }
    s = rows["vitmatte-s-comp1k"]
    assert s["state"] == "missing" and s["revision"]["pinned"] and s["size"] == len(files.good)
    assert s["license"] == "Apache-2.0"


def test_pull_progress_goes_to_stderr(vit, files, run):
    pin(vit, files)
    result = run("pull", "vitmatte-s-comp1k")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    out = lines(result)
    assert out[0].startswith("downloading ") and "model.safetensors" in out[0]
    assert out[1].startswith("downloaded ")
    commit = weights.get_entry("vitmatte-s-comp1k").official_hub.commit
    assert out[2].startswith(f"pulled vitmatte-s-comp1k from the Hugging Face Hub ({S_COMP1K}@{commit[:12]}): ")
    assert out[3] == f"pinned commit {commit} and sha256 {files.sha} checked"


def test_pull_by_method_name_takes_the_default_variant(vit, files, run, monkeypatch):
    from mattecli import methods
    from mattecli.methods.vitmatte.spec import SPEC

    monkeypatch.setitem(methods._REGISTRY, "vitmatte", SPEC)  # until the method is in the registry
    pin(vit, files)
    result = run("pull", "vitmatte")
    assert result.exit_code == 0, result.output
    assert "pulled vitmatte-s-comp1k from the Hugging Face Hub" in result.stderr
    assert [s.variant for s in weights.verify()] == ["vitmatte-s-comp1k"]


# ============================================================================ the real network
def test_our_network_has_the_hub_key_layout():
    """``vitmatte_small`` / ``vitmatte_base`` against transformers' model with the hub repos' config.json."""
    net = pytest.importorskip("mattecli.methods.vitmatte.net")
    transformers = pytest.importorskip("transformers")
    for factory, hidden, heads in ((net.vitmatte_small, 384, 6), (net.vitmatte_base, 768, 12)):
        backbone = transformers.VitDetConfig(
            hidden_size=hidden,
            num_attention_heads=heads,
            image_size=512,
            num_channels=4,
            out_features=["stage12"],
            residual_block_indices=[2, 5, 8, 11],
            use_relative_position_embeddings=True,
            window_block_indices=[0, 1, 3, 4, 6, 7, 9, 10],
            window_size=14,
        )
        config = transformers.VitMatteConfig(
            backbone_config=backbone,
            hidden_size=hidden,
            convstream_hidden_sizes=[48, 96, 192],
            fusion_hidden_sizes=[256, 128, 64, 32],
        )
        with torch.device("meta"):
            theirs = {k: tuple(v.shape) for k, v in transformers.VitMatteForImageMatting(config).state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in factory().state_dict().items()}
        assert ours == theirs


def test_the_real_network_loads_a_pulled_hub_file_strictly(vit, monkeypatch):
    """End to end with ``methods/vitmatte``'s own network: a random ViTMatte-S checkpoint written in
    the hub's layout (103 MB, as the real one), pulled at its pinned commit and loaded strictly."""
    net = pytest.importorskip("mattecli.methods.vitmatte.net")
    from mattecli.methods.vitmatte.spec import SPEC

    variant = SPEC.variants[0]
    assert variant.name == "vitmatte-s-comp1k"  # the default
    weights.register_architecture(variant.name, build=variant.build, remap=variant.remap, replace=True)
    sd = net.vitmatte_small().state_dict()  # freshly initialised: random weights
    data = save(sd, metadata={"format": "pt"})
    commit = vit.hub.add_file(S_COMP1K, "model.safetensors", data)
    vit.set_hub(variant.name, revision=commit, sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    model = weights.load_model(variant.name)  # first use: pulled, checked, loaded with strict=True
    assert isinstance(model, net.VitMatteNet) and not model.training
    assert_same(model, sd)
