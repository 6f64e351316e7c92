"""Values the command line computes from other options (``parser.link_arguments``): what the data module must
produce for the model the options describe."""

from __future__ import annotations

from ..errors import UserError
from ..models import is_weights_name, resolve
from ..models.weights import recorded_normalization


def input_channels(backbone_options: dict | None) -> int:
    """The image channels the model takes: what the data module must produce."""
    return int((backbone_options or {}).get("in_chans", 3))


def weights_normalization(pretrained: str | None, backbone: str, backbone_options: dict | None) -> list | None:
    """``[mean, std]`` of the weights ``model.pretrained`` names (read from the library, no download) or of a
    ``.safetensors`` file that records it (``pretrain``'s), else None."""
    recorded = recorded_normalization(pretrained) if pretrained else None
    if recorded is not None:
        return [recorded[0], recorded[1]]
    if not is_weights_name(pretrained):
        return None
    try:
        weights = resolve(pretrained, backbone, backbone_options)
    except UserError:
        return None  # said in one line when the model loads the weights
    return [list(weights.mean), list(weights.std)]
