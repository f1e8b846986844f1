"""Trust on first use: what the authors' file is expected to be when the manifest pins no sha256.

Where the manifest pins the authors' file (its sha256; for a hub file also the full commit), that
is what every download and import must match. Where it does not (Google Drive links, an unpinned
hub repository), the first download (or import) records its sha256 in ``official_sha256.json``
beside the imported file (:func:`mattecli.weights.store.trust_path`): the commit it resolved to
for a hub file, the link for a linked one. Later downloads must match the record, and ``weights
verify`` checks an imported file's recorded source (its ``mattecli.source_sha256``) against it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from mattecli.manifests import HEX40, HEX64
from mattecli.weights.checkpoints import META
from mattecli.weights.manifest import CheckpointEntry, OfficialLink
from mattecli.weights.store import cache_error, trust_path, write_text_atomic

__all__ = [
    "expected_source_sha256",
    "hub_mismatch_hint",
    "hub_revision",
    "record_hub_file",
    "record_linked_file",
    "recorded_source",
    "trusted_source",
]


def trusted_source(variant: str) -> dict | None:
    """The record of the first download of ``variant``'s official file (trust on first use):
    ``{"filename", "sha256", "size", "url", "recorded"}`` (a hub file's adds ``repo_id``,
    ``revision``, ``requested_revision``, ``source``), or ``None`` when there is none or it is
    unreadable or malformed."""
    try:
        record = json.loads(trust_path(variant).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not HEX64.fullmatch(str(record.get("sha256", ""))):
        return None
    return record


def hub_revision(entry: CheckpointEntry) -> dict:
    """What is known of the authors' hub file of ``entry`` (``entry.official_hub`` must be set).

    ``{"repo_id", "requested", "commit", "sha256", "size", "pinned", "recorded"}``: ``pinned``
    when the manifest gives the full commit and the sha256; otherwise the commit and sha256 the
    first use recorded (``recorded`` True; ``commit`` is ``None`` for a file imported by hand,
    which records only its sha256), or ``None`` while nothing has been fetched yet.
    """
    src = entry.official_hub
    out = {
        "repo_id": src.repo_id,
        "requested": src.requested_revision,
        "commit": src.commit,
        "sha256": src.sha256,
        "size": src.size,
        "pinned": src.pinned,
        "recorded": False,
    }
    if src.pinned:
        return out
    record = trusted_source(entry.variant)
    if record is None:
        return out
    commit = record.get("revision")
    commit = commit if isinstance(commit, str) and HEX40.fullmatch(commit) else None
    if src.commit is not None and commit not in (None, src.commit):
        commit = None  # a record made before the manifest pinned another commit
    size = record.get("size")
    out.update(
        commit=src.commit or commit,
        sha256=src.sha256 or record["sha256"],
        size=src.size or (size if isinstance(size, int) and size > 0 else None),
        recorded=True,
    )
    return out


def expected_source_sha256(entry: CheckpointEntry) -> tuple[str | None, str]:
    """``(sha256, where it comes from)`` of the official file (the authors' hub file, else their
    linked file): the manifest's pin, else the first download's record, else ``(None, "")``."""
    if entry.official_hub is not None and entry.official_hub.sha256:
        return entry.official_hub.sha256, "the manifest"
    f = entry.official_file
    if f is not None and f.sha256:
        return f.sha256, "the manifest"
    record = trusted_source(entry.variant)
    if record is not None:
        return record["sha256"], f"the first download ({trust_path(entry.variant)})"
    return None, ""


def hub_mismatch_hint(entry: CheckpointEntry) -> str:
    """How to recover from an authors' hub file whose sha256 is not the expected one."""
    if entry.official_hub.pinned:
        return f"download it again with `mattecli weights pull {entry.variant} --force`"
    return (
        f"download it again with `mattecli weights pull {entry.variant} --force`; if the authors replaced "
        f"their file, delete {trust_path(entry.variant)} and pull again"
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_hub_file(entry: CheckpointEntry, sha256: str, size: int, *, commit: str | None, source: str) -> None:
    """Write the trust-on-first-use record of the authors' hub file (``official_sha256.json``);
    ``commit`` is ``None`` for a file imported by hand, ``source`` says how it came.

    Raises:
        WeightsCacheError: the record cannot be written.
    """
    src = entry.official_hub
    record = {
        "variant": entry.variant,
        "filename": src.filename,
        "sha256": sha256,
        "size": size,
        "url": src.url(commit) if commit else None,
        "repo_id": src.repo_id,
        "revision": commit,
        "requested_revision": src.requested_revision,
        "source": source,
        "recorded": _now(),
    }
    path = trust_path(entry.variant)
    try:
        # the record's folder stays a well-formed cache repo for `hf cache scan` (nothing imported yet)
        (path.parent / "snapshots").mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    except OSError as err:
        raise cache_error(entry.variant, err) from err


def record_linked_file(entry: CheckpointEntry, link: OfficialLink, path: Path, sha256: str) -> None:
    """Write the trust-on-first-use record of the official file downloaded from ``link`` to ``path``.

    Raises:
        OSError: the record cannot be written.
    """
    record = {
        "variant": entry.variant,
        "filename": entry.official_file.filename,
        "sha256": sha256,
        "size": path.stat().st_size,
        "url": link.url,
        "recorded": _now(),
    }
    write_text_atomic(trust_path(entry.variant), json.dumps(record, indent=2) + "\n")


def recorded_source(path: Path) -> str | None:
    """The ``mattecli.source_sha256`` a converted safetensors file records, if any (``None`` for a
    file that is not safetensors or records none)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get(f"{META}source_sha256")
    except Exception:  # noqa: BLE001 - not a safetensors file: no recorded source
        return None
