"""The named architectures (torchvision's names, and the ResNet paper's CIFAR networks): one function each,
registered by :func:`register_model` as it is defined, and :func:`create_model` by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ..errors import UserError
from .resnet import BasicBlock, Bottleneck, ResNet

Factory = Callable[..., ResNet]
_MODELS: dict[str, Factory] = {}


def register_model(factory: Factory) -> Factory:
    """Make ``factory`` an architecture of :func:`create_model` under its function's name (a decorator)."""
    _MODELS[factory.__name__] = factory
    return factory


@register_model
def resnet18(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNet-18 (He et al., 2015): BasicBlock, [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **options)


@register_model
def resnet34(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNet-34: BasicBlock, [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **options)


@register_model
def resnet50(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNet-50: Bottleneck, [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **options)


@register_model
def resnet101(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNet-101: Bottleneck, [3, 4, 23, 3]."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **options)


@register_model
def resnet152(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNet-152: Bottleneck, [3, 8, 36, 3]."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, **options)


@register_model
def resnext50_32x4d(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNeXt-50 (Xie et al., 2016): 32 groups of 4 channels in the first stage's 3x3 conv."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4, **options)


@register_model
def resnext101_32x8d(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNeXt-101 32x8d."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, groups=32, width_per_group=8, **options)


@register_model
def resnext101_64x4d(num_classes: int = 1000, **options: Any) -> ResNet:
    """ResNeXt-101 64x4d."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, groups=64, width_per_group=4, **options)


@register_model
def wide_resnet50_2(num_classes: int = 1000, **options: Any) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis, 2016): the bottleneck's 3x3 conv twice as wide."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128, **options)


@register_model
def wide_resnet101_2(num_classes: int = 1000, **options: Any) -> ResNet:
    """Wide ResNet-101-2."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, width_per_group=128, **options)


def cifar_resnet(depth: int, num_classes: int = 10, **options: Any) -> ResNet:
    """The ResNet paper's CIFAR network of ``depth`` = 6n + 2 layers (section 4.2): a 3x3 stem of 16 channels, three
    stages of n basic blocks of 16, 32 and 64 channels at 32, 16 and 8 px, global average pooling, and zero-padding
    shortcuts (option A; ``shortcut="projection"`` is option B)."""
    blocks = (depth - 2) // 6
    return ResNet(BasicBlock, [blocks] * 3, num_classes,
                  **{"stem": "cifar", "channels": (16, 32, 64), "shortcut": "zero_pad", **options})


@register_model
def resnet20(num_classes: int = 10, **options: Any) -> ResNet:
    """ResNet-20 (the paper's Table 6): 3 blocks per stage, 0.27 M parameters."""
    return cifar_resnet(20, num_classes, **options)


@register_model
def resnet32(num_classes: int = 10, **options: Any) -> ResNet:
    """ResNet-32: 5 blocks per stage, 0.46 M parameters."""
    return cifar_resnet(32, num_classes, **options)


@register_model
def resnet44(num_classes: int = 10, **options: Any) -> ResNet:
    """ResNet-44: 7 blocks per stage, 0.66 M parameters."""
    return cifar_resnet(44, num_classes, **options)


@register_model
def resnet56(num_classes: int = 10, **options: Any) -> ResNet:
    """ResNet-56: 9 blocks per stage, 0.85 M parameters."""
    return cifar_resnet(56, num_classes, **options)


@register_model
def resnet110(num_classes: int = 10, **options: Any) -> ResNet:
    """ResNet-110: 18 blocks per stage, 1.7 M parameters."""
    return cifar_resnet(110, num_classes, **options)


@register_model
def resnet1202(num_classes: int = 10, **options: Any) -> ResNet:
    """ResNet-1202: 200 blocks per stage, 19.4 M parameters (the paper's overfitting example)."""
    return cifar_resnet(1202, num_classes, **options)


def list_models() -> list[str]:
    return list(_MODELS)


def create_model(name: str, **options: Any) -> ResNet:
    """Build the architecture ``name`` (one of :func:`list_models`) with the given options."""
    if name not in _MODELS:
        raise UnknownBackboneError(f"unknown backbone {name!r}; valid names: {', '.join(_MODELS)}")
    try:
        return _MODELS[name](**options)
    except (TypeError, ValueError) as error:
        taken = [key for key in inspect.signature(ResNet).parameters if key not in ("block", "layers", "num_classes")]
        listed = f"; the options: {', '.join(taken)}" if any(key not in taken for key in options) else ""
        raise BackboneOptionsError(f"bad option for backbone {name!r} (model.backbone_options): {error}{listed}"
                                   ) from None


class UnknownBackboneError(UserError):
    """A backbone name that is not in the registry."""


class BackboneOptionsError(UserError, TypeError):
    """Options that the architecture does not take, or values it cannot build."""
