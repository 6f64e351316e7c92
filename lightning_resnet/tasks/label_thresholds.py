"""Each label's threshold in a multi-label set, chosen at the end of ``fit`` on the validation images of the best
checkpoint's epoch: the probability from which the label is predicted, the one that maximises its F1 there
(scikit-learn's precision-recall curve). Kept in the model's decision (:class:`~.base.Decision`), which ``validate``,
``test``, ``predict`` and every export then read, as the temperature of a single-label model is."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .metrics import DEFAULT_LABEL_THRESHOLD


def best_f1_threshold(probabilities: np.ndarray, positives: np.ndarray) -> float:
    """The probability from which predicting the label gives the highest F1 on these images, half-way between the
    lowest score it keeps and the next one down (not at a validation image's own score, where a float's last bit
    decides). The default stays when it is within two images' worth of that F1 (``1 / positives``): a threshold
    moved for one or two validation images lost exact-set accuracy on test images (benchmarks/README.md, "Several
    labels"); and when none of the images has the label, or all do."""
    from sklearn.metrics import f1_score, precision_recall_curve

    if positives.all() or not positives.any():
        return DEFAULT_LABEL_THRESHOLD
    precision, recall, thresholds = precision_recall_curve(positives, probabilities)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    at_default = f1_score(positives, probabilities >= DEFAULT_LABEL_THRESHOLD, zero_division=0.0)
    if at_default >= f1[best] - 1 / positives.sum():
        return DEFAULT_LABEL_THRESHOLD
    return float((thresholds[best] + (thresholds[best - 1] if best > 0 else 0.0)) / 2)


def choose_label_thresholds(probabilities: Tensor, targets: Tensor) -> Tensor:
    """Each label's F1-maximising threshold over these images (``targets`` multi-hot)."""
    scores, positives = probabilities.double().cpu().numpy(), targets.cpu().numpy() >= 0.5
    return torch.tensor([best_f1_threshold(scores[:, label], positives[:, label]) for label in range(scores.shape[1])])

