"""Learning-rate schedules over a whole run, stepped once per optimizer step."""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

from ..errors import UserError

Schedule = Literal["constant", "cosine", "onecycle", "step"]


def build_scheduler(
    optimizer: Optimizer,
    schedule: Schedule,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    step_epochs: int = 30,
    step_gamma: float = 0.1,
) -> LRScheduler:
    """The ``schedule`` over ``total_steps``, after a linear warm-up from 1 % over ``warmup_epochs``.

    ``cosine`` decays to zero, ``step`` multiplies by ``step_gamma`` every ``step_epochs``,
    ``constant`` keeps the optimizer's rate. ``onecycle`` has a warm-up of its own: it rises for
    ``warmup_epochs``, or for a quarter of the run when that is 0.
    """
    total_steps = max(1, total_steps)
    steps_per_epoch = max(1, steps_per_epoch)
    warmup = min(total_steps - 1, round(warmup_epochs * steps_per_epoch))
    if schedule == "onecycle":
        peak = [group["lr"] for group in optimizer.param_groups]
        rising = warmup / total_steps if warmup > 0 else 0.25
        return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=rising)
    if schedule == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
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
