"""Knowledge distillation (Hinton et al., 2015): a trained model of this project teaches the one ``fit`` trains.

The teacher reads the very batch the student reads, after Mixup/CutMix and Random Erasing, mapped from the student's
normalization to its own and resized to its own image size; it runs in eval mode without gradients. The student's
loss becomes ``(1 - weight) * its own loss + weight * temperature² * KL(teacher ‖ student)`` on logits softened by
``temperature``: over the classes for one class per image, each label's for a label set (the task's
``distillation_loss``); a teacher that knows some of the student's classes (the old model of ``model.extend``)
teaches their logits. The teacher is no part of the student: it is not in the student's checkpoint, DDP does not
see it, and nothing after ``fit`` (validate, predict, export, serve) reads it.

Not timm's ``LogitDistillationTask``: it owns the student's forward and loss, where this module's loss (Mixup's
soft targets, class weights, label smoothing) and metrics live, and its ``DistillationTeacher`` takes the
normalization of a timm ``pretrained_cfg``, which this project's checkpoints do not have; the KL term is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..bundle import read_bundle
from ..data import Normalization
from ..errors import UserError, check
from ..tasks import Task
from .checkpoints import best_checkpoint_of_run, newest_run


@dataclass(frozen=True)
class Distillation:
    """``model.distillation``: which model teaches, and how much its softened logits count.

    Args:
        teacher: a checkpoint of this project (``.ckpt``), or a run or experiment folder (``logs/resnet50``),
            whose newest run's best checkpoint teaches.
        weight: the share of the distillation term in the loss; the rest is the student's own loss (0: none, the
            ``model.extend`` baseline that only starts from the old model).
        temperature: divides both models' logits before the softmax (Hinton's T; 1-4 is usual).
    """

    teacher: str
    weight: float = 0.5
    temperature: float = 2.0

    def check(self) -> None:
        """One line for a value that cannot work (not in ``__post_init__``: the parser would bury the line)."""
        check(0.0 <= self.weight <= 1.0, f"model.distillation.weight must be in [0, 1], got {self.weight}")
        check(self.temperature > 0, f"model.distillation.temperature must be positive, got {self.temperature}")


def teacher_checkpoint(given: str, option: str = "model.distillation.teacher") -> Path:
    """The checkpoint ``option`` names: the file, or the best of a folder's newest run."""
    path = Path(given).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{option} {given} does not exist: expected a checkpoint of this project "
                        "or a run folder (logs/<experiment>)")
    run = path if (path / "checkpoints" / "last.ckpt").is_file() else newest_run(path)
    best = best_checkpoint_of_run(run) if run is not None else None
    if best is None or not best.path.is_file():
        raise UserError(f"{option} {given} holds no run with a best checkpoint "
                        "(version_*/checkpoints/best-*.ckpt); give the teacher's checkpoint file")
    return best.path


class Teacher:
    """A trained model, in eval mode and without gradients, whose logits of the student's batch are the target.

    Kept out of the student's modules on purpose (a plain attribute): its weights stay out of the student's
    checkpoint and out of DDP's gradient synchronization; :meth:`to` follows the student's device.
    """

    def __init__(self, options: Distillation, task: Task, class_names: list[str], channels: int,
                 image_size: tuple[int, int], student_normalization: Normalization) -> None:
        option = "model.distillation.teacher"
        trained = read_bundle(teacher_checkpoint(options.teacher), option=option)
        check(trained.task is task, f"{option} {options.teacher} answers with {trained.task.items} "
                                    f"({trained.task.name}); the student learns {task.items} ({task.name}): a "
                                    "teacher must be of the student's task")
        unknown = [name for name in trained.classes if name not in class_names]
        check(not unknown, f"{option} {options.teacher} knows the {task.items} {', '.join(trained.classes)}; the "
                           f"data has {', '.join(class_names)}: a teacher must know the student's {task.items} or "
                           "some of them (model.extend: the old ones)")
        channels_read = trained.architecture.channels
        check(channels_read == channels, f"{option} {options.teacher} reads {channels_read}-channel images, the "
                                         f"student {channels}-channel ones")
        self.options = options
        self.task = task
        self.rows = [list(class_names).index(name) for name in trained.classes]
        """The student's logits the teacher's answer, in the teacher's order: all of them, or the old classes'."""
        self.path = trained.path
        self.network = trained.network().requires_grad_(False)
        self.image_size = trained.preprocessing.geometry.size
        self.student_size = image_size
        self.normalization = trained.preprocessing.normalization
        self.student_normalization = student_normalization

    def __deepcopy__(self, memo: dict) -> Teacher:  # a weight average's copy of the student shares the teacher
        return self

    def to(self, device: torch.device) -> Teacher:
        self.network.to(device)
        return self

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """The teacher's logits of the student's normalized batch, read as the teacher reads images."""
        self.network.eval()
        images = renormalized(images, self.student_normalization, self.normalization)
        if self.image_size != self.student_size:
            images = F.interpolate(images, size=self.image_size, mode="bilinear",
                                   antialias=True, align_corners=False)
        return self.network(images)

    def loss(self, student_loss: Tensor, student_logits: Tensor, images: Tensor) -> Tensor:
        """The student's own loss blended with the distillation term of its logits."""
        weight = self.options.weight
        if weight == 0:
            return student_loss
        distilled = self.task.distillation_loss(student_logits[:, self.rows], self.logits(images),
                                                self.options.temperature)
        return (1 - weight) * student_loss + weight * distilled


def renormalized(images: Tensor, source: Normalization, target: Normalization) -> Tensor:
    """Images normalized with ``source`` as ``target`` normalizes them (the same pixels; one affine map)."""
    if source == target:
        return images
    source_mean, source_std, target_mean, target_std = (
        torch.tensor(values, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
        for values in (source.mean, source.std, target.mean, target.std))
    return (images * source_std + source_mean - target_mean) / target_std
