"""ResNet and ResNeXt, written out by hand so they can be read and changed.

The module layout and parameter names follow torchvision's ``resnet.py`` (``conv1``,
``bn1``, ``layer1``..``layer4``, ``downsample``, ``fc``), so torchvision and timm weights
of the same architecture load with ``strict=True``.

Deviations from the torchvision defaults are keyword options of :class:`ResNet`:
the stem (ImageNet 7x7, CIFAR 3x3, deep ResNet-C), the number of stages and their widths, stride placement
(v1 / v1.5), the shortcuts (projection, average-pool projection as in ResNet-D, or the paper's parameter-free
zero-padding), dilation, dropout, stochastic depth and a features-only mode for dense tasks and transfer learning.
The ResNet paper's CIFAR networks (ResNet-20 ... ResNet-1202) are this class with three stages of 16, 32 and 64
channels and zero-padding shortcuts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import StochasticDepth

Stem = Literal["imagenet", "cifar", "deep"]
Shortcut = Literal["projection", "zero_pad"]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def drop_path(rate: float) -> nn.Module:
    """Stochastic depth on the residual branch: drops it for whole samples of the batch."""
    return StochasticDepth(rate, mode="row") if rate > 0 else nn.Identity()


class ZeroPadShortcut(nn.Module):
    """The paper's option A shortcut, without parameters: every ``stride``-th pixel, and zeros for the channels
    added."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.added_channels = out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.added_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, stride_in_1x1: bool = False,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and width_per_group=64 (use a Bottleneck network)")
        self.conv1 = conv3x3(in_channels, planes, stride, dilation=dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.drop_path = drop_path(drop_path_rate)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.drop_path(out)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (ResNet-50 and deeper).

    ``stride_in_1x1=False`` puts the stride on the 3x3 convolution (ResNet v1.5, torchvision's
    default); ``True`` puts it on the first 1x1 convolution, as in the paper (v1) and Keras.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1, stride_in_1x1: bool = False,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = drop_path(drop_path_rate)

    def last_norm(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.drop_path(out)
        out += identity
        return self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A ResNet / ResNeXt / Wide ResNet, configured by its block type and blocks per stage.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: number of blocks in each stage: four for the ImageNet networks, three for the paper's CIFAR ones.
        num_classes: outputs of the classifier ``fc``.
        in_chans: input channels (1 for grayscale data).
        stem: ``"imagenet"`` (7x7 stride-2 conv and max-pool), ``"cifar"`` (3x3 stride-1 conv,
            no max-pool, for 32 px inputs) or ``"deep"`` (three 3x3 convs, ResNet-C).
        channels: the width of each stage before the block's expansion; the stem gives the first.
            Narrower than the default (64, 128, 256, 512) is a smaller network for small data or a laptop
            (a quarter of the width is a sixteenth of the weights and the multiply-adds); pretrained
            weights fit only the default.
        groups: cardinality of the grouped 3x3 convolution (ResNeXt).
        width_per_group: channels per group of the 3x3 convolution at the first stage.
        stride_in_1x1: stride on the first 1x1 convolution of a Bottleneck (v1) instead of the 3x3 (v1.5).
        shortcut: where a block changes the shape, ``"projection"`` (a strided 1x1 conv and BatchNorm, the paper's
            option B) or ``"zero_pad"`` (the paper's option A: subsampled, the added channels zero; no parameters).
        avg_down: projection shortcuts downsample with a 2x2 average pool and a stride-1 1x1 conv (ResNet-D).
        zero_init_residual: start each residual branch at zero by zeroing its last BatchNorm's scale.
        replace_stride_with_dilation: for each stage after the first, keep the resolution and dilate instead.
        drop_rate: dropout probability before the classifier.
        drop_path_rate: stochastic depth rate of the last block, rising linearly from 0 at the first.
        features_only: build no classifier; ``forward`` returns the stage maps.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        in_chans: int = 3,
        stem: Stem = "imagenet",
        channels: Sequence[int] = (64, 128, 256, 512),
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        shortcut: Shortcut = "projection",
        avg_down: bool = False,
        zero_init_residual: bool = False,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        features_only: bool = False,
    ) -> None:
        super().__init__()
        stages = len(layers)
        if not 1 <= stages <= 4 or not all(isinstance(blocks, int) and blocks > 0 for blocks in layers):
            raise ValueError(f"layers must give the blocks of 1 to 4 stages, got {list(layers)}")
        if len(channels) != stages or not all(isinstance(width, int) and width > 0 for width in channels):
            raise ValueError(f"channels must give {stages} positive widths, one per stage, got {list(channels)}")
        dilate = [False] * (stages - 1) if replace_stride_with_dilation is None else replace_stride_with_dilation
        if len(dilate) != stages - 1:
            raise ValueError(f"replace_stride_with_dilation must have {stages - 1} entries (stages 2-{stages}), "
                             f"got {list(dilate)}")
        if shortcut not in ("projection", "zero_pad"):
            raise ValueError(f"unknown shortcut {shortcut!r}: expected 'zero_pad' (the paper's option A) or "
                             "'projection' (its option B)")
        if shortcut == "zero_pad" and (avg_down or block is not BasicBlock):
            raise ValueError("shortcut 'zero_pad' takes BasicBlock networks without avg_down (it has no projection)")
        self.groups = groups
        self.base_width = width_per_group
        self.stride_in_1x1 = stride_in_1x1
        self.shortcut = shortcut
        self.avg_down = avg_down
        self.in_channels = channels[0]
        self.dilation = 1
        self.features_only = features_only
        self._backbone_frozen = False

        self.conv1 = self._make_stem(stem, in_chans, channels[0])
        self.bn1 = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        total_blocks = sum(layers)
        path_rates = [drop_path_rate * i / max(total_blocks - 1, 1) for i in range(total_blocks)]
        first = 0
        for index, (planes, blocks) in enumerate(zip(channels, layers)):
            stride, dilated = (1, False) if index == 0 else (2, dilate[index - 1])
            stage = self._make_layer(block, planes, blocks, stride, dilated, path_rates[first : first + blocks])
            self.add_module(f"layer{index + 1}", stage)
            first += blocks
        self.num_stages = stages

        self.stage_channels = [planes * block.expansion for planes in channels]
        self.num_features = self.stage_channels[-1]
        self.num_classes = 0 if features_only else num_classes
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if not features_only:
            self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
            self.fc = nn.Linear(self.num_features, num_classes)

        self._init_weights(zero_init_residual)

    @staticmethod
    def _make_stem(stem: Stem, in_chans: int, width: int) -> nn.Module:
        if stem == "imagenet":
            return nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
        if stem == "cifar":
            return conv3x3(in_chans, width)
        if stem == "deep":
            half = max(width // 2, 1)
            return nn.Sequential(
                conv3x3(in_chans, half, stride=2),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                conv3x3(half, half),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                conv3x3(half, width),
            )
        raise ValueError(f"unknown stem {stem!r}: expected 'imagenet', 'cifar' or 'deep'")

    def _make_shortcut(self, out_channels: int, stride: int) -> nn.Module:
        if self.shortcut == "zero_pad":
            return ZeroPadShortcut(self.in_channels, out_channels, stride)
        if not self.avg_down:
            return nn.Sequential(conv1x1(self.in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))
        pool = (
            nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        )
        return nn.Sequential(pool, conv1x1(self.in_channels, out_channels), nn.BatchNorm2d(out_channels))

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int, dilate: bool, path_rates: Sequence[float]
    ) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self.in_channels != out_channels:
            downsample = self._make_shortcut(out_channels, stride)

        options = dict(groups=self.groups, base_width=self.base_width, stride_in_1x1=self.stride_in_1x1)
        layers = [
            block(self.in_channels, planes, stride, downsample, dilation=previous_dilation,
                  drop_path_rate=path_rates[0], **options)
        ]
        self.in_channels = out_channels
        layers += [
            block(self.in_channels, planes, dilation=self.dilation, drop_path_rate=rate, **options)
            for rate in path_rates[1:]
        ]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.last_norm().weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        """``layer1``, ``layer2``, ...: the stages in order."""
        return [getattr(self, f"layer{index + 1}") for index in range(self.num_stages)]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The output map of each stage, at strides 4, 8, 16, 32 with the ImageNet stem."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps

    def forward_features(self, x: Tensor) -> Tensor:
        """The pooled vector that feeds the classifier: ``num_features`` wide (512 or 2048 at default widths, 64 in
        the paper's CIFAR networks)."""
        return torch.flatten(self.avgpool(self.forward_stages(x)[-1]), 1)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(self.dropout(features))

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        if self.features_only:
            return self.forward_stages(x)
        return self.forward_head(self.forward_features(x))

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Every parameter except the classifier's."""
        return [p for name, p in self.named_parameters() if not name.startswith("fc.")]

    def freeze_backbone(self) -> None:
        """Train only the classifier: no gradients for the backbone, its BatchNorm statistics kept."""
        for parameter in self.backbone_parameters():
            parameter.requires_grad_(False)
        self._backbone_frozen = True
        self.train(self.training)

    def unfreeze_backbone(self) -> None:
        for parameter in self.backbone_parameters():
            parameter.requires_grad_(True)
        self._backbone_frozen = False
        self.train(self.training)

    @property
    def backbone_frozen(self) -> bool:
        return self._backbone_frozen

    def train(self, mode: bool = True) -> ResNet:
        """Like ``nn.Module.train``, but a frozen backbone's BatchNorm layers stay in eval mode."""
        super().train(mode)
        if self._backbone_frozen:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self
