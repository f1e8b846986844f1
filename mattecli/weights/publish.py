"""``mattecli weights export``: a hub-ready folder for whoever publishes converted weights."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from mattecli.errors import OutputError
from mattecli.weights.checkpoints import META
from mattecli.weights.local import hub_copy, imported_copy, not_available, verified_path
from mattecli.weights.manifest import CheckpointEntry, get_entry
from mattecli.weights.store import sha256_file, write_text_atomic

__all__ = ["ExportResult", "export"]


@dataclass(frozen=True)
class ExportResult:
    """The hub-ready folder :func:`export` wrote; ``license_warning`` is set when the licence
    does not clearly allow redistribution."""

    folder: Path
    weights: Path
    readme: Path
    snippet: Path
    sha256: str
    size: int
    license_warning: str | None


#: Licences the Hub knows by these ids; anything else is written as ``other``.
_HF_LICENSES = ("mit", "apache-2.0", "bsd-3-clause", "cc-by-4.0")
_NOT_REDISTRIBUTABLE = {"unknown", "noassertion", "proprietary"}


def _model_card(entry: CheckpointEntry, meta: dict[str, str], sha: str, size: int, repo_id: str) -> str:
    hf_license = entry.license.lower() if entry.license.lower() in _HF_LICENSES else "other"
    p = entry.paper
    lines = ["---", f"license: {hf_license}"]
    if hf_license == "other":
        lines.append(f"license_name: {entry.license.lower().replace(' ', '-')}")
    lines += [
        "library_name: mattecli",
        "tags:",
        "- image-matting",
        "- alpha-matting",
        "- safetensors",
        "---",
        "",
        f"# {entry.variant}: {p.title}",
        "",
        entry.description,
        "",
        "## Use",
        "",
        "```",
        f"mattecli weights pull {entry.variant}",
        "```",
        "",
        "## Provenance",
        "",
    ]
    if entry.official:
        o = entry.official
        lines.append(
            f"- Official release: {o.repo or o.project_path or 'unknown'}"
            + (f" (commit {o.commit})" if o.commit else "")
        )
        for f in o.files:
            where = "; ".join(link.url or f"{link.host} id {link.file_id}" for link in f.links) or "unknown"
            lines.append(f"- Official file: `{f.filename}` ({where})")
    else:
        lines.append("- Official release: none")
    src_sha = meta.get(f"{META}source_sha256")
    lines += [
        f"- Converted from: `{meta.get(f'{META}source_filename', 'unknown')}`"
        + (f" (sha256 `{src_sha}`)" if src_sha else ""),
        f"- Conversion: {entry.conversion.source_format} -> safetensors, key mapping "
        f"`{meta.get(f'{META}key_mapping', entry.conversion.key_mapping)}`, converter version "
        f"{meta.get(f'{META}converter_version', '?')}, mattecli {meta.get(f'{META}mattecli_version', '?')}",
        f"- This file: `{entry.filename}`, {size} bytes, sha256 `{sha}`",
        f"- Intended repository: `{repo_id}`",
        "",
        "## Licence",
        "",
        f"{entry.license}." + (f" {entry.license_note}" if entry.license_note else ""),
        "",
        "## Citation",
        "",
        f"{p.authors}. *{p.title}*. {p.venue or 'venue unknown'}" + (f", {p.year}" if p.year else "") + ".",
        "",
    ]
    return "\n".join(lines)


def export(variant: str, out_dir: str | Path, *, repo_id: str | None = None, overwrite: bool = False) -> ExportResult:
    """Write a hub-ready folder for publishing ``variant``'s local weights: the safetensors file,
    a ``README.md`` model card (licence, provenance) and ``manifest_snippet.json`` (the manifest
    entry with ``hub`` filled in: sha256 and size; ``revision`` is left for the uploader).

    Raises:
        WeightsNotCachedError: nothing local to export.
        ChecksumMismatchError: the local file fails verification.
        OutputError: ``out_dir`` has files and ``overwrite`` is not set.
    """
    entry = get_entry(variant)
    copy = hub_copy(entry) or imported_copy(entry)
    if copy is None:
        raise not_available(entry)
    source = verified_path(copy)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise OutputError(f"{out} already exists and is not an empty folder", hint="pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
    sha, size = sha256_file(source), source.stat().st_size
    repo = repo_id or f"OWNER/mattecli-{variant}"
    weights = out / entry.filename
    tmp = weights.with_name(f".{weights.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, weights)
    readme = out / "README.md"
    write_text_atomic(readme, _model_card(entry, meta, sha, size, repo))
    snippet_entry = dict(entry.raw)
    snippet_entry["hub"] = {
        "repo_id": repo,
        "filename": entry.filename,
        "revision": "COMMIT-SHA-OF-THE-UPLOAD",
        "sha256": sha,
        "size": size,
    }
    snippet = out / "manifest_snippet.json"
    write_text_atomic(snippet, json.dumps(snippet_entry, indent=2, ensure_ascii=False) + "\n")
    warning = None
    if entry.license.lower() in _NOT_REDISTRIBUTABLE:
        warning = (
            f"{variant}: the licence is {entry.license}; make sure the authors allow redistribution before publishing"
        )
    return ExportResult(out, weights, readme, snippet, sha, size, warning)
