"""Pretrained weights: manifest, hub download, local cache, import of official checkpoints, loading.

Everything a deep method needs to get its weights goes through this package; model code never
downloads or opens checkpoint files itself. Modules, from the bottom up:

* ``manifest``: the typed, validated ``weights_manifest.json``;
* ``reading``: safe reading of PyTorch, safetensors and MindSpore files (no code runs, zip
  bombs refused);
* ``checkpoints``: the registry of each variant's :class:`Architecture`, key mapping and
  key/shape checks;
* ``store``: cache locations and sha256 hashing;
* ``trust``: what the authors' file must be when the manifest pins no sha256 (trust on first use);
* ``local``: the local copies of a variant, the one a run uses, ``weights list`` / ``verify``;
* ``imports``: ``weights import`` (conversion into the cache);
* ``hub_pull``, ``official_pull``, ``download``: pulls from the Hub, and from the authors' links
  (HTTP(S), Google Drive's flow, archives);
* ``pull``: the sources in order; ``load``: weights for a run (fetched on first use), the network
  loaded strictly;
* ``publish``: ``weights export``.

Where weights come from
-----------------------
``weights_manifest.json`` lists one entry per checkpoint *variant* (``sim-comp1k``, ``aim`` ...):
the paper, the licence, the authors' official file and its links, the location of our converted
``.safetensors`` file on the Hugging Face Hub (``"hub": null`` while it is not published), the
authors' own ``.safetensors`` file on the Hub where they publish one (``"official_hub"``: repo,
filename, revision, sha256, size, licence; ViTMatte) and how the conversion is done. A variant's
weights are found, in this order:

1. the hub copy in the standard Hugging Face cache, at the manifest's pinned commit
   (``models--{org}--{name}/snapshots/{revision}/{filename}``), checked against the manifest's
   sha256;
2. the authors' hub file in the same cache, at the commit the manifest pins, or, where no full
   commit and sha256 could be confirmed, at the commit its first fetch recorded, checked against
   the pinned (or recorded) sha256; it is loaded as it is, its keys strictly equal to the network's;
3. an *imported* copy: made by :func:`import_checkpoint` from the authors' file fetched by hand,
   or by :func:`pull` from the authors' own links;
4. a download (:func:`pull`, on ``weights pull`` or the first use of a method, never offline):
   ``huggingface_hub.hf_hub_download(repo_id, filename, revision=pinned)`` when a hub copy is
   published, else the authors' hub file (``hf_hub_download`` at the pinned commit; unpinned, at
   ``main`` the first time, the resolved commit and the file's sha256 then recorded in
   ``official_sha256.json``: trust on first use, see :func:`hub_revision`), else the official
   links in manifest order, each fetched from its ``url`` exactly as written (``download``:
   Google Drive's confirmation form, zip archives, resumed transfers), then converted like an
   import. A link marked ``manual`` (Baidu Netdisk, behind a password) is only named in messages.
   When every source fails, one line lists what was tried and the manual route (the links,
   passwords and the ``weights import`` command). A pickle (``pytorch_model.bin``) is never
   fetched from the Hub: the manifest names only ``.safetensors`` files there.

A file is hashed before its first load in a process (hashes are remembered per process, keyed by
inode, size and mtime) and never loaded when its sha256 differs from what is expected
(:class:`~mattecli.errors.ChecksumMismatchError`). An official file whose sha256 the manifest pins
(MindSpore) is refused when it differs; where the authors publish none (Google Drive), the first
download's sha256 is recorded beside the converted file (``official_sha256.json``: trust on first
use), later downloads must match it and ``weights verify`` checks the imported file's recorded
source against it. Hub downloads use huggingface_hub's own cache, locking and resume; official
downloads take a file lock per variant (``$HF_HUB_CACHE/.locks/models--mattecli-imports--{variant}``)
so that two processes pulling or first-using one variant do not both download it.

Where imported weights live (and why)
-------------------------------------
Imports go into the same cache root as hub downloads (``HF_HUB_CACHE``, i.e.
``$HF_HOME/hub``), as a repository folder that mattecli owns and that uses the Hub cache
layout::

    $HF_HUB_CACHE/models--mattecli-imports--{variant}/
        refs/main                         -> "{sha256}"
        snapshots/{sha256}/{filename}     the converted .safetensors file

The snapshot folder is named by the full sha256 of the file it holds, so an imported file is
content-addressed: verifying it needs no side file. We do not write into the published repo's
own folder (``models--{org}--{name}/snapshots/{revision}``) because (a) most variants are not
published, so there is no repo or revision to write under; (b) an imported file is a local
conversion whose bytes may differ from the published one (its metadata records the mattecli and
converter versions), so placing it under the pinned commit would misstate what that commit holds
and fail the manifest checksum; (c) keeping it a separate, well-formed cache repo means
``HF_HOME``/``HF_HUB_CACHE`` move both kinds of files together and Hugging Face's own tools
(``hf cache scan`` / ``hf cache delete``) list and delete imports like any other repo
(as ``mattecli-imports/{variant}``).

Networks and key mappings
-------------------------
This package imports no method. Importing :mod:`mattecli.methods` gives it every variant's
:class:`Architecture` (:func:`register_architecture`, called for each ``Variant`` a method's
``spec.py`` declares): ``build`` (the ``nn.Module`` with the parameter names of our converted
files), ``remap`` (official state dict -> ours) and ``detect`` (is a state dict in the official
layout?). A method's processor gets its network through :func:`load_model` (from
``mattecli.methods.loading``), which takes the architecture from the spec or this registry.

``remap`` receives the official state dict after container unwrapping (``state_dict`` /
``model`` / ``model_state_dict`` keys) and ``module.`` stripping, and returns a new dict keyed
like the module. PyTorch and MindSpore files are treated as official (remapped), unless
``detect`` says a dict is not official and its keys are already the module's; safetensors files
are treated as converted. Every key and shape is then checked against the module (missing,
unexpected and wrong-shape keys are listed in a :class:`~mattecli.errors.CheckpointMismatchError`).
Tensors that the module registers under several names (AIM's ``resnet.*`` and ``encoder*.*``)
are stored once in the converted file and restored on load. Conversion is reproducible: the
same source file, converter version and mattecli version give the same bytes (and sha256), so a
published file can be re-derived from the authors' original; importing a converted
``.safetensors`` file keeps its bytes as they are.
"""

from __future__ import annotations

from mattecli.weights.checkpoints import Architecture, get_architecture, register_architecture
from mattecli.weights.imports import CONVERTER_VERSION, ImportResult, import_checkpoint
from mattecli.weights.load import ensure_weights, load_model, prefetch
from mattecli.weights.local import LocalCopy, PullResult, WeightsStatus, local_path, official_hub_copy, status, verify
from mattecli.weights.manifest import (
    CheckpointEntry,
    Conversion,
    HubLocation,
    Manifest,
    OfficialFile,
    OfficialHubFile,
    OfficialLink,
    OfficialSource,
    Paper,
    default_manifest_path,
    get_entry,
    load_manifest,
    parse_manifest,
)
from mattecli.weights.publish import ExportResult, export
from mattecli.weights.pull import pull
from mattecli.weights.reading import read_checkpoint
from mattecli.weights.store import IMPORTS_NAMESPACE, sha256_file
from mattecli.weights.trust import hub_revision, trusted_source

__all__ = [
    # manifest
    "Paper",
    "OfficialLink",
    "OfficialFile",
    "OfficialSource",
    "HubLocation",
    "OfficialHubFile",
    "Conversion",
    "CheckpointEntry",
    "Manifest",
    "parse_manifest",
    "default_manifest_path",
    "load_manifest",
    "get_entry",
    # a variant's network, given by mattecli.methods
    "Architecture",
    "register_architecture",
    "get_architecture",
    "read_checkpoint",
    # local store
    "CONVERTER_VERSION",
    "IMPORTS_NAMESPACE",
    "LocalCopy",
    "WeightsStatus",
    "ImportResult",
    "PullResult",
    "sha256_file",
    "status",
    "local_path",
    "ensure_weights",
    "prefetch",
    "pull",
    "trusted_source",
    "hub_revision",
    "official_hub_copy",
    "import_checkpoint",
    "verify",
    "load_model",
    # publishing
    "ExportResult",
    "export",
]
