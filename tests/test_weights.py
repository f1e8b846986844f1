"""Tests for ``mattecli.weights``: manifest, hub download, cache, import, loading.

Everything is offline: downloads go to :class:`hub_server.FakeHub` on 127.0.0.1, the HF cache
is a temporary folder, and the networks are toy modules registered for test variants.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import mindspore_ckpt
from hub_server import FakeHub, hub_entry, use_fake_hub, write_manifest
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import nn

from mattecli import __version__, constants, weights
from mattecli.errors import (
    CheckpointMismatchError,
    ChecksumMismatchError,
    ManifestError,
    OutputError,
    UnknownCheckpointError,
    UnsafeCheckpointError,
    WeightsNotCachedError,
    WeightsUnavailableError,
)
from mattecli.weights import checkpoints, store

REPO = Path(__file__).resolve().parents[1]


# ============================================================================ toy networks
class ToyNet(nn.Module):
    """Our layout: conv, bn, head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)


#: the "official" names of ToyNet's tensors (prefix swaps, like a real remap table)
_OFFICIAL = [("features.0.", "conv."), ("features.1.", "bn."), ("classifier.", "head.")]


def remap_toy(sd: dict) -> dict:
    out = {}
    for key, value in sd.items():
        for old, new in _OFFICIAL:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def is_official_toy(sd) -> bool:
    return "features.0.weight" in sd


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.fc = nn.Linear(4, 5)  # unused, but in the checkpoint (like AIM's resnet.fc)


class AliasNet(nn.Module):
    """AIM-like: the backbone is registered as ``resnet`` *and* again as ``encoder0``/``encoder1``."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = _Backbone()
        self.encoder0 = nn.Sequential(self.resnet.conv1, self.resnet.bn1)
        self.encoder1 = nn.Sequential(self.resnet.layer1)
        self.decoder = nn.Conv2d(4, 1, 3, padding=1)


_MS_NAMES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def remap_mindspore(sd: dict) -> dict:
    """MindSpore-style names -> ToyNet; drops optimizer state."""
    out = {}
    for key, value in sd.items():
        if key.startswith("moments.") or key in ("global_step", "learning_rate"):
            continue
        head, _, leaf = key.rpartition(".")
        out[f"{head}.{_MS_NAMES.get(leaf, leaf)}"] = value
    return out


def seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter and float buffer with reproducible random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in list(module.parameters()) + [b for b in module.buffers() if b.is_floating_point()]:
            tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    return module


def official_toy_sd(seed: int = 0) -> dict[str, torch.Tensor]:
    """A ToyNet state dict under the official names (inverse of remap_toy)."""
    sd = seeded(ToyNet(), seed).state_dict()
    out = {}
    for key, value in sd.items():
        for old, new in _OFFICIAL:
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        out[key] = value
    return out


def assert_same(model: nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


# ============================================================================ fixtures
@pytest.fixture
def env(tmp_path, monkeypatch, allow_downloads):
    """An empty HF cache, offline-capable hub wiring, a test manifest and toy architectures."""
    cache = tmp_path / "hf" / "hub"
    use_fake_hub(monkeypatch, cache)
    monkeypatch.setattr(checkpoints, "_ARCHITECTURES", {})
    builds = []

    def counted(factory):
        def build():
            builds.append(factory)
            return factory()

        return build

    weights.register_architecture("toy", build=counted(ToyNet), remap=remap_toy, detect=is_official_toy)
    weights.register_architecture("toy-other", build=ToyNet, detect=lambda sd: "trunk.weight" in sd)
    weights.register_architecture("toy-alias", build=counted(AliasNet))
    weights.register_architecture("toy-ms", build=ToyNet, remap=remap_mindspore)
    weights.register_architecture("toy-hub", build=counted(ToyNet))
    weights.register_architecture("toy-hub2", build=ToyNet)
    base = [
        hub_entry("toy"),
        hub_entry("toy-other"),
        hub_entry("toy-alias", method="alias"),
        hub_entry("toy-ms", source_format="mindspore-ckpt", official_filename="toy.ckpt"),
        hub_entry("toy-unimpl", method="later", license="unknown"),
    ]
    manifest_path = tmp_path / "manifest.json"

    def set_manifest(extra=()):
        """The base entries plus ``extra`` (an extra entry replaces a base one of the same variant)."""
        entries = {e["variant"]: e for e in base}
        entries.update((e["variant"], e) for e in extra)
        write_manifest(manifest_path, list(entries.values()))

    set_manifest()
    monkeypatch.setattr(constants, "MATTECLI_MANIFEST", str(manifest_path), raising=False)
    return SimpleNamespace(
        tmp=tmp_path,
        cache=cache,
        manifest=manifest_path,
        set_manifest=set_manifest,
        builds=builds,
        monkeypatch=monkeypatch,
    )


def converted_bytes(variant: str, seed: int = 1) -> tuple[bytes, dict[str, torch.Tensor]]:
    sd = seeded(ToyNet(), seed).state_dict()
    return save(sd, metadata={"mattecli.variant": variant}), sd


def location(repo: str, filename: str, revision: str, payload: bytes) -> dict:
    """A manifest ``hub`` block pinning ``payload`` at ``repo/filename@revision``."""
    return {
        "repo_id": repo,
        "filename": filename,
        "revision": revision,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }


@pytest.fixture
def published(env):
    """``toy-hub`` (and ``toy-hub2``) published on a fake hub; the manifest pins them."""
    with FakeHub() as hub:
        data, sd = converted_bytes("toy-hub")
        data2, _ = converted_bytes("toy-hub2", seed=2)
        commit = hub.add_file("org/toy", "toy-hub.safetensors", data)
        commit2 = hub.add_file("org/toy2", "toy-hub2.safetensors", data2)

        env.set_manifest(
            [
                hub_entry("toy-hub", hub=location("org/toy", "toy-hub.safetensors", commit, data)),
                hub_entry("toy-hub2", hub=location("org/toy2", "toy-hub2.safetensors", commit2, data2)),
            ]
        )
        use_fake_hub(env.monkeypatch, env.cache, hub)
        yield SimpleNamespace(hub=hub, data=data, sd=sd, commit=commit, env=env)


def write_official(path: Path, obj, **kwargs) -> Path:
    torch.save(obj, path, **kwargs)
    return path


# ============================================================================ manifest
def test_repo_manifest_is_valid_and_publishes_nothing_yet():
    manifest = weights.load_manifest(REPO / "weights_manifest.json")
    assert manifest.variants() == [
        "sim-comp1k", "sim-simd", "sim-classifier", "aim", "shm", "shm-mindspore", "msia",
        "vitmatte-s-comp1k", "vitmatte-b-comp1k", "vitmatte-s-d646", "vitmatte-b-d646",
    ]  # fmt: skip
    for entry in manifest.entries.values():
        assert entry.hub is None and not entry.published  # no invented checksums
        assert entry.filename == f"{entry.variant}.safetensors"
    ms = manifest.get("shm-mindspore")
    assert ms.license == "Apache-2.0" and ms.conversion.source_format == "mindspore-ckpt"
    assert (
        ms.official.files[0].filename
        == "semantichumanmatting_ascend_v180_MattingHumanDatasets_official_cv_avesad5.49.ckpt"
    )
    assert ms.official.files[0].sha256 == "1a11ded55674d2757cf16e6d4001c724ff16824a6a22d973485d352b3df2e8c6"
    drive = {
        v: manifest.get(v).official.files[0].links[0].file_id
        for v in ("sim-comp1k", "sim-simd", "sim-classifier", "aim")
    }
    assert drive == {
        "sim-comp1k": "1uUIhzBKyTRfu0Ylhm0O9pyV9TayPaODt",
        "sim-simd": "1kmhQtO-6wXTxgHtQCLRj3xPOEtXyzTXC",
        "sim-classifier": "12JCGqDylBXJpgDhj4hg_JZYdbHlX8TKe",
        "aim": "16dd1FGMcsMTqR6EfD2T9mtRmPwxnY0zs",
    }
    assert manifest.get("aim").official.files[0].filename == "aimnet_pretrained_matting.pth"
    assert manifest.get("sim-classifier").official.files[0].filename == "classifier_resnet50_best.pth.tar"
    assert manifest.get("shm").official is None and manifest.get("msia").paper.venue is None


def test_default_manifest_is_the_repo_root_one(monkeypatch):
    monkeypatch.setattr(constants, "MATTECLI_MANIFEST", None, raising=False)
    assert weights.default_manifest_path() == REPO / "weights_manifest.json"


def _valid() -> dict:
    entry = hub_entry(
        "toy",
        hub={"repo_id": "org/toy", "filename": "toy.safetensors", "revision": "a" * 40, "sha256": "b" * 64, "size": 10},
    )
    return {"schema_version": 1, "checkpoints": [entry]}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["checkpoints"][0].pop("license"), "checkpoints[0] (toy): field 'license' is missing"),
        (lambda d: d["checkpoints"][0].pop("hub"), "field 'hub' is missing (use null when unknown)"),
        (lambda d: d["checkpoints"][0]["hub"].update(revision="main"), "field 'revision' has an invalid value 'main'"),
        (lambda d: d["checkpoints"][0]["hub"].update(sha256="abc"), "checkpoints[0] (toy).hub: field 'sha256'"),
        (lambda d: d["checkpoints"][0]["hub"].update(size="10"), "field 'size' must be int, not str"),
        (lambda d: d["checkpoints"][0]["hub"].update(size=True), "field 'size' must be int, not bool"),
        (lambda d: d["checkpoints"][0].update(sha265="x"), "field 'sha265' is not a known field (typo?)"),
        (lambda d: d["checkpoints"][0]["conversion"].update(source_format="onnx"), "must be one of torch"),
        (lambda d: d["checkpoints"].append(d["checkpoints"][0]), "variant 'toy' appears twice"),
        (lambda d: d.update(schema_version=2), "this mattecli reads version 1"),
        (
            lambda d: d["checkpoints"][0]["official"]["files"][0]["links"][0].update(url=None),
            "'url' and 'file_id' cannot both be null",
        ),
    ],
)
def test_manifest_errors_name_entry_and_field(mutate, message):
    data = _valid()
    weights.parse_manifest(data)  # the base is valid
    mutate(data)
    with pytest.raises(ManifestError, match=None) as info:
        weights.parse_manifest(data)
    assert message in str(info.value)


def test_manifest_file_errors(tmp_path):
    bad = tmp_path / "m.json"
    bad.write_text('{"schema_version": 1,\n "checkpoints": [}')
    with pytest.raises(ManifestError, match=r"m.json: invalid JSON at line 2"):
        weights.load_manifest(bad)
    with pytest.raises(ManifestError, match="cannot read the weights manifest"):
        weights.load_manifest(tmp_path / "absent.json")


def test_unknown_variant_lists_known_ones(env):
    with pytest.raises(UnknownCheckpointError, match="unknown weights variant 'nope'; known variants: toy, "):
        weights.get_entry("nope")


# ============================================================================ hub download
def test_pull_downloads_into_the_hf_cache_and_loads(published):
    path = weights.pull("toy-hub").path
    assert path == published.env.cache / "models--org--toy" / "snapshots" / published.commit / "toy-hub.safetensors"
    assert path.read_bytes() == published.data
    methods = [(r.method, r.path.split("/resolve/")[-1]) for r in published.hub.requests if "/resolve/" in r.path]
    assert methods == [
        ("HEAD", f"{published.commit}/toy-hub.safetensors"),
        ("GET", f"{published.commit}/toy-hub.safetensors"),
    ]
    seen = len(published.hub.requests)
    assert weights.pull("toy-hub").path == path  # pinned commit already cached: no request at all
    assert_same(weights.load_model("toy-hub"), published.sd)
    assert len(published.hub.requests) == seen
    assert weights.local_path("toy-hub") == path
    assert [s.state for s in weights.status("toy-hub")] == ["checksum ok"]


def test_load_model_downloads_when_missing(published):
    model = weights.load_model("toy-hub")
    assert not model.training
    assert_same(model, published.sd)


def test_tampered_download_is_rejected_and_never_loaded(published):
    tampered = bytearray(published.data)
    tampered[-1] ^= 0xFF  # same size, different bytes
    published.hub.add_file("org/toy", "toy-hub.safetensors", bytes(tampered), commit=published.commit)
    with pytest.raises(ChecksumMismatchError, match=r"toy-hub: cached file .* has sha256 .* it was not loaded"):
        weights.pull("toy-hub")
    with pytest.raises(ChecksumMismatchError) as info:
        weights.load_model("toy-hub")
    assert "weights pull toy-hub --force" in info.value.hint
    assert published.env.builds == []  # the network was never even built
    assert weights.status("toy-hub", check=True)[0].state == "checksum mismatch"


def test_file_changed_on_disk_after_verification_is_rehashed(published):
    path = weights.pull("toy-hub").path
    weights.load_model("toy-hub")
    tampered = bytearray(path.read_bytes())
    tampered[-1] ^= 0xFF
    blob = path.resolve()
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(tampered))
    os.utime(blob, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    with pytest.raises(ChecksumMismatchError):
        weights.load_model("toy-hub")


def test_hash_is_computed_once_per_process(published, monkeypatch):
    weights.pull("toy-hub")
    calls = []

    def counting(*args):
        calls.append(1)
        return hashlib.sha256(*args)

    monkeypatch.setattr(store, "hashlib", SimpleNamespace(sha256=counting))
    weights.load_model("toy-hub")
    weights.load_model("toy-hub")
    assert calls == []  # verified by the pull already
    store._VERIFIED.clear()  # a new process
    weights.load_model("toy-hub")
    weights.load_model("toy-hub")
    assert calls == [1]


def test_offline_mode_uses_the_cache(published, monkeypatch):
    weights.pull("toy-hub")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    store._VERIFIED.clear()
    seen = len(published.hub.requests)
    assert weights.pull("toy-hub").path.is_file()
    assert_same(weights.load_model("toy-hub"), published.sd)
    assert len(published.hub.requests) == seen


def test_offline_mode_without_cache_names_the_import_command(published, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    for call in (lambda: weights.pull("toy-hub"), lambda: weights.load_model("toy-hub")):
        with pytest.raises(WeightsNotCachedError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message
        assert message.startswith(
            "toy-hub weights are not downloaded yet and downloads are off (HF_HUB_OFFLINE is set); "
            "run `mattecli weights pull toy-hub`"
        )
        assert message.endswith("`mattecli weights import toy-hub toy_best.pth`")
    assert published.hub.requests == []  # offline: no request at all


def test_unreachable_hub(env, monkeypatch):
    with FakeHub() as hub:
        data, _ = converted_bytes("toy-hub")
        commit = hub.add_file("org/toy", "toy-hub.safetensors", data)
    # the server is stopped: its port refuses connections
    env.set_manifest([hub_entry("toy-hub", hub=location("org/toy", "toy-hub.safetensors", commit, data))])
    use_fake_hub(monkeypatch, env.cache, hub)
    monkeypatch.setattr(time, "sleep", lambda s: None)  # huggingface_hub backs off between retries
    with pytest.raises(
        WeightsNotCachedError,
        match=r"^toy-hub weights are not in the cache and the Hugging Face "
        r"Hub cannot be reached; .*weights import toy-hub",
    ):
        weights.pull("toy-hub")


def test_missing_on_hub_is_unavailable(published):
    entry = hub_entry(
        "toy-hub",
        hub={
            "repo_id": "org/toy",
            "filename": "toy-hub.safetensors",
            "revision": "c" * 40,
            "sha256": "d" * 64,
            "size": 5,
        },
    )
    published.env.set_manifest([entry])
    with pytest.raises(
        WeightsUnavailableError,
        match=r"org/toy/toy-hub.safetensors at revision cccccccccccc is "
        r"not on the hub \(RevisionNotFoundError\)",
    ):
        weights.pull("toy-hub")
    entry["hub"]["repo_id"] = "org/absent"
    published.env.set_manifest([entry])
    with pytest.raises(WeightsUnavailableError, match="RepositoryNotFoundError"):
        weights.pull("toy-hub")


def test_interrupted_download_resumes_with_a_range_request(published, monkeypatch):
    from huggingface_hub import constants as hf_constants

    # Bigger payload; small read chunks so that bytes reach the file before the connection drops
    # (huggingface_hub reads 10 MiB chunks; the real files are hundreds of MiB).
    big = {"w": torch.arange(60_000, dtype=torch.float32)}
    data = save(big, metadata={"mattecli.variant": "toy-hub"})
    commit = published.hub.add_file("org/big", "toy-hub.safetensors", data)
    published.env.set_manifest([hub_entry("toy-hub", hub=location("org/big", "toy-hub.safetensors", commit, data))])
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 4096)
    monkeypatch.setattr(time, "sleep", lambda s: None)
    published.hub.drop_after["toy-hub.safetensors"] = 50_000
    path = weights.pull("toy-hub").path
    assert path.read_bytes() == data
    gets = published.hub.gets("toy-hub.safetensors")
    assert len(gets) == 2 and gets[0].range is None
    resumed_at = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 50_000


def test_progress_class_sees_the_download(published):
    bars = []

    class Recorder:
        def __init__(self, **kwargs):
            self.kwargs, self.done = kwargs, 0
            bars.append(self)

        def update(self, n=1):
            self.done += n

        def close(self):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.close()

    weights.pull("toy-hub", progress=Recorder)
    assert len(bars) == 1
    assert bars[0].kwargs["total"] == len(published.data) and bars[0].done == len(published.data)


def test_environment_variables_in_a_fresh_process(published, tmp_path):
    """HF_ENDPOINT / HF_HOME / HF_HUB_OFFLINE as a user sets them (read when huggingface_hub is imported)."""
    script = (
        "import sys\n"
        "import mattecli.constants as c\n"
        f"c.MATTECLI_MANIFEST = {str(published.env.manifest)!r}\n"
        "from mattecli import weights\n"
        "from mattecli.errors import WeightsNotCachedError\n"
        "print(weights.ensure_weights('toy-hub'))\n"
        "try:\n"
        "    weights.ensure_weights('toy-hub2')\n"
        "except WeightsNotCachedError as err:\n"
        "    print('ERROR', err)\n"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    home = tmp_path / "hf-home"
    common = {**base, "HF_HOME": str(home), "HF_ENDPOINT": published.hub.url, "PYTHONPATH": str(REPO)}

    online = subprocess.run(
        [sys.executable, "-c", script.replace("ensure_weights('toy-hub2')", "pull('toy-hub').path")],
        env={**common, "HF_HUB_OFFLINE": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert online.returncode == 0, online.stderr
    cached = Path(online.stdout.splitlines()[0])
    assert cached == home / "hub" / "models--org--toy" / "snapshots" / published.commit / "toy-hub.safetensors"
    hits = len(published.hub.gets())

    offline = subprocess.run(
        [sys.executable, "-c", script],
        env={**common, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert offline.returncode == 0, offline.stderr
    lines = offline.stdout.splitlines()
    assert Path(lines[0]) == cached
    assert lines[1].startswith("ERROR toy-hub2 weights are not downloaded yet and downloads are off (HF_HUB_OFFLINE")
    assert len(published.hub.gets()) == hits  # offline: nothing requested


# ============================================================================ import
@pytest.mark.parametrize("wrap", ["bare", "state_dict", "model", "module-prefix", "legacy-format", "numpy-meta"])
def test_import_official_checkpoint_formats(env, wrap):
    sd = official_toy_sd()
    obj = {
        "bare": sd,
        "state_dict": {"epoch": 7, "state_dict": sd, "best_sad": 27.9},
        "model": {"model": sd, "optimizer": {"lr": 0.1}},
        "module-prefix": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "legacy-format": {"state_dict": sd},
        "numpy-meta": {"epoch": np.int64(3), "state_dict": sd, "best_sad": np.float64(27.9)},
    }[wrap]
    kwargs = {"_use_new_zipfile_serialization": False} if wrap == "legacy-format" else {}
    source = write_official(env.tmp / "toy_best.pth", obj, **kwargs)
    result = weights.import_checkpoint("toy", source)
    assert result.tensors == 9 and result.source_format == "torch" and result.official_match is None
    assert result.source_sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    with safe_open(str(result.path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta == {
        "format": "pt",
        "mattecli.variant": "toy",
        "mattecli.source_filename": "toy_best.pth",
        "mattecli.source_sha256": result.source_sha256,
        "mattecli.source_format": "torch",
        "mattecli.key_mapping": "toy.test",
        "mattecli.converter_version": str(weights.CONVERTER_VERSION),
        "mattecli.mattecli_version": __version__,
    }
    assert_same(weights.load_model("toy"), remap_toy(sd))


def test_import_numpy_metadata_pickled_by_numpy_1(env):
    """Checkpoints from 2021 name ``numpy.core.multiarray.scalar`` (numpy 2 moved it to ``numpy._core``)."""
    sd = official_toy_sd()
    modern = write_official(env.tmp / "modern.pth", {"state_dict": sd, "best_sad": np.float64(3.5)})
    old = env.tmp / "toy_best.pth"
    with zipfile.ZipFile(modern) as zin, zipfile.ZipFile(old, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            payload = zin.read(name)
            if name.endswith("data.pkl"):
                assert b"numpy._core" in payload
                payload = payload.replace(b"numpy._core", b"numpy.core")
            zout.writestr(name, payload)
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(old)
    weights.import_checkpoint("toy", old)
    assert_same(weights.load_model("toy"), remap_toy(sd))


def test_import_writes_a_content_addressed_cache_repo(env):
    from huggingface_hub import scan_cache_dir

    first = weights.import_checkpoint("toy", write_official(env.tmp / "a.pth", {"state_dict": official_toy_sd(0)}))
    repo = env.cache / "models--mattecli-imports--toy"
    assert first.path == repo / "snapshots" / first.sha256 / "toy.safetensors"
    assert (repo / "refs" / "main").read_text() == first.sha256
    assert hashlib.sha256(first.path.read_bytes()).hexdigest() == first.sha256
    again = weights.import_checkpoint("toy", env.tmp / "a.pth")
    assert again.sha256 == first.sha256  # deterministic conversion
    second = weights.import_checkpoint("toy", write_official(env.tmp / "b.pth", {"state_dict": official_toy_sd(1)}))
    assert second.sha256 != first.sha256
    assert [p.name for p in (repo / "snapshots").iterdir()] == [second.sha256]  # the old one is gone
    info = scan_cache_dir(env.cache)
    assert info.warnings == []
    assert [r.repo_id for r in info.repos] == ["mattecli-imports/toy"]
    assert weights.local_path("toy") == second.path
    assert [s.state for s in weights.status("toy")] == ["checksum ok"]


def test_import_aim_like_duplicate_alias_keys(env):
    net = seeded(AliasNet())
    official = net.state_dict()  # 'resnet.*' and 'encoder0.*' / 'encoder1.0.*' name the same tensors
    assert torch.equal(official["resnet.conv1.weight"], official["encoder0.0.weight"])
    source = write_official(env.tmp / "toy_best.pth", {"state_dict": official})
    loaded = torch.load(source, weights_only=True)["state_dict"]
    assert loaded["resnet.conv1.weight"].data_ptr() == loaded["encoder0.0.weight"].data_ptr()
    result = weights.import_checkpoint("toy-alias", source)
    stored = load_file(str(result.path))
    assert not any(k.startswith("encoder") for k in stored)  # each tensor stored once
    assert len(stored) == len(official) - sum(k.startswith("encoder") for k in official)
    model = weights.load_model("toy-alias")
    assert_same(model, official)
    assert model.encoder0[0].weight is model.resnet.conv1.weight


def test_alias_keys_that_disagree_are_refused(env):
    official = seeded(AliasNet()).state_dict()
    official = {k: v.clone() for k, v in official.items()}
    official["encoder0.0.weight"] += 1
    source = write_official(env.tmp / "toy_best.pth", {"state_dict": official})
    with pytest.raises(
        CheckpointMismatchError,
        match=r"aliases that disagree \(1\): encoder0.0.weight != "
        r"resnet.conv1.weight",
    ):
        weights.import_checkpoint("toy-alias", source)


def test_mismatch_lists_missing_unexpected_and_wrong_shapes(env):
    sd = official_toy_sd()
    del sd["features.0.bias"]
    sd["classifier.weight"] = torch.zeros(3, 4)
    for i in range(12):
        sd[f"extra.{i:02d}"] = torch.zeros(1)
    source = write_official(env.tmp / "toy_best.pth", {"state_dict": sd})
    with pytest.raises(CheckpointMismatchError) as info:
        weights.import_checkpoint("toy", source)
    err = info.value
    assert str(err) == (
        "toy_best.pth does not match the toy network: missing (1): conv.bias; "
        "unexpected (12): extra.00, extra.01, extra.02, extra.03, extra.04, extra.05, extra.06, extra.07, "
        "extra.08, extra.09, ... (2 more); wrong shape (1): head.weight [3,4] expected [2,4]"
    )
    assert err.missing == ["conv.bias"] and len(err.unexpected) == 12
    assert err.wrong_shape == ["head.weight [3,4] expected [2,4]"]
    assert not (env.cache / "models--mattecli-imports--toy").exists()  # nothing written


def test_missing_num_batches_tracked_is_filled(env):
    sd = {k: v for k, v in official_toy_sd().items() if not k.endswith("num_batches_tracked")}
    weights.import_checkpoint("toy", write_official(env.tmp / "old.pth", sd))
    assert weights.load_model("toy").bn.num_batches_tracked.item() == 0


def test_a_file_of_another_variant_is_named(env):
    source = write_official(env.tmp / "x.pth", {"state_dict": {"trunk.weight": torch.zeros(1)}})
    with pytest.raises(
        UnknownCheckpointError,
        match=r"x.pth is not an official toy checkpoint "
        r"\(it looks like toy-other\)",
    ):
        weights.import_checkpoint("toy", source)


class _Recorder:
    calls: list = []


def record_call(*args):
    """A module-level callable a malicious pickle could name; it must never run."""
    _Recorder.calls.append(args)
    return args


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("how", ["zip", "legacy", "raw-pickle"])
@pytest.mark.parametrize("callable_", ["os.system", "record_call"])
def test_malicious_pickle_is_refused_and_never_runs(env, how, callable_):
    marker = env.tmp / "pwned"
    _Recorder.calls.clear()
    evil = _Evil(os.system, f"touch {marker}") if callable_ == "os.system" else _Evil(record_call, "boom")
    payload = {"state_dict": official_toy_sd(), "extra": evil}
    source = env.tmp / "toy_best.pth"
    if how == "raw-pickle":  # a plain pickle, not torch.save's format (tensors would need torch globals)
        source.write_bytes(pickle.dumps({"extra": evil}, protocol=2))
    else:
        torch.save(payload, source, _use_new_zipfile_serialization=(how == "zip"))
    with pytest.raises(UnsafeCheckpointError) as info:
        weights.import_checkpoint("toy", source)
    assert ("system" in str(info.value)) if callable_ == "os.system" else ("record_call" in str(info.value))
    if how == "raw-pickle":
        assert f"{source} is a pickle that is not a plain checkpoint (it refers to " in str(info.value)
        assert str(info.value).endswith("; mattecli never unpickles code")
    else:
        assert "only tensors and plain containers" in str(info.value)
    assert "Please file an issue" not in str(info.value) and "WeightsUnpickler" not in str(info.value)
    assert not marker.exists() and _Recorder.calls == []
    with pytest.raises(UnsafeCheckpointError):
        weights.load_model("toy", weights_file=source)
    assert not marker.exists() and _Recorder.calls == []


def test_a_zip_archive_of_the_checkpoint_asks_to_unzip(env):
    archive = env.tmp / "aim.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("aimnet_pretrained_matting.pth", b"not really")
    with pytest.raises(
        UnknownCheckpointError,
        match=r"is a zip archive, not a checkpoint \(it contains "
        r"aimnet_pretrained_matting.pth\)",
    ) as info:
        weights.import_checkpoint("toy", archive)
    assert "unzip" in info.value.hint


@pytest.mark.parametrize("content", [b"hello world, not a checkpoint", b""])
def test_garbage_is_not_a_checkpoint(env, content):
    source = env.tmp / "junk.pth"
    source.write_bytes(content)
    with pytest.raises(UnknownCheckpointError):
        weights.import_checkpoint("toy", source)


def test_absent_file(env):
    with pytest.raises(UnknownCheckpointError, match="does not exist"):
        weights.import_checkpoint("toy", env.tmp / "nope.pth")


def test_import_a_converted_safetensors_file_verbatim(env):
    data, sd = converted_bytes("toy", seed=4)
    source = env.tmp / "toy.safetensors"
    source.write_bytes(data)
    result = weights.import_checkpoint("toy", source)
    assert result.source_format == "safetensors"
    assert result.path.read_bytes() == data  # same bytes, so the same sha256 as a published file
    assert_same(weights.load_model("toy"), sd)


def test_safetensors_of_another_variant_is_refused(env):
    data, _ = converted_bytes("toy-other")
    (env.tmp / "other.safetensors").write_bytes(data)
    with pytest.raises(CheckpointMismatchError, match="other.safetensors holds weights for toy-other, not toy"):
        weights.import_checkpoint("toy", env.tmp / "other.safetensors")


def test_unimplemented_method(env):
    with pytest.raises(
        WeightsUnavailableError,
        match="^method later is not implemented yet, so weights for toy-unimpl cannot be imported or loaded$",
    ):
        weights.import_checkpoint("toy-unimpl", env.tmp / "whatever.pth")
    with pytest.raises(WeightsUnavailableError, match="not implemented yet"):
        weights.load_model("toy-unimpl")
    assert {s.entry.variant: s.implemented for s in weights.status()}["toy-unimpl"] is False


def test_every_real_variant_has_model_code(monkeypatch):
    monkeypatch.setattr(constants, "MATTECLI_MANIFEST", None, raising=False)
    import mattecli.methods  # noqa: F401  (the registry gives mattecli.weights every variant's network)

    for variant in weights.load_manifest().variants():
        assert weights.get_architecture(variant).variant == variant


def test_unpublished_and_not_imported(env):
    """A variant whose only link is manual (a share page behind a password): nothing to download."""
    expected = (
        r"^toy weights are not imported and cannot be downloaded automatically; download toy_best.pth by hand "
        r"from example https://example.invalid/toy_best.pth and run `mattecli weights import toy toy_best.pth`$"
    )
    with pytest.raises(WeightsUnavailableError, match=expected) as info:
        weights.load_model("toy")
    assert info.value.hint == "official file toy_best.pth from https://example.invalid/toy_best.pth"
    with pytest.raises(WeightsUnavailableError, match=expected):
        weights.pull("toy")
    assert weights.status("toy")[0].state == "unpublished"


def test_tampered_import_is_never_loaded(env):
    result = weights.import_checkpoint("toy", write_official(env.tmp / "a.pth", official_toy_sd()))
    data = bytearray(result.path.read_bytes())
    data[-1] ^= 0xFF
    result.path.write_bytes(bytes(data))
    store._VERIFIED.clear()
    env.builds.clear()
    with pytest.raises(ChecksumMismatchError, match=r"toy: imported file .* has sha256 .* it was not loaded"):
        weights.load_model("toy")
    assert env.builds == []
    assert [c.ok for c in weights.verify("toy")] == [False]
    assert weights.status("toy", check=True)[0].state == "checksum mismatch"


def test_weights_file_override(env):
    sd = official_toy_sd(5)
    official = write_official(env.tmp / "mine.pth", {"state_dict": sd})
    assert_same(weights.load_model("toy", weights_file=official), remap_toy(sd))
    assert not (env.cache / "models--mattecli-imports--toy").exists()  # an override is not an import
    bad = write_official(env.tmp / "bad.pth", {"state_dict": {"features.0.weight": torch.zeros(4, 3, 3, 3)}})
    with pytest.raises(CheckpointMismatchError, match="missing"):
        weights.load_model("toy", weights_file=bad)
    with pytest.raises(UnknownCheckpointError, match="does not exist"):
        weights.load_model("toy", weights_file=env.tmp / "absent.safetensors")


# ---------------------------------------------------------------------------- MindSpore
@pytest.mark.parametrize("packed", [False, True])
def test_import_mindspore_checkpoint(env, packed):
    ours = seeded(ToyNet(), 3).state_dict()
    tensors = {}
    for key, value in ours.items():
        if key.endswith("num_batches_tracked"):
            continue  # MindSpore has no such buffer
        head, _, leaf = key.rpartition(".")
        leaf = {v: k for k, v in _MS_NAMES.items()}.get(leaf, leaf)
        tensors[f"{head}.{leaf}"] = value.numpy()
    tensors["moments.conv.weight"] = np.zeros((4, 3, 3, 3), np.float32)
    tensors["global_step"] = np.array(1000, np.int32)
    tensors["learning_rate"] = np.array(0.01, np.float32)
    data = mindspore_ckpt(tensors, packed=packed)
    source = env.tmp / "toy.ckpt"
    source.write_bytes(data)
    env.set_manifest(
        [
            hub_entry(
                "toy-ms",
                source_format="mindspore-ckpt",
                official_filename="toy.ckpt",
                official_sha256=hashlib.sha256(data).hexdigest(),
            )
        ]
    )
    result = weights.import_checkpoint("toy-ms", source)
    assert result.source_format == "mindspore-ckpt" and result.official_match is True
    expected = dict(ours)
    expected["bn.num_batches_tracked"] = torch.tensor(0)
    assert_same(weights.load_model("toy-ms"), expected)
    other = env.tmp / "other.ckpt"
    other.write_bytes(mindspore_ckpt({**tensors, "global_step": np.array(1, np.int32)}))
    assert weights.import_checkpoint("toy-ms", other).official_match is False


def test_truncated_mindspore_checkpoint(env):
    data = mindspore_ckpt({"conv.weight": np.zeros((4, 3, 3, 3), np.float32)})
    (env.tmp / "cut.ckpt").write_bytes(data[:-7])
    with pytest.raises(UnknownCheckpointError, match="not a readable MindSpore checkpoint"):
        weights.import_checkpoint("toy-ms", env.tmp / "cut.ckpt")


# ============================================================================ verify / export
def test_verify_reports_every_local_file(published):
    weights.pull("toy-hub")
    weights.import_checkpoint("toy", write_official(published.env.tmp / "a.pth", official_toy_sd()))
    results = weights.verify()
    assert sorted((c.variant, c.kind, c.ok) for c in results) == [("toy", "imported", True), ("toy-hub", "hub", True)]
    with pytest.raises(WeightsNotCachedError, match="toy-hub2 weights are not downloaded yet; run `mattecli weights pull toy-hub2`"):
        weights.verify("toy-hub2")


def test_export_writes_a_hub_ready_folder(env):
    source = write_official(env.tmp / "toy_best.pth", {"state_dict": official_toy_sd()})
    imported = weights.import_checkpoint("toy", source)
    result = weights.export("toy", env.tmp / "out", repo_id="someone/mattecli-toy")
    assert sorted(p.name for p in (env.tmp / "out").iterdir()) == [
        "README.md",
        "manifest_snippet.json",
        "toy.safetensors",
    ]
    assert result.weights.read_bytes() == imported.path.read_bytes()
    assert result.sha256 == imported.sha256 and result.size == imported.size
    card = result.readme.read_text()
    assert card.startswith("---\nlicense: mit\n")
    assert imported.source_sha256 in card and "key mapping `toy.test`" in card and imported.sha256 in card
    assert result.license_warning is None
    snippet = json.loads(result.snippet.read_text())
    assert snippet["hub"] == {
        "repo_id": "someone/mattecli-toy",
        "filename": "toy.safetensors",
        "revision": "COMMIT-SHA-OF-THE-UPLOAD",
        "sha256": imported.sha256,
        "size": imported.size,
    }
    with pytest.raises(ManifestError, match="revision"):  # cannot be pasted before the upload's commit is known
        weights.parse_manifest({"schema_version": 1, "checkpoints": [snippet]})
    snippet["hub"]["revision"] = "e" * 40
    entry = weights.parse_manifest({"schema_version": 1, "checkpoints": [snippet]}).get("toy")
    assert entry.hub.sha256 == hashlib.sha256(result.weights.read_bytes()).hexdigest()
    with pytest.raises(OutputError, match="not an empty folder"):
        weights.export("toy", env.tmp / "out")
    weights.export("toy", env.tmp / "out", overwrite=True)


def test_export_warns_about_unclear_licences(env):
    weights.register_architecture("toy-unimpl", build=ToyNet, remap=remap_toy)
    weights.import_checkpoint("toy-unimpl", write_official(env.tmp / "toy_best.pth", official_toy_sd()))
    result = weights.export("toy-unimpl", env.tmp / "out")
    assert "licence is unknown" in result.license_warning
    assert "license: other\nlicense_name: unknown" in result.readme.read_text()


def test_export_needs_local_weights(env):
    with pytest.raises(WeightsUnavailableError, match="not imported and cannot be downloaded automatically"):
        weights.export("toy", env.tmp / "out")
