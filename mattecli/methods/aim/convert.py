"""AIM's official checkpoint (``aimnet_pretrained_matting.pth``) -> our parameter names.

The authors' module registers its backbone twice: ``resnet.*`` and the aliases ``encoder0..4.*``
hold the same tensors; our network registers it once, as ``resnet.*``. The unused ImageNet
classifier ``resnet.fc.*`` is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["is_official", "remap_official"]

_ALIASES = [  # official duplicate name -> our name (the backbone is registered twice officially)
    (re.compile(r"^encoder0\.0\."), "resnet.conv1."),
    (re.compile(r"^encoder0\.1\."), "resnet.bn1."),
    (re.compile(r"^encoder1\.0\."), "resnet.layer1."),
    (re.compile(r"^encoder2\."), "resnet.layer2."),
    (re.compile(r"^encoder3\."), "resnet.layer3."),
    (re.compile(r"^encoder4\."), "resnet.layer4."),
]


def is_official(state_dict: Mapping) -> bool:
    """Whether a state dict looks like the official AimNet one (sentinel keys of both decoders)."""
    return "decoder_final_g.weight" in state_dict and "decoder_final_l.weight" in state_dict


def remap_official(state_dict: dict) -> dict:
    """Official AimNet state dict -> ours.

    Folds the ``encoder0..4.*`` aliases into ``resnet.*`` (checking that both copies
    hold the same values; a file with only the aliases is accepted too) and drops
    the unused ImageNet classifier ``resnet.fc.*``.

    Raises:
        CheckpointMismatchError: an alias whose values differ from its ``resnet.*`` twin.
    """
    import torch

    from mattecli.errors import CheckpointMismatchError

    out: dict = {}
    aliases: dict = {}
    for key, value in state_dict.items():
        if key.startswith("resnet.fc."):
            continue
        for pattern, repl in _ALIASES:
            if pattern.match(key):
                aliases[pattern.sub(repl, key)] = (key, value)
                break
        else:
            out[key] = value
    for ours, (theirs, value) in aliases.items():
        if ours in out:
            if out[ours].shape != value.shape or not torch.equal(out[ours], value):
                raise CheckpointMismatchError(f"AIM checkpoint: {theirs} differs from its alias {ours}")
        else:
            out[ours] = value
    return out
