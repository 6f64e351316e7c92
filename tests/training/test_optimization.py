"""Parameter groups and learning-rate schedules, stepped by hand: pure functions, no training."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_resnet.models import create_model
from lightning_resnet.training.optimization import (
    apply_lr_factors,
    build_scheduler,
    fused_when_left_open,
    parameter_groups,
)


def rates(schedule: str, total_steps: int = 16, steps_per_epoch: int = 4, **options) -> list[float]:
    """The rate of each of ``total_steps`` optimizer steps, as Lightning steps a per-step scheduler."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, schedule, total_steps, steps_per_epoch, **options)
    seen = []
    for _ in range(total_steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_cosine_with_linear_warmup():
    seen = rates("cosine", warmup_epochs=1)
    assert seen[0] == pytest.approx(0.001)
    assert seen[:5] == sorted(seen[:5]) and seen[4] == pytest.approx(0.1)
    assert seen[4:] == sorted(seen[4:], reverse=True)
    assert seen[10] == pytest.approx(0.1 * (1 + math.cos(math.pi * 6 / 12)) / 2)


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_a_schedule_saved_by_a_one_step_run_loads_into_a_longer_one(schedule):
    """Resuming with a larger trainer.max_epochs builds the schedule again for more steps, then loads the saved one."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    saved = build_scheduler(optimizer, schedule, total_steps=1, steps_per_epoch=1, warmup_epochs=1).state_dict()
    longer = build_scheduler(optimizer, schedule, total_steps=2, steps_per_epoch=1, warmup_epochs=1)
    longer.load_state_dict(saved)
    assert type(longer).__name__ == "SequentialLR"


def test_onecycle_rises_then_anneals():
    seen = rates("onecycle", warmup_epochs=1)
    peak = seen.index(max(seen))
    assert peak == 3 and max(seen) == pytest.approx(0.1, rel=1e-3)  # torch counts the rise as pct_start * steps - 1
    assert seen[-1] < 0.001


def test_step_decays_every_step_epochs():
    seen = rates("step", step_epochs=2, step_gamma=0.5)
    assert seen[:8] == [pytest.approx(0.1)] * 8 and seen[8:] == [pytest.approx(0.05)] * 8


def test_constant():
    assert rates("constant") == [pytest.approx(0.1)] * 16


def test_every_parameter_is_in_one_group_frozen_ones_too_and_norms_and_biases_are_not_decayed():
    network = create_model("resnet18", num_classes=4, stem="cifar", channels=[8, 16, 32, 64])
    network.freeze_backbone()
    groups = parameter_groups(network, backbone_lr_factor=0.1)
    optimizer = apply_lr_factors(torch.optim.SGD(groups, lr=0.2, momentum=0.9, weight_decay=1e-4))
    by_name = {group["name"]: group for group in optimizer.param_groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    placed = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(placed) == sorted(id(p) for p in network.parameters())
    assert all(p.ndim > 1 for name in ("backbone", "head") for p in by_name[name]["params"])
    assert all(p.ndim == 1 for name in ("backbone_no_decay", "head_no_decay") for p in by_name[name]["params"])
    assert by_name["head_no_decay"]["weight_decay"] == 0.0 and by_name["head"]["weight_decay"] == 1e-4
    assert by_name["backbone"]["lr"] == pytest.approx(0.02) and by_name["head"]["lr"] == pytest.approx(0.2)


@pytest.mark.parametrize("kind", [torch.optim.AdamW, torch.optim.SGD])
def test_an_optimizer_left_open_takes_the_fused_kernel_with_its_groups_and_the_same_steps(kind):
    model = create_model("resnet18", num_classes=3, stem="cifar")
    reference = [parameter.detach().clone() for parameter in model.parameters()]
    options = {"lr": 0.01, "weight_decay": 0.05, **({"momentum": 0.9} if kind is torch.optim.SGD else {})}
    looped = apply_lr_factors(kind(parameter_groups(model, backbone_lr_factor=0.1), foreach=False, **options))
    fused = fused_when_left_open(apply_lr_factors(kind(parameter_groups(model, backbone_lr_factor=0.1), **options)))
    assert all(group["fused"] for group in fused.param_groups)  # what torch's step reads
    assert fused_when_left_open(looped) is looped  # a choice in the config stays
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in fused.param_groups] == [
        (g["name"], g["lr"], g["weight_decay"]) for g in looped.param_groups]

    generator = torch.Generator().manual_seed(0)
    gradients = [[torch.randn(p.shape, generator=generator) for p in model.parameters()] for _ in range(3)]
    results = []
    for optimizer in (looped, fused):
        with torch.no_grad():
            for parameter, start in zip(model.parameters(), reference):
                parameter.copy_(start)
        for step in gradients:
            for parameter, gradient in zip(model.parameters(), step):
                parameter.grad = gradient.clone()
            optimizer.step()
        results.append([parameter.detach().clone() for parameter in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*results))
    assert not all(torch.equal(a, b) for a, b in zip(results[1], reference))
