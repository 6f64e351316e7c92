"""FixMatch (Sohn et al., 2020): a pseudo-label is trained on where the model's confidence reaches a fixed
threshold (0.95)."""

from __future__ import annotations

import torch
from torch import Tensor

from .method import ConsistencyMethod
from .options import FIXMATCH_THRESHOLD


class FixMatch(ConsistencyMethod):
    name = "fixmatch"

    def thresholds(self, pseudo_labels: Tensor) -> Tensor:
        threshold = self.options.threshold if self.options.threshold is not None else FIXMATCH_THRESHOLD
        return torch.full(pseudo_labels.shape, threshold, device=pseudo_labels.device)
