"""BYOL (Grill et al. 2020): no negatives; an online network (the backbone, a projection and a prediction head)
predicts the projection of the other view by a slowly moving average of itself; lightly's heads, loss and views."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .method import PretrainingMethod, Progress, ViewsOf, lightly_views


class BYOL(PretrainingMethod):
    """Options: ``momentum``, the target network's moving average at the start, which rises to 1 along a cosine
    (``model.momentum``); ``prediction_lr_factor``, the prediction head's learning rate as a multiple of the rest's
    (a head that keeps up with the moving target holds the features apart; ``configs/pretrain_demo_byol.yaml``)."""

    name = "byol"
    OPTIONS = {"momentum": 0.99, "prediction_lr_factor": 1.0}

    def __init__(self, backbone: nn.Module, width: int, projection_dim: int, hidden_dim: int,
                 options: Mapping[str, Any]) -> None:
        super().__init__(backbone, width, projection_dim, hidden_dim, options)
        from lightly.loss import NegativeCosineSimilarity
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.projection = BYOLProjectionHead(width, hidden_dim, projection_dim)
        self.prediction = BYOLPredictionHead(projection_dim, hidden_dim, projection_dim)
        self.criterion = NegativeCosineSimilarity()
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_backbone)
        deactivate_requires_grad(self.target_projection)

    @classmethod
    def views(cls, image_size: int, view_options: Mapping[str, Any] | None) -> ViewsOf:
        from lightly.transforms import BYOLTransform, BYOLView1Transform, BYOLView2Transform

        first, second = (lightly_views(view, view_options, cls.name, input_size=image_size)
                         for view in (BYOLView1Transform, BYOLView2Transform))
        return BYOLTransform(first, second)

    def loss(self, backbone: nn.Module, views: list[Tensor], progress: Progress) -> Tensor:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        momentum = cosine_schedule(progress.step, max(1, progress.total_steps), self.options["momentum"], 1.0)
        update_momentum(backbone, self.target_backbone, momentum)
        update_momentum(self.projection, self.target_projection, momentum)
        first, second = views[:2]
        predicted = [self.prediction(self.projection(backbone.forward_features(view))) for view in (first, second)]
        with torch.no_grad():
            targets = [self.target_projection(self.target_backbone.forward_features(view)).detach()
                       for view in (first, second)]
        return 0.5 * (self.criterion(predicted[0], targets[1]) + self.criterion(predicted[1], targets[0]))

    def trained_groups(self) -> list[dict[str, Any]]:
        return [{"params": list(self.projection.parameters())},
                {"params": list(self.prediction.parameters()), "lr_factor": self.options["prediction_lr_factor"]}]
