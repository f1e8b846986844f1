"""Weights for a run: a verified local file for each variant (fetched on first use), and the loaded network."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mattecli.errors import UnknownCheckpointError, WeightsNotCachedError
from mattecli.weights.checkpoints import Architecture, conform, convert_file, get_architecture, layout_of, load_into
from mattecli.weights.local import is_local, local_copy, not_available, offline_reason, verified_path
from mattecli.weights.manifest import get_entry
from mattecli.weights.pull import pull

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["ensure_weights", "load_model", "prefetch"]


def ensure_weights(variant: str, *, download: bool = True, progress: type | None = None) -> Path:
    """A verified local weights file for ``variant``: cached hub copy, else the authors' hub file,
    else an imported copy (a pulled official file is one), else (when downloadable, ``download``
    and not offline) :func:`~mattecli.weights.pull.pull`.

    Raises:
        WeightsNotCachedError: not local and cannot be downloaded now (offline, ``download=False``,
            every source failed).
        WeightsUnavailableError: not local and nothing publishes it (import it).
        ChecksumMismatchError: the local file is not the expected one; it is never loaded.
    """
    entry = get_entry(variant)
    copy = local_copy(entry)
    if copy is not None:
        return verified_path(copy)
    if not entry.downloadable:
        raise not_available(entry)
    reason = offline_reason(download)
    if reason:
        raise not_available(entry, reason)
    return pull(variant, progress=progress).path


def prefetch(variants: Iterable[str], *, download: bool = True, progress: type | None = None) -> list[Path]:
    """:func:`ensure_weights` for each variant, in order, each once: what a run calls before its first
    image so that a missing file is fetched (or refused, offline) before any work.

    Raises:
        WeightsNotCachedError: offline and several variants are missing (one message names them all);
            else as :func:`ensure_weights`.
    """
    variants = list(dict.fromkeys(variants))
    reason = offline_reason(download)
    if reason is not None:  # name every missing file at once rather than one per run
        missing = [get_entry(v) for v in variants if not is_local(get_entry(v))]
        offline = [e for e in missing if e.downloadable]
        if len(offline) > 1:
            names = " ".join(e.variant for e in offline)
            routes = "; ".join(e.manual_route() for e in offline)
            raise WeightsNotCachedError(
                f"{', '.join(e.variant for e in offline)} weights {reason}; run `mattecli weights pull {names}`, "
                f"or {routes}",
                hint="`mattecli weights list` shows where each variant comes from",
            )
    return [ensure_weights(v, download=download, progress=progress) for v in variants]


def load_model(
    variant: str,
    device: str | torch.device = "cpu",
    weights_file: str | Path | None = None,
    *,
    download: bool = True,
    progress: type | None = None,
    architecture: Architecture | None = None,
) -> nn.Module:
    """Build ``variant``'s network and load its weights strictly; the one way model code gets weights.

    Args:
        variant: manifest variant, e.g. ``"sim-comp1k"``.
        device: where to put the module (``"cpu"``, ``"cuda:0"``, a ``torch.device``).
        weights_file: ``--weights FILE`` override for local experiments: a converted safetensors
            file or an official checkpoint, checked key by key like an import (but not against the
            manifest's sha256).
        download: allow :func:`~mattecli.weights.pull.pull` when the weights are not local.
        progress: tqdm-compatible class for a download bar.
        architecture: the variant's network and key mapping (a method's declaration); default
            the one registered for ``variant``.

    Returns:
        The module in eval mode on ``device``.

    Raises:
        WeightsUnavailableError, WeightsNotCachedError, ChecksumMismatchError,
        CheckpointMismatchError, UnknownCheckpointError, UnsafeCheckpointError.
    """
    entry = get_entry(variant)
    arch = architecture or get_architecture(variant)
    if weights_file is not None:
        source = Path(weights_file).expanduser()
        if not source.is_file():
            raise UnknownCheckpointError(f"--weights {source} does not exist or is not a file")
    else:
        source = ensure_weights(variant, download=download, progress=progress)
    model = arch.build()
    layout = layout_of(model)
    if weights_file is not None:
        tensors = convert_file(source, entry, arch, layout).tensors
    else:
        from safetensors.torch import load_file

        tensors = conform(load_file(str(source)), layout, variant, source)
    load_into(model, tensors, layout, variant, source)
    return model.to(device).eval()
