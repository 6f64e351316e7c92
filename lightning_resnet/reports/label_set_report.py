"""The report of ``validate`` and ``test`` for a multi-label model: each label's images, average precision, and
precision, recall and F1 at its threshold, with the precision-recall curves; what :mod:`.evaluation` writes for
one class per image (a confusion matrix has no meaning when an image has several labels)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelPrecisionRecallCurve,
    MultilabelStatScores,
)

from ..tasks import MULTILABEL
from ..training.metrics import metric_key, metric_labels

CURVE_THRESHOLDS = 101
"""Points of each precision-recall curve (binned, so the curve's memory does not grow with the images)."""


def label_set_metrics(num_labels: int) -> MetricCollection:
    """Per label: average precision, the counts at its threshold (true and false positives and negatives), and the
    precision-recall curve. They take scores centred on the thresholds (:func:`~..training.metrics.centred_scores`)."""
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
    for metric, label in metric_labels(MULTILABEL).items():
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
