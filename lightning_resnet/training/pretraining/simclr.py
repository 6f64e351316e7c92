"""SimCLR (Chen et al. 2020): two strong views of each image, pulled together and pushed away from the batch's other
images (NT-Xent), through a projection head; lightly's head, loss and views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .method import PretrainingMethod, Progress, ViewsOf, lightly_views


class SimCLR(PretrainingMethod):
    """Options: ``temperature``, NT-Xent's (``model.temperature``)."""

    name = "simclr"
    OPTIONS = {"temperature": 0.5}

    def __init__(self, backbone: nn.Module, width: int, projection_dim: int, hidden_dim: int,
                 options: Mapping[str, Any]) -> None:
        super().__init__(backbone, width, projection_dim, hidden_dim, options)
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.projection = SimCLRProjectionHead(width, hidden_dim, projection_dim)
        self.criterion = NTXentLoss(self.options["temperature"], gather_distributed=True)

    @classmethod
    def views(cls, image_size: int, view_options: Mapping[str, Any] | None) -> ViewsOf:
        from lightly.transforms import SimCLRTransform

        return lightly_views(SimCLRTransform, view_options, cls.name, input_size=image_size)

    def loss(self, backbone: nn.Module, views: list[Tensor], progress: Progress) -> Tensor:
        first, second = (self.projection(backbone.forward_features(view)) for view in views[:2])
        return self.criterion(first, second)
