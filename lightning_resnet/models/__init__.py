"""Hand-written ResNet / ResNeXt backbones, weight-compatible with torchvision and timm."""

from .registry import (
    UnknownBackboneError,
    WeightsError,
    create_model,
    list_models,
    load_pretrained,
    read_state_dict,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
    wide_resnet50_2,
    wide_resnet101_2,
    would_run_code,
)
from .resnet import BasicBlock, Bottleneck, ResNet
from .summary import StageSummary, format_summary, summarize

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "StageSummary",
    "UnknownBackboneError",
    "WeightsError",
    "create_model",
    "format_summary",
    "list_models",
    "load_pretrained",
    "read_state_dict",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "summarize",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "would_run_code",
]
