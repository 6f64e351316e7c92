"""The training loss: cross-entropy over the classes; for a multi-label set, binary cross-entropy per label or
timm's asymmetric loss. Label smoothing and class weights apply to each as it can take them."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import check
from ..tasks import MULTILABEL, Task

MultilabelLoss = Literal["bce", "asymmetric"]


class ClassificationLoss(nn.Module):
    """The loss of ``task``: see the module's docstring. Targets are class indices or, as Mixup/CutMix make
    them, class probabilities; a multi-label set's are multi-hot (or mixed) rows, each label moved towards 0.5 by
    ``label_smoothing``."""

    def __init__(self, task: Task, label_smoothing: float = 0.0, multilabel_loss: MultilabelLoss = "bce",
                 class_weighted: bool = False) -> None:
        super().__init__()
        check(multilabel_loss == "bce" or task == MULTILABEL,
              f"model.multilabel_loss {multilabel_loss} is a loss of several labels per image; this run has one "
              "class per image (a labels file with label sets makes it multi-label)")
        check(multilabel_loss == "bce" or not class_weighted,
              "model.class_weights weighs binary cross-entropy; model.multilabel_loss asymmetric weighs the labels "
              "its own way: leave one of them out")
        self.multilabel = task == MULTILABEL
        self.label_smoothing = label_smoothing
        self.asymmetric: nn.Module | None = None
        if self.multilabel and multilabel_loss == "asymmetric":
            from timm.loss import AsymmetricLossMultiLabel  # 1 s of timm's import, for this option only

            self.asymmetric = AsymmetricLossMultiLabel(smoothing=label_smoothing, reduction="mean")

    def forward(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        if self.asymmetric is not None:
            return self.asymmetric(logits, targets)
        if self.multilabel:  # class_weights: each label's positives' weight
            smoothed = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            return F.binary_cross_entropy_with_logits(logits, smoothed, pos_weight=class_weights)
        return F.cross_entropy(logits, targets, weight=class_weights, label_smoothing=self.label_smoothing)


def reported_loss(probabilities: Tensor, targets: Tensor, multilabel: bool) -> Tensor:
    """The loss of the probabilities ``validate`` and ``test`` report: their negative log-likelihood (the
    cross-entropy of the calibrated logits when there is one view), or a multi-label set's binary cross-entropy."""
    if multilabel:
        return F.binary_cross_entropy(probabilities, targets)
    return F.nll_loss(probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log(), targets)
