"""The report of ``validate`` and ``test`` for a multi-label model: each label's images, average precision, and
precision, recall and F1 at its threshold, with the precision-recall curves; a mistake is a label decided wrong
(a confusion matrix has no meaning when an image has several labels)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelPrecisionRecallCurve,
    MultilabelStatScores,
)

from ..tasks import MULTI_LABEL, Decision
from ..tasks.metrics import centred_scores, metric_key

CURVE_THRESHOLDS = 101
"""Points of each precision-recall curve (binned, so the curve's memory does not grow with the images)."""


def label_set_metrics(num_labels: int) -> MetricCollection:
    """Per label: average precision, the counts at its threshold (true and false positives and negatives), and the
    precision-recall curve. They take scores centred on the thresholds (:func:`~..tasks.metrics.centred_scores`)."""
    return MetricCollection({
        "average_precision": MultilabelAveragePrecision(num_labels, average=None),
        "counts": MultilabelStatScores(num_labels, average=None),
        "curve": MultilabelPrecisionRecallCurve(num_labels, thresholds=CURVE_THRESHOLDS),
    })


def at_thresholds(counts: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Each label's precision, recall and F1 at its threshold, and its images, from ``MultilabelStatScores``' counts
    (true and false positives, true and false negatives, images with the label)."""
    true_pos, false_pos, _, _, support = counts.double().unbind(dim=1)
    precision = true_pos / (true_pos + false_pos).clamp_min(1)
    recall = true_pos / support.clamp_min(1)
    return precision, recall, 2 * precision * recall / (precision + recall).clamp_min(1e-12), support


def format_label_report(stage: str, logged: dict[str, Tensor], names: Sequence[str], results: dict[str, Tensor],
                        thresholds: Tensor, images: int) -> str:
    """The printed table: the stage's logged metrics, then each label's images, AP, threshold, precision, recall
    and F1 at that threshold."""
    lines = [f"{stage}: {images} images, {len(names)} labels (several per image)"]
    for metric, label in MULTI_LABEL.metric_labels.items():
        value = logged.get(metric_key(stage, metric))
        if value is not None:
            lines.append(f"  {label:<31} {float(value):.4f}")
    precision, recall, f1, support = at_thresholds(results["counts"])
    width = max(12, *(len(name) for name in names))
    lines.append(f"  {'label':<{width}} {'images':>7} {'AP':>7} {'threshold':>9} {'precision':>9} {'recall':>7} "
                 f"{'F1':>7}")
    rows = zip(names, support.tolist(), results["average_precision"].tolist(), thresholds.tolist(),
               precision.tolist(), recall.tolist(), f1.tolist())
    for name, count, ap, threshold, p, r, f in rows:
        scores = f"{ap:>7.4f} {threshold:>9.3f} {p:>9.4f} {r:>7.4f} {f:>7.4f}" if count else f"{'-':>7}"
        lines.append(f"  {name:<{width}} {int(count):>7} {scores}")
    return "\n".join(lines)


def precision_recall_figure(curve: tuple[Tensor, Tensor, Tensor], results: dict[str, Tensor], names: Sequence[str],
                            stage: str) -> Figure:
    """Each label's precision-recall curve, its point at the chosen threshold marked."""
    curve_precision, curve_recall, _ = curve
    precision, recall, _, support = at_thresholds(results["counts"])
    figure = Figure(figsize=(6.5, 5))
    axis = figure.subplots()
    for label, name in enumerate(names):
        line, = axis.plot(curve_recall[label].numpy(), curve_precision[label].numpy(), label=name, linewidth=1.2)
        if support[label] > 0:
            axis.plot(float(recall[label]), float(precision[label]), "o", color=line.get_color())
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.set_title(f"precision-recall per label ({stage}); dots: at each label's threshold")
    if len(names) <= 20:
        axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    return figure


def label_set_results(metrics: MetricCollection) -> dict[str, Tensor | tuple[Tensor, ...]]:
    """The computed metrics on the CPU (the curve is a tuple of precision, recall, thresholds)."""
    computed = metrics.compute()
    return {key: tuple(torch.as_tensor(part).cpu() for part in value) if isinstance(value, (tuple, list))
            else value.cpu() for key, value in computed.items()}


class LabelSetReport:
    """What :class:`~.evaluation.EvaluationReport` writes for a multi-label model."""

    def __init__(self, class_names: Sequence[str], max_plot_classes: int) -> None:
        self.names = list(class_names)

    def metrics(self) -> MetricCollection:
        return label_set_metrics(len(self.names))

    def update(self, metrics: MetricCollection, probabilities: Tensor, targets: Tensor, decision: Decision) -> None:
        thresholds = torch.tensor(decision.label_thresholds, device=probabilities.device)
        metrics.update(centred_scores(probabilities, thresholds), targets.int())

    def mistakes(self, probabilities: Tensor, targets: Tensor,
                 decision: Decision) -> list[tuple[float, int, int, int]]:
        """``(confidence, row, label, 1 if given where it is not else 0)`` of each label decided wrong."""
        decided = MULTI_LABEL.decide(probabilities, decision).bool()
        found = []
        for row, label in (decided != (targets >= 0.5)).nonzero().tolist():
            chosen = bool(decided[row, label])
            probability = probabilities[row, label].item()
            found.append((probability if chosen else 1 - probability, row, label, int(chosen)))
        return found

    def mistake_title(self, confidence: float, target: int, predicted: int) -> tuple[str, int]:
        """A label predicted where it is not, or missed where it is; its activation map beside it."""
        return (f"{self.names[target]}: {'not there' if predicted else 'missed'}\n"
                f"p {confidence if predicted else 1 - confidence:.2f}"), target

    def results(self, metrics: MetricCollection) -> dict[str, Any]:
        return label_set_results(metrics)

    def write(self, stage: str, folder: Path, logged: dict[str, Tensor], results: dict[str, Any],
              decision: Decision, tta: str) -> tuple[str, list[str], dict[str, Figure]]:
        images = int(results["counts"][0, :4].sum())  # true and false positives and negatives of the first label
        table = format_label_report(stage, logged, self.names, results, torch.tensor(decision.label_thresholds),
                                    images)
        return table, [], {"precision_recall": precision_recall_figure(results["curve"], results, self.names, stage)}
