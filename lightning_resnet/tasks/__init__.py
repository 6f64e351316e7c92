"""The two kinds of classification, each an object that owns everything that differs between them
(:class:`~.base.Task`): one class per image (:mod:`.single_label`, ``multiclass``: a softmax over the classes), or a
set of labels per image (:mod:`.multi_label`, ``multilabel``: a sigmoid per label). The data decide which; a trained
model carries its :class:`~.base.Decision`, the task with what was fitted for it at the end of ``fit``.

``base`` (the interface, the decision) <- ``single_label``, ``multi_label``; what they are made of: ``metrics`` (the
names and the torchmetrics collections), ``temperature`` (temperature scaling), ``energy`` (the unsure rule),
``label_thresholds`` (each label's threshold), ``verdicts`` (what a model says of one image).
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .base import Decision, Fitted, Sync, Task, TaskName
from .energy import threshold_of
from .multi_label import MULTI_LABEL, MultiLabel
from .single_label import SINGLE_LABEL, SingleLabel
from .verdicts import ClassVerdict, LabelSetVerdict, Verdict

TASKS: dict[str, Task] = {task.name: task for task in (SINGLE_LABEL, MULTI_LABEL)}
"""Each task by the name configs and checkpoints give it."""
MULTICLASS: TaskName = SINGLE_LABEL.name
MULTILABEL: TaskName = MULTI_LABEL.name
MONITORS = {task.name: task.monitor for task in TASKS.values()}
"""What the best checkpoint is chosen by, for each task."""
MONITOR = SINGLE_LABEL.monitor
"""The default monitor (``val/acc``), which a multi-label run changes to its own."""


def task_named(name: str) -> Task:
    """The task a config or a checkpoint names."""
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    return TASKS[name]


def task_of(label_sets: bool) -> Task:
    """The task of data whose images have label sets, or one class each."""
    return MULTI_LABEL if label_sets else SINGLE_LABEL


def decision_from(saved: dict[str, Any], num_classes: int) -> Decision:
    """A decision as :meth:`Decision.as_dict` keeps it; a multi-label one saved without thresholds gets the
    default ones."""
    task = task_named(saved.get("task", MULTICLASS))
    thresholds = saved.get("label_thresholds")
    default = task.default_decision(num_classes)
    return Decision(task, float(saved.get("temperature", 1.0)), threshold_of(saved.get("reject_below")),
                    tuple(map(float, thresholds)) if thresholds is not None else default.label_thresholds)


__all__ = [
    "MONITOR",
    "MONITORS",
    "MULTICLASS",
    "MULTILABEL",
    "MULTI_LABEL",
    "SINGLE_LABEL",
    "TASKS",
    "ClassVerdict",
    "Decision",
    "Fitted",
    "LabelSetVerdict",
    "MultiLabel",
    "SingleLabel",
    "Sync",
    "Task",
    "TaskName",
    "Verdict",
    "decision_from",
    "task_named",
    "task_of",
]
