"""The report of ``validate`` and ``test`` for one class per image: the table (the logged metrics, the expected
calibration error with the temperature, each class's accuracy), the confusion matrix (CSV and figure) and the
reliability diagram; a mistake is an image given the wrong class."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix

from ..inference.calibration import ReliabilityBins
from ..tasks import Decision
from ..tasks.metrics import METRIC_LABELS, metric_key
from ..tasks.temperature import CALIBRATION_BINS
from . import plots


class ClassReport:
    """What :class:`~.evaluation.EvaluationReport` writes for a single-label model."""

    def __init__(self, class_names: Sequence[str], max_plot_classes: int) -> None:
        self.names = list(class_names)
        self.max_plot_classes = max_plot_classes

    def metrics(self) -> MetricCollection:
        classes = len(self.names)
        return MetricCollection({
            "per_class": MulticlassAccuracy(classes, average="none"),
            "confusion": MulticlassConfusionMatrix(classes),
            "calibration_error": MulticlassCalibrationError(classes, n_bins=CALIBRATION_BINS),
            "reliability": ReliabilityBins(CALIBRATION_BINS),
        })

    def update(self, metrics: MetricCollection, probabilities: Tensor, targets: Tensor, decision: Decision) -> None:
        metrics.update(probabilities, targets)

    def mistakes(self, probabilities: Tensor, targets: Tensor,
                 decision: Decision) -> list[tuple[float, int, int, int]]:
        """``(confidence, row, true class, predicted class)`` of each image classified wrong."""
        confidence, predicted = probabilities.max(dim=1)
        return [(confidence[row].item(), row, targets[row].item(), predicted[row].item())
                for row in (predicted != targets).nonzero().flatten().tolist()]

    def mistake_title(self, confidence: float, target: int, predicted: int) -> tuple[str, int]:
        """A mistake's title in the grid, and the class whose activation map is shown beside it."""
        return f"true {self.names[target]}\npred {self.names[predicted]} {confidence:.2f}", predicted

    def results(self, metrics: MetricCollection) -> dict[str, Tensor]:
        """The metrics computed (every process takes part), on the CPU."""
        return {key: value.cpu() for key, value in metrics.compute().items()}

    def write(self, stage: str, folder: Path, logged: dict[str, Tensor], results: dict[str, Tensor],
              decision: Decision, tta: str) -> tuple[str, list[str], dict[str, Figure]]:
        """The table, the other files written, and the figures to save."""
        confusion = results["confusion"]
        calibration = (float(results["calibration_error"]), decision.temperature)
        table = format_report(stage, logged, self.names, results["per_class"], confusion.sum(1), calibration, tta)
        with open(folder / f"confusion_matrix_{stage}.csv", "w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([["true \\ predicted", *self.names],
                                                               *([name, *row] for name, row in
                                                                 zip(self.names, confusion.tolist()))])
        figures = {"calibration": plots.reliability_figure(results["reliability"], calibration[0], stage)}
        if len(self.names) <= self.max_plot_classes:
            figures["confusion_matrix"] = plots.confusion_matrix_figure(confusion, self.names)
        return table, [f"confusion_matrix_{stage}.csv"], figures


def format_report(stage: str, logged: dict[str, Any], names: list[str], per_class: Tensor, counts: Tensor,
                  calibration: tuple[float, float], tta: str = "none") -> str:
    """The printed table: the stage's logged metrics and calibration, then each class's image count and accuracy.

    ``calibration`` is the expected calibration error and the temperature the logits were divided by;
    ``tta`` the test-time augmentation the probabilities were averaged over.
    """
    views = "" if tta == "none" else f"; test-time augmentation {tta}"
    lines = [f"{stage}: {int(counts.sum())} images, {len(names)} classes{views}"]
    for metric, label in METRIC_LABELS.items():
        value = logged.get(metric_key(stage, metric))
        if value is not None:
            lines.append(f"  {label:<16} {float(value):.4f}")
    ece, temperature = calibration
    calibrated = (f"calibrated: temperature {temperature:.3f} fitted on the validation split" if temperature != 1.0
                  else "not calibrated (temperature 1)")
    lines.append(f"  {'ECE':<16} {ece:.4f} ({CALIBRATION_BINS} bins; {calibrated})")
    width = max(12, *(len(name) for name in names))
    lines.append(f"  {'class':<{width}} {'images':>7} {'accuracy':>9}")
    for name, count, accuracy in zip(names, counts.tolist(), per_class.tolist()):
        shown = f"{accuracy:.4f}" if count else "-"
        lines.append(f"  {name:<{width}} {int(count):>7} {shown:>9}")
    return "\n".join(lines)
