"""SIM's official checkpoints -> our parameter names.

The matting network (``ckpt_best.pth``: ``{'epoch', 'state_dict', 'best_sad'}``, 410 keys
``encoder.*`` / ``decoder.*``) already uses our names. The patch classifier
(``classifier_resnet50_best.pth.tar``: ``{'state_dict': {'module.conv1.weight': ...}}``, 320 keys,
torchvision ResNet-50 names with a 4-channel ``conv1`` and ``fc`` 2048 -> 20) loses its one
leading prefix, as the official loader does.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["is_official", "remap_official", "is_official_classifier", "remap_official_classifier"]

# ----------------------------------------------------------------------------- official checkpoints
_MATTING_SENTINELS = (
    "encoder.conv1_side.weight",
    "decoder.conv_up4_alpha.0.weight",
    "decoder.global_module.project.0.weight",
)

_CLASSIFIER_TOP = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc.")


def is_official(state_dict: Mapping) -> bool:
    """Whether a state dict is the official SIM matting one (``MattingModule``: ``encoder.*`` + ``decoder.*``)."""
    return all(k in state_dict for k in _MATTING_SENTINELS)


def remap_official(state_dict: dict) -> dict:
    """Official matting state dict -> ours: the identity (our modules use the official names).

    The checkpoint (``{'epoch', 'state_dict', 'best_sad'}``, 410 keys, no ``module.``) is unwrapped
    and ``module.``-stripped by :mod:`mattecli.weights` before this is called; the training-only
    heads ``decoder.conv_up4_fb`` / ``conv_up4_attn`` are kept because the module has them.
    """
    return dict(state_dict)


def _strip_classifier_prefix(state_dict: Mapping) -> dict:
    """The official loader drops the first dotted component of every key (``utils/util.py remove_prefix``)."""
    sd = dict(state_dict)
    if "conv1.weight" in sd or not sd:
        return sd
    firsts = {k.split(".", 1)[0] for k in sd}
    if len(firsts) == 1 and all("." in k for k in sd):
        return {k.split(".", 1)[1]: v for k, v in sd.items()}
    return sd


def is_official_classifier(state_dict: Mapping) -> bool:
    """Whether a state dict is the official patch classifier (4-channel ResNet-50, 20 classes), prefix or not."""
    sd = _strip_classifier_prefix(state_dict)
    conv1, fc = sd.get("conv1.weight"), sd.get("fc.weight")
    return (
        conv1 is not None
        and fc is not None
        and tuple(conv1.shape[:2]) == (64, 4)
        and fc.shape[0] == 20
        and all(k.startswith(_CLASSIFIER_TOP) for k in sd)
    )


def remap_official_classifier(state_dict: dict) -> dict:
    """Official classifier state dict -> ours: drop the one leading prefix (``module.``) if still there.

    ``classifier_resnet50_best.pth.tar`` holds ``{'state_dict': {'module.conv1.weight': ...}}``
    (320 keys, torchvision ResNet-50 names); the names below the prefix are ours.
    """
    return _strip_classifier_prefix(state_dict)
