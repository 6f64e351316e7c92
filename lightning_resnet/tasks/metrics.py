"""Metric names and the torchmetrics collections behind them: each task's (:mod:`.single_label`, :mod:`.multi_label`)
reads its own from here.

Every logged key is ``<stage>/<metric>``: :func:`metric_key` builds it, and the names below are the only spelling of
each.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)

from ..stages import TRAIN, VAL

ACCURACY = "acc"
TOP5_ACCURACY = "acc_top5"
PRECISION = "precision"
RECALL = "recall"
F1 = "f1"
LOSS = "loss"
MEAN_AP = "mAP"
EXACT_MATCH = "exact_match"

METRIC_LABELS = {
    ACCURACY: "top-1 accuracy",
    TOP5_ACCURACY: "top-5 accuracy",
    PRECISION: "macro precision",
    RECALL: "macro recall",
    F1: "macro F1",
    LOSS: "loss",
}
"""The metrics of a single-label evaluation report, in the order it lists them, with their labels."""
MULTILABEL_METRIC_LABELS = {
    MEAN_AP: "mean average precision (macro)",
    EXACT_MATCH: "exact-set accuracy",
    F1: "macro F1",
    PRECISION: "macro precision",
    RECALL: "macro recall",
    LOSS: "loss",
}
"""The same for a multi-label set: precision, recall, F1 and exact sets at each label's threshold."""


def metric_key(stage: str, metric: str) -> str:
    return f"{stage}/{metric}"


VALIDATION_METRICS = tuple(metric_key(VAL, name) for name in dict.fromkeys([*METRIC_LABELS, *MULTILABEL_METRIC_LABELS]))
"""What ``fit`` may log after every validation, whatever the task."""
MONITOR_MODE = "max"
"""Both tasks' monitors (accuracy, mean average precision) are better higher."""


def classification_metrics(num_classes: int, stage: str) -> MetricCollection:
    """Top-1 accuracy, top-5 accuracy (with more than 5 classes: with 5 or fewer it is always 1), and macro
    precision, recall and F1, logged as ``<stage>/<metric>``."""
    top5 = {TOP5_ACCURACY: MulticlassAccuracy(num_classes, top_k=5, average="micro")} if num_classes > 5 else {}
    return MetricCollection(
        {
            ACCURACY: MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            **top5,
            PRECISION: MulticlassPrecision(num_classes, average="macro"),
            RECALL: MulticlassRecall(num_classes, average="macro"),
            F1: MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=f"{stage}/",
        compute_groups=False,  # each metric is logged on its own; shared states would be reset by the first
    )


DEFAULT_LABEL_THRESHOLD = 0.5
"""A label's probability from which it is predicted, until ``fit`` chooses each label's on validation."""


def centred_scores(probabilities: Tensor, thresholds: Tensor) -> Tensor:
    """Each label's probability moved so that its threshold is at 0.5 (the sigmoid of the logit less the
    threshold's logit): what torchmetrics' multi-label metrics, which threshold at 0.5, take to decide at
    ``thresholds``. The order of each label's scores, and so its average precision, is unchanged."""
    return torch.sigmoid(torch.logit(probabilities, eps=1e-7) - torch.logit(thresholds, eps=1e-7))


def multilabel_metrics(num_labels: int, stage: str) -> MetricCollection:
    """Mean average precision (macro; not in training, where it would keep every score of the epoch), exact-set
    accuracy and macro F1, precision and recall, logged as ``<stage>/<metric>``. They take sigmoid scores whose
    0.5 is each label's threshold (:func:`centred_scores`): the average precision is a ranking's, which
    that shift does not change."""
    ranking = {MEAN_AP: MultilabelAveragePrecision(num_labels, average="macro")} if stage != TRAIN else {}
    return MetricCollection(
        {
            **ranking,
            EXACT_MATCH: MultilabelExactMatch(num_labels),
            F1: MultilabelF1Score(num_labels, average="macro"),
            PRECISION: MultilabelPrecision(num_labels, average="macro"),
            RECALL: MultilabelRecall(num_labels, average="macro"),
        },
        prefix=f"{stage}/",
        compute_groups=False,
    )
