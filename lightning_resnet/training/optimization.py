"""What the optimizer gets: parameter groups, and a learning-rate schedule over the whole run stepped once per
optimizer step."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    MultiStepLR,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

from ..errors import UserError, check

Schedule = Literal["constant", "cosine", "onecycle", "step"]


def parameter_groups(model: nn.Module, backbone_lr_factor: float = 1.0) -> list[dict]:
    """The backbone's and the classifier's (``fc``) parameters, each split into decayed weights and undecayed
    biases and norm weights; the backbone's groups carry ``lr_factor`` ``backbone_lr_factor``.

    Every parameter goes in, the frozen ones too: ``unfreeze_at_epoch`` turns their gradients on in
    the middle of the run, and while frozen they have no gradient, which the optimizer skips. (timm's
    ``param_groups_weight_decay`` leaves out parameters that do not require a gradient, so a frozen
    backbone would never train after unfreezing.)
    """
    head = {id(p) for p in model.fc.parameters()}
    groups = []
    for part in ("backbone", "head"):
        params = [p for p in model.parameters() if (id(p) in head) == (part == "head")]
        factor = backbone_lr_factor if part == "backbone" else 1.0
        groups.append({"name": part, "params": [p for p in params if p.ndim > 1], "lr_factor": factor})
        groups.append({"name": f"{part}_no_decay", "params": [p for p in params if p.ndim <= 1],
                       "weight_decay": 0.0, "lr_factor": factor})
    return groups


def apply_lr_factors(optimizer: Optimizer) -> Optimizer:
    """Scale each group's learning rate by its ``lr_factor`` (the optimizer set every group to its ``lr``)."""
    for group in optimizer.param_groups:
        group["lr"] *= group.get("lr_factor", 1.0)
    return optimizer


def build_scheduler(
    optimizer: Optimizer,
    schedule: Schedule,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    step_epochs: int = 30,
    step_gamma: float = 0.1,
    step_milestones: list[int] | None = None,
) -> LRScheduler:
    """The ``schedule`` over ``total_steps``, after a linear warm-up from 1 % over ``warmup_epochs``.

    ``cosine`` decays to zero, ``step`` multiplies by ``step_gamma`` every ``step_epochs``, or at each of the
    optimizer steps ``step_milestones`` (counted from the run's start, the warm-up's steps included),
    ``constant`` keeps the optimizer's rate. ``onecycle`` has a warm-up of its own: it rises for
    ``warmup_epochs``, or for a quarter of the run when that is 0.
    """
    total_steps = max(1, total_steps)
    steps_per_epoch = max(1, steps_per_epoch)
    warmup = min(total_steps - 1, round(warmup_epochs * steps_per_epoch))
    if warmup_epochs > 0:
        # a warm-up of at least one step, however short the run: the schedule's parts follow the options alone, so
        # that a run resumed with more steps loads the state it saved (a 1-step run had saved a bare cosine)
        warmup = max(1, warmup)
    if schedule == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        rising = warmup / total_steps if warmup > 0 else 0.25
        return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=rising)
    if schedule == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    elif schedule == "step" and step_milestones:
        check(all(later > earlier for earlier, later in zip([warmup, *step_milestones], step_milestones)),
              f"model.step_milestones must be increasing optimizer steps after the warm-up's {warmup}, "
              f"got {step_milestones}")
        main = MultiStepLR(optimizer, milestones=[step - warmup for step in step_milestones], gamma=step_gamma)
    elif schedule == "step":
        main = StepLR(optimizer, step_size=step_epochs * steps_per_epoch, gamma=step_gamma)
    elif schedule == "constant":
        main = ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    if warmup <= 0:
        return main
    ramp = LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def stretch_to(scheduler: LRScheduler, total_steps: int) -> str | None:
    """Fit a restored schedule to a resumed run of ``total_steps`` (a larger ``max_epochs``, say).

    A cosine decay is re-planned to reach zero at the new end, and the rate set to where that
    plan is at this step (continuing the old recursion from a finished decay would stay at zero,
    and the old plan would climb back up); a one-cycle schedule cannot run past the steps it was
    planned for. Returns a line saying what changed, or None.
    """
    # torch keeps a SequentialLR's parts, milestones and last rates in private fields and offers no public
    # way to re-plan a restored schedule: unavoidable until the schedule is a closed form of the step
    parts = scheduler._schedulers if isinstance(scheduler, SequentialLR) else [scheduler]
    warmup = scheduler._milestones[0] if isinstance(scheduler, SequentialLR) else 0
    for part in parts:
        if isinstance(part, CosineAnnealingLR) and part.T_max != max(1, total_steps - warmup):
            planned = part.T_max + warmup
            part.T_max = max(1, total_steps - warmup)
            progress = min(1.0, max(0, part.last_epoch) / part.T_max)
            rates = [part.eta_min + (base - part.eta_min) * (1 + math.cos(math.pi * progress)) / 2
                     for base in part.base_lrs]
            for group, rate in zip(part.optimizer.param_groups, rates):
                group["lr"] = rate
            part._last_lr = scheduler._last_lr = rates
            return (f"resumed a cosine schedule planned for {planned} steps: re-planned to end at step {total_steps}, "
                    f"learning rate now {rates[0]:.3g}")
        if isinstance(part, OneCycleLR) and part.total_steps < total_steps:
            raise UserError(f"model.lr_scheduler onecycle was planned for {part.total_steps} steps and cannot run "
                            f"{total_steps}: resume with the trainer.max_epochs it started with, or start a new run")
    return None


def fused_when_left_open(optimizer: Optimizer) -> Optimizer:
    """The same optimizer with torch's fused kernel when it has one and the config chose neither ``fused`` nor
    ``foreach``: torch's default on a CPU steps one tensor at a time, several times slower on a ResNet-18
    (benchmarks/README.md, "Measured reasons in the code"). Parameters torch cannot fuse (sharded, on other devices)
    keep the optimizer as it was."""
    kind = type(optimizer)
    accepted = inspect.signature(kind.__init__).parameters
    defaults = optimizer.defaults
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if ("fused" not in accepted or defaults.get("fused") is not None or defaults.get("foreach") is not None
            or defaults.get("differentiable") or not params
            or any(type(p.data) is not torch.Tensor or p.device.type not in ("cpu", "cuda")
                   or not p.is_floating_point() for p in params)):
        return optimizer
    options = {key: value for key, value in defaults.items() if key in accepted}
    try:
        # each group carries every option (torch copied the defaults into it), and the step reads the group's
        return kind([{**group, "fused": True} for group in optimizer.param_groups], **{**options, "fused": True})
    except (RuntimeError, ValueError):  # a combination torch does not fuse (e.g. SGD with sparse gradients)
        return optimizer


def optimization_of(optimizer_factory: Callable[[list[dict]], Optimizer], model: nn.Module, hparams: Any,
                    trainer: Trainer) -> dict[str, Any]:
    """What ``configure_optimizers`` returns: the optimizer of ``model``'s parameter groups (biases and norms without
    weight decay, the backbone at ``backbone_lr_factor``), fused where it can be, and the per-step schedule of
    ``hparams`` planned over the trainer's whole run."""
    try:
        optimizer = optimizer_factory(parameter_groups(model, hparams.backbone_lr_factor))
    except (ValueError, TypeError) as error:  # torch checks its optimizers' arguments, e.g. a negative rate
        raise UserError(f"model.optimizer: {error}") from None
    optimizer = fused_when_left_open(apply_lr_factors(optimizer))
    total_steps = trainer.estimated_stepping_batches
    check(math.isfinite(total_steps) and total_steps > 0,
          f"trainer.limit_train_batches {trainer.limit_train_batches} and trainer.max_epochs "
          f"{trainer.max_epochs} leave no training step (to evaluate without training, use validate)")
    if not math.isfinite(trainer.num_training_batches):  # trainer.max_steps alone: the run was planned by its steps,
        trainer.fit_loop.setup_data()  # and an epoch's length is read from the loader here (Lightning's own call)
    scheduler = build_scheduler(
        optimizer,
        hparams.lr_scheduler,
        total_steps=int(total_steps),
        steps_per_epoch=math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches),
        warmup_epochs=hparams.warmup_epochs,
        step_epochs=hparams.step_epochs,
        step_gamma=hparams.step_gamma,
        step_milestones=hparams.get("step_milestones"),
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
