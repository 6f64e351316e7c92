"""Hand-written ResNet / ResNeXt backbones, weight-compatible with torchvision and timm.

``resnet`` (the network, written by hand on purpose) -> ``registry`` (the named architectures, each
registered once by :func:`register_model`) -> ``weights`` (state dicts from files, loaded with a report)
-> ``hub`` (weights by name from the torchvision and Hugging Face caches) -> ``summary`` (per-stage
shapes, parameters and MACs).
"""

from .hub import NamedWeights, fetch, is_weights_name, load_weights, resolve
from .registry import BackboneOptionsError, UnknownBackboneError, create_model, list_models, register_model
from .resnet import BasicBlock, Bottleneck, ResNet
from .summary import StageSummary, format_summary, summarize
from .weights import WeightsError, WeightsNotFoundError, load_pretrained, read_state_dict, would_run_code

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "StageSummary",
    "BackboneOptionsError",
    "UnknownBackboneError",
    "WeightsError",
    "WeightsNotFoundError",
    "NamedWeights",
    "create_model",
    "fetch",
    "is_weights_name",
    "load_weights",
    "resolve",
    "format_summary",
    "list_models",
    "load_pretrained",
    "read_state_dict",
    "register_model",
    "summarize",
    "would_run_code",
]
