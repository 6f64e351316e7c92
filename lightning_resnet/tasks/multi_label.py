"""A set of labels per image (``multilabel``): a sigmoid per label, binary cross-entropy (or timm's asymmetric
loss), mean average precision, each label's threshold chosen at the end of ``fit``, the labels at or above their
thresholds as the answer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.functional.classification import multilabel_average_precision

from ..errors import check
from ..stages import VAL
from .base import Decision, Fitted, Sync, Task
from .label_thresholds import choose_label_thresholds
from .metrics import (
    DEFAULT_LABEL_THRESHOLD,
    MEAN_AP,
    MULTILABEL_METRIC_LABELS,
    centred_scores,
    metric_key,
    multilabel_metrics,
)
from .verdicts import LabelSetVerdict


class BinaryCrossEntropy(nn.Module):
    """Binary cross-entropy per label of multi-hot (or mixed) targets, each moved towards 0.5 by
    ``label_smoothing``; class weights are each label's positives' weight (``pos_weight``)."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        smoothed = targets * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits, smoothed, pos_weight=class_weights)


class AsymmetricLoss(nn.Module):
    """timm's asymmetric loss (Ridnik et al. 2021), which weighs down the many easy negative labels."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        from timm.loss import AsymmetricLossMultiLabel  # 1 s of timm's import, for this option only

        self.loss = AsymmetricLossMultiLabel(smoothing=label_smoothing, reduction="mean")

    def forward(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        return self.loss(logits, targets)


LOSSES = {"bce": BinaryCrossEntropy, "asymmetric": AsymmetricLoss}


def _thresholds(decision: Decision, like: Tensor) -> Tensor:
    return torch.tensor(decision.label_thresholds, dtype=like.dtype, device=like.device)


class MultiLabel(Task):
    """A set of labels per image: see the module's docstring."""

    name = "multilabel"
    item, items = "label", "labels"
    does = "finds the labels of an image among"
    items_described = "labels (several per image)"
    monitor = metric_key(VAL, MEAN_AP)
    metric_labels = MULTILABEL_METRIC_LABELS
    default_resize = "pad"
    balanced_weights_refused = ("model.class_weights balanced weighs classes by their counts, which a multi-label set "
                                "does not split among its images: give one weight per label (its positives' weight in "
                                "the loss)")
    semi_supervised_refused = ("data.unlabelled_dir: semi-supervised fit gives each unlabelled image one class (its "
                               "pseudo-label), which a multi-label set does not have; pretrain on them instead "
                               "(docs/few-labels.md)")
    extension_refused = ("model.extend adds classes to a model of one class per image: the rehearsal of an old run "
                         "reads its split.csv one class an image, which a label set is not")
    multi_hot_targets = True
    activation_code = "logits.sigmoid()"
    activation = ("each label's sigmoid of its logit (batch, num_labels): the labels at or above their thresholds "
                  "(decision.label_thresholds) are the image's")
    agreement_name, agreement_words = "set_agreement", "same label set"

    def target(self, indices: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(indices)

    written_labels_expected = "the image's labels, separated by spaces"

    def written_labels(self, text: str) -> list[str]:
        return text.split()

    def probabilities(self, calibrated_logits: Tensor) -> Tensor:
        return calibrated_logits.sigmoid()

    def loss(self, label_smoothing: float, multilabel_loss: str, class_weighted: bool) -> nn.Module:
        check(multilabel_loss == "bce" or not class_weighted,
              "model.class_weights weighs binary cross-entropy; model.multilabel_loss asymmetric weighs the labels "
              "its own way: leave one of them out")
        return LOSSES[multilabel_loss](label_smoothing)

    def metrics(self, num_classes: int, stage: str) -> MetricCollection:
        return multilabel_metrics(num_classes, stage)

    def training_metric_inputs(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return logits.sigmoid(), (targets >= 0.5).int()

    def evaluation_metric_inputs(self, probabilities: Tensor, targets: Tensor,
                                 decision: Decision) -> tuple[Tensor, Tensor]:
        """The labels decided at their thresholds: scores centred on them (:func:`~.metrics.centred_scores`)."""
        return centred_scores(probabilities, _thresholds(decision, probabilities)), targets.int()

    def reported_loss(self, probabilities: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy(probabilities, targets)

    def distillation_loss(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        """Each label's KL divergence from the teacher's softened probability to the student's (a Bernoulli each),
        averaged over the labels as the binary cross-entropy is."""
        teacher = torch.sigmoid(teacher_logits.float() / temperature)
        student = student_logits.float() / temperature
        cross_entropy = F.binary_cross_entropy_with_logits(student, teacher, reduction="none")
        entropy = F.binary_cross_entropy(teacher, teacher, reduction="none")
        return (cross_entropy - entropy).mean() * temperature**2

    def default_decision(self, num_classes: int) -> Decision:
        return Decision(self, label_thresholds=(DEFAULT_LABEL_THRESHOLD,) * num_classes)

    def fit_decision(self, logits: Tensor, targets: Tensor, class_names: Sequence[str], sync: Sync,
                     fit_temperature: bool, keep_correct: float) -> Fitted:
        """Each label's threshold, the one that maximises its F1 on the validation images
        (:mod:`.label_thresholds`); no temperature nor unsure threshold."""
        labels = logits.shape[1]
        probabilities = sync.gather(logits.sigmoid().flatten().double()).view(-1, labels)
        positives = sync.gather(targets.flatten().double()).view(-1, labels)
        thresholds = tuple(choose_label_thresholds(probabilities, positives).float().tolist())
        shown = ", ".join(f"{name} {value:.2f}" for name, value in list(zip(class_names, thresholds))[:8])
        return Fitted(Decision(self, label_thresholds=thresholds),
                      f"label thresholds chosen on {len(probabilities)} validation images, each maximising its F1 "
                      f"(0.5 where that is within two images' worth of it): {shown}{', ...' if labels > 8 else ''}")

    def describe_decision(self, decision: Decision) -> str:
        return "each from its threshold"

    def decide(self, probabilities: Tensor, decision: Decision) -> Tensor:
        return (probabilities >= _thresholds(decision, probabilities)).int()

    def answers(self, probabilities: Tensor, decision: Decision, class_names: Sequence[str]) -> list[str]:
        return [" ".join(name for name, chosen in zip(class_names, row) if chosen)
                for row in self.decide(probabilities, decision).tolist()]

    def verdicts(self, probabilities: Tensor, calibrated_logits: Tensor, decision: Decision,
                 class_names: Sequence[str], top_k: int) -> list[LabelSetVerdict]:
        thresholds = decision.label_thresholds
        return [LabelSetVerdict(tuple(name for name, value, at in zip(class_names, row, thresholds) if value >= at),
                                tuple(zip(class_names, row)), tuple(thresholds))
                for row in probabilities.float().tolist()]

    def uncertainty(self, probabilities: Tensor, decision: Decision) -> Tensor:
        """The least certain label's: 1 at its threshold, 0 at a probability of 0 or 1 (the distance to the
        threshold over the most it can be on that side)."""
        thresholds = _thresholds(decision, probabilities.float())
        room = torch.where(probabilities >= thresholds, 1 - thresholds, thresholds).clamp_min(1e-6)
        return (1.0 - (probabilities.float() - thresholds).abs() / room).amax(dim=1)

    def chart(self, top_k: int, num_classes: int) -> tuple[str, int]:
        return "every label's probability", num_classes

    def header(self, class_names: Sequence[str], top_k: int) -> list[str]:
        return ["path", "labels", *(f"probability_{name}" for name in class_names), "error"]

    def unreadable_row(self, path: str, class_names: Sequence[str], top_k: int) -> tuple[str, ...]:
        return (path, "", *("" for _ in class_names), "could not be read")

    def scores(self, probabilities: Tensor, targets: Tensor, decision: Decision) -> dict[str, float]:
        """Mean average precision (macro) and exact-set accuracy at the thresholds."""
        mean_ap = multilabel_average_precision(probabilities.float(), targets.int(), probabilities.shape[1])
        exact = (self.decide(probabilities, decision) == targets.int()).all(dim=1).double().mean()
        return {"mAP": float(mean_ap), "exact_match": float(exact)}

    def agreement(self, probabilities: Tensor, other: Tensor, decision: Decision) -> float:
        return float((self.decide(probabilities, decision) == self.decide(other, decision)).all(dim=1)
                     .double().mean())


MULTI_LABEL = MultiLabel()
