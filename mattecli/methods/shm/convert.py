"""The MindSpore model zoo's SHM checkpoint -> our parameter names (read without MindSpore)."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["is_mindspore", "remap_mindspore"]

# ----------------------------------------------------------------------------- MindSpore checkpoint
_MS_BN_LEAVES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}

_MS_WRAPPER = re.compile(r"^(?:(?:network|_backbone|backbone)\.)+(?=[tm]_net\.)")

_MS_SENTINELS = ("t_net.feature.head_conv.1.moving_variance", "m_net.deconv_4.weight")


def _ms_name(key: str) -> str:
    """Drop training-wrapper prefixes (defensive: ``save_checkpoint(net)`` writes none)."""
    return _MS_WRAPPER.sub("", key)


def is_mindspore(state_dict: Mapping) -> bool:
    """Whether a state dict is the MindSpore model zoo's SHM ``net`` (BN ``moving_variance`` and M-Net deconv)."""
    names = {_ms_name(k) for k in state_dict}
    return all(s in names for s in _MS_SENTINELS)


def remap_mindspore(state_dict: dict) -> dict:
    """MindSpore SHM parameter names -> ours.

    Network parameters (``t_net.*``, ``m_net.*``) keep their names except BatchNorm leaves
    (``gamma/beta/moving_mean/moving_variance`` -> ``weight/bias/running_mean/running_var``);
    everything else (optimizer state such as ``moment1.*``/``moments.*``, ``global_step``,
    ``learning_rate``, ``beta1_power``...) is dropped. ``num_batches_tracked`` buffers, which
    MindSpore has no equivalent of, are filled in by the loader.
    """
    out: dict = {}
    for key, value in state_dict.items():
        name = _ms_name(key)
        if not name.startswith(("t_net.", "m_net.")):
            continue
        head, _, leaf = name.rpartition(".")
        out[f"{head}.{_MS_BN_LEAVES.get(leaf, leaf)}"] = value
    return out
