"""Per-stage table of a ResNet: output shapes, parameters and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .resnet import ResNet


def stage_modules(model: ResNet) -> dict[str, tuple[str, ...]]:
    """Each row of the table and the modules of ``model`` it counts: the stem, each stage, the head."""
    stages = {f"layer{index + 1}": (f"layer{index + 1}",) for index in range(model.num_stages)}
    return {"stem": ("conv1", "bn1", "maxpool"), **stages, "head": ("avgpool", "dropout", "fc")}


@dataclass
class StageSummary:
    name: str
    output_shape: tuple[int, ...]
    trainable_params: int
    frozen_params: int
    macs: int


def summarize(model: ResNet, image_size: int | tuple[int, int] = 224) -> list[StageSummary]:
    """Run one image of ``image_size`` pixels (one side, or height and width) through ``model`` and describe each
    stage.

    MACs are half of the FLOPs that ``torch.utils.flop_counter`` counts for convolutions and
    matrix products, the convention of torchvision's tables and the ResNet paper.
    """
    in_chans = model.conv1.in_channels if isinstance(model.conv1, nn.Conv2d) else model.conv1[0].in_channels
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = []
    modules_of_row = stage_modules(model)
    for stage, names in modules_of_row.items():
        last = next((getattr(model, name) for name in reversed(names) if hasattr(model, name)), None)
        if last is not None:
            hooks.append(last.register_forward_hook(_record_shape(shapes, stage)))

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            size = (image_size, image_size) if isinstance(image_size, int) else image_size
            model(torch.zeros(1, in_chans, *size, device=next(model.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)

    flops_by_module = {name.split(".", 1)[1]: sum(counts.values())
                       for name, counts in counter.get_flop_counts().items() if "." in name}
    rows = []
    for stage, names in modules_of_row.items():
        modules = [getattr(model, name) for name in names if hasattr(model, name)]
        if stage == "head" and model.features_only:
            continue
        params = [p for module in modules for p in module.parameters()]
        rows.append(
            StageSummary(
                name=stage,
                output_shape=shapes.get(stage, ()),
                trainable_params=sum(p.numel() for p in params if p.requires_grad),
                frozen_params=sum(p.numel() for p in params if not p.requires_grad),
                macs=sum(flops_by_module.get(name, 0) for name in names) // 2,
            )
        )
    return rows


def _record_shape(shapes: dict[str, tuple[int, ...]], stage: str):
    def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        shapes[stage] = tuple(output.shape[1:])

    return hook


def format_summary(rows: list[StageSummary], title: str = "") -> str:
    """The rows as a text table with a total line."""
    header = f"{'stage':<8} {'output':>14} {'trainable':>12} {'frozen':>12} {'GMACs':>8}"
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for row in rows:
        shape = "x".join(str(size) for size in row.output_shape)
        lines.append(
            f"{row.name:<8} {shape:>14} {row.trainable_params:>12,} {row.frozen_params:>12,} {row.macs / 1e9:>8.3f}"
        )
    lines.append("-" * len(header))
    trainable = sum(row.trainable_params for row in rows)
    frozen = sum(row.frozen_params for row in rows)
    macs = sum(row.macs for row in rows)
    lines.append(f"{'total':<8} {'':>14} {trainable:>12,} {frozen:>12,} {macs / 1e9:>8.3f}")
    lines.append(f"{(trainable + frozen) / 1e6:.2f} M parameters, {macs / 1e9:.2f} GMACs")
    return "\n".join(lines)
