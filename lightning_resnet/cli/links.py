"""Values the command line computes from other options (``parser.link_arguments``): what the data module must
produce for the model the options describe."""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser

from ..errors import UserError
from ..models import is_weights_name, resolve
from ..models.weights import recorded_normalization
from ..training.distillation import teacher_checkpoint


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


def extended_checkpoint(extend: str | None) -> str | None:
    """The checkpoint ``model.extend`` names (of a run folder, its newest run's best), whose run's classes and images
    the data module reads."""
    try:
        return None if extend is None else str(teacher_checkpoint(extend, "model.extend"))
    except UserError:
        return extend  # said in one line by the data module (an error here would come wrapped in the parser's)


def link_model_and_data(parser: LightningArgumentParser) -> None:
    """What the model takes from the data module (its classes and task, once it is made) and what the data module
    takes from the model's options (channels, the weights' normalization, class weighting, the model extended)."""
    parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
    parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
    parser.link_arguments("data.task", "model.task", apply_on="instantiate")
    parser.link_arguments("model.backbone_options", "data.channels", compute_fn=input_channels)
    parser.link_arguments(("model.pretrained", "model.backbone", "model.backbone_options"),
                          "data.weights_normalization", compute_fn=weights_normalization)
    parser.link_arguments("data", "model.class_counts", compute_fn=lambda data: data.training_class_counts,
                          apply_on="instantiate")
    parser.link_arguments("model.class_weights", "data.weighted_loss", compute_fn=lambda weights: weights is not None)
    parser.link_arguments("model.extend", "data.extends", compute_fn=extended_checkpoint)
