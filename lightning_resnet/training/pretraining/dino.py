"""DINO (Caron et al. 2021): self-distillation without labels. A teacher (a moving average of the student) sees the
two global crops of an image; the student sees those and several small local crops, and learns to give each the
teacher's distribution over ``output_dim`` prototypes (the teacher's centred and sharpened); lightly's head, loss and
views. The proof that a method is one file: its views are of two sizes, and more than two."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ...errors import check
from .method import PretrainingMethod, Progress, ViewsOf, check_positive, lightly_views, option_name

GLOBAL_VIEWS = 2


class DINO(PretrainingMethod):
    """Options: ``momentum``, the teacher's moving average at the start, rising to 1 along a cosine
    (``model.momentum``); ``temperature``, the student's (``model.temperature``); and of ``model.method_options``:
    ``teacher_temperature``, ``warmup_teacher_temperature`` and ``warmup_teacher_epochs`` (a linear warm-up from the
    one to the other), ``output_dim`` (the prototypes), ``center_momentum``, ``freeze_last_layer`` (epochs in which the
    head's last layer does not learn, which DINO's authors found steadies the start), ``batch_norm`` (in the head's
    hidden layers, as DINO's authors and lightly's benchmarks have it for ResNets)."""

    name = "dino"
    OPTIONS = {"momentum": 0.996, "temperature": 0.1, "teacher_temperature": 0.04, "warmup_teacher_temperature": 0.04,
               "warmup_teacher_epochs": 0, "output_dim": 2048, "center_momentum": 0.9, "freeze_last_layer": 1,
               "batch_norm": True}

    def __init__(self, backbone: nn.Module, width: int, projection_dim: int, hidden_dim: int,
                 options: Mapping[str, Any]) -> None:
        super().__init__(backbone, width, projection_dim, hidden_dim, options)
        from lightly.loss import DINOLoss
        from lightly.models.modules import DINOProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        options = self.options
        check_positive(options, "teacher_temperature", "warmup_teacher_temperature", "output_dim")
        check(0.0 <= options["center_momentum"] < 1.0, f"{option_name('center_momentum')} must be in [0, 1), got "
                                                       f"{options['center_momentum']}")
        self.head = DINOProjectionHead(width, hidden_dim, projection_dim, options["output_dim"],
                                       batch_norm=options["batch_norm"], freeze_last_layer=options["freeze_last_layer"])
        self.teacher_backbone = copy.deepcopy(backbone)
        self.teacher_head = DINOProjectionHead(width, hidden_dim, projection_dim, options["output_dim"],
                                               batch_norm=options["batch_norm"])
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(options["output_dim"], options["warmup_teacher_temperature"],
                                  options["teacher_temperature"], max(1, options["warmup_teacher_epochs"]),
                                  options["temperature"], options["center_momentum"])

    @classmethod
    def views(cls, image_size: int, view_options: Mapping[str, Any] | None) -> ViewsOf:
        """Two global crops of ``image_size``, and six local crops of 3/7 of it (DINO's 96 px at 224), at least 8."""
        from lightly.transforms import DINOTransform

        return lightly_views(DINOTransform, view_options, cls.name, global_crop_size=image_size,
                             local_crop_size=max(8, image_size * 3 // 7))

    def loss(self, backbone: nn.Module, views: list[Tensor], progress: Progress) -> Tensor:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        momentum = cosine_schedule(progress.step, max(1, progress.total_steps), self.options["momentum"], 1.0)
        update_momentum(backbone, self.teacher_backbone, momentum)
        update_momentum(self.head, self.teacher_head, momentum)
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone.forward_features(view))
                       for view in views[:GLOBAL_VIEWS]]
        student = [self.head(backbone.forward_features(view)) for view in views]
        return self.criterion(teacher, student, epoch=progress.epoch)

    def trained_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.head.parameters() if p.requires_grad]}]

    def after_backward(self, progress: Progress) -> None:
        """The head's last layer learns nothing in the first ``freeze_last_layer`` epochs. Its gradients are zeroed,
        not dropped as lightly's ``cancel_last_layer_gradients`` drops them: torch's fused SGD, which fit and pretrain
        use when they can, failed at the first step after that (a momentum buffer it never made)."""
        if progress.epoch < self.options["freeze_last_layer"]:
            for parameter in self.head.last_layer.parameters():
                if parameter.grad is not None:
                    parameter.grad.zero_()
