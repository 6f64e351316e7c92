"""The report of ``validate`` and ``test``: a table, calibration, the confusion matrix, the worst mistakes; for a
multi-label model, the table and curves of :mod:`.label_set_report`."""

from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError, MulticlassConfusionMatrix

from ..data import datamodule_of
from ..inference.calibration import CALIBRATION_BINS, ReliabilityBins
from ..stages import TEST, VAL
from ..training.metrics import METRIC_LABELS, centred_scores, metric_key
from ..training.run import add_png, run_dir, tensorboard
from . import cam, plots
from .label_set_report import format_label_report, label_set_metrics, label_set_results, precision_recall_figure


@dataclass(order=True)
class Mistake:
    """A wrong prediction; mistakes order by confidence, then by when they were seen."""

    confidence: float
    seen: int
    image: Tensor = field(compare=False)
    target: int = field(compare=False)
    predicted: int = field(compare=False)


class EvaluationReport(Callback):
    """After ``validate`` and ``test``: a readable table, the confusion matrix and the most confident mistakes.

    The table (top-1, top-5, macro precision / recall / F1, the expected calibration error with
    the temperature the probabilities were divided by, per-class accuracy) is printed and saved
    as ``report_<stage>.txt``; the reliability diagram (``calibration_<stage>.png``), the
    confusion matrix and a grid of the ``mistakes`` most confident wrong predictions (each beside
    its Grad-CAM overlay for the predicted class, with ``cam``) are saved as PNGs beside the run
    and logged to TensorBoard. Validation inside ``fit`` writes nothing.
    """

    def __init__(self, mistakes: int = 16, max_plot_classes: int = 40, cam: bool = True) -> None:
        self.mistakes = mistakes
        self.cam = cam
        self.max_plot_classes = max_plot_classes
        self.metrics: MetricCollection | None = None
        self._worst: list[Mistake] = []  # a min-heap of the most confident mistakes so far
        self._seen = 0

    @staticmethod
    def _active(trainer: Trainer) -> bool:
        return trainer.state.fn in ("validate", "test")

    def _start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer):
            return
        classes = pl_module.num_classes
        self._worst = []
        if pl_module.multilabel:
            self.metrics = label_set_metrics(classes).to(pl_module.device)
            return
        self.metrics = MetricCollection(
            {
                "per_class": MulticlassAccuracy(classes, average="none"),
                "confusion": MulticlassConfusionMatrix(classes),
                "calibration_error": MulticlassCalibrationError(classes, n_bins=CALIBRATION_BINS),
                "reliability": ReliabilityBins(CALIBRATION_BINS),
            }
        ).to(pl_module.device)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module)

    def _collect(self, trainer: Trainer, pl_module: LightningModule, outputs: dict[str, Tensor] | None,
                 batch: Any) -> None:
        if not self._active(trainer) or outputs is None:
            return
        images, targets = batch
        probabilities = outputs["probabilities"].float()
        if pl_module.multilabel:  # a mistake is a label decided wrong: its target is the label, predicted 0 or 1
            self.metrics.update(centred_scores(probabilities, pl_module.label_thresholds), targets.int())
            decided = probabilities >= pl_module.label_thresholds
            for index, label in (decided != (targets >= 0.5)).nonzero().tolist():
                chosen = bool(decided[index, label])
                probability = probabilities[index, label].item()
                self._keep(probability if chosen else 1 - probability, images[index], label, int(chosen))
            return
        self.metrics.update(probabilities, targets)
        confidence, predicted = probabilities.max(dim=1)
        for index in (predicted != targets).nonzero().flatten().tolist():
            self._keep(confidence[index].item(), images[index], targets[index].item(), predicted[index].item())

    def _keep(self, confidence: float, image: Tensor, target: int, predicted: int) -> None:
        """Keep a mistake if it is among the ``mistakes`` most confident so far (numbered as it was seen; a later one
        wins a tie); its image is copied off the device only then."""
        self._seen += 1
        if len(self._worst) >= self.mistakes and (not self._worst or confidence < self._worst[0].confidence):
            return  # evaluation.mistakes 0, or less confident than every one kept
        mistake = Mistake(confidence, self._seen, image.cpu(), target, predicted)
        if len(self._worst) < self.mistakes:
            heapq.heappush(self._worst, mistake)
        else:
            heapq.heappushpop(self._worst, mistake)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, pl_module, outputs, batch)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._report(trainer, pl_module, VAL)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._report(trainer, pl_module, TEST)

    def _report(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # every process takes part in the sync, the gather and run_dir
        if pl_module.multilabel:
            results = label_set_results(self.metrics)
        else:
            results = {key: value.cpu() for key, value in self.metrics.compute().items()}
        self._worst = self._gather_worst(trainer)
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            write = self._write_label_sets if pl_module.multilabel else self._write
            write(trainer, pl_module, stage, folder, results)
        self.metrics.reset()

    def _gather_worst(self, trainer: Trainer) -> list[Mistake]:
        """Every process's most confident mistakes, merged; each process saw its own share of the images."""
        if trainer.world_size == 1 or not torch.distributed.is_initialized():
            return self._worst
        shares: list[list[Mistake] | None] = [None] * trainer.world_size
        torch.distributed.all_gather_object(shares, [(m.confidence, m.image, m.target, m.predicted)
                                                     for m in self._worst])
        merged = [Mistake(confidence, rank * 10**9 + order, image, target, predicted)
                  for rank, share in enumerate(shares) for order, (confidence, image, target, predicted)
                  in enumerate(share)]
        return sorted(merged, reverse=True)[: self.mistakes]

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str, folder: Path,
               results: dict[str, Tensor]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        names = pl_module.class_names
        confusion = results["confusion"]
        calibration = (float(results["calibration_error"]), float(pl_module.temperature))
        table = format_report(stage, trainer.callback_metrics, names, results["per_class"], confusion.sum(1),
                              calibration, getattr(pl_module, "tta", "none"))
        print(table)
        (folder / f"report_{stage}.txt").write_text(table + "\n")
        with open(folder / f"confusion_matrix_{stage}.csv", "w", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows([["true \\ predicted", *names],
                                          *([name, *row] for name, row in zip(names, confusion.tolist()))])
        figures = {"calibration": plots.reliability_figure(results["reliability"], calibration[0], stage)}
        if len(names) <= self.max_plot_classes:
            figures["confusion_matrix"] = plots.confusion_matrix_figure(confusion, names)
        if self._worst:
            worst = sorted(self._worst, reverse=True)
            titles = [f"true {names[m.target]}\npred {names[m.predicted]} {m.confidence:.2f}" for m in worst]
            figures["mistakes"] = self._mistakes_figure(trainer, pl_module, worst, titles, [m.predicted for m in worst])
        for name, figure in figures.items():
            figure.savefig(folder / f"{name}_{stage}.png", dpi=120, bbox_inches="tight")
        print(f"wrote report_{stage}.txt, confusion_matrix_{stage}.csv and "
              f"{', '.join(f'{name}_{stage}.png' for name in figures)} in {folder}", flush=True)
        writer = tensorboard(trainer)
        for name in figures if writer is not None else ():
            # the PNG just written: add_figure would draw each figure a second time (0.47 s of a 2.6 s validate
            # on the digits, most of it matplotlib's layout)
            tag = "most_confident_mistakes" if name == "mistakes" else name
            add_png(writer, f"{stage}/{tag}", folder / f"{name}_{stage}.png", trainer.global_step)


    def _mistakes_figure(self, trainer: Trainer, pl_module: LightningModule, worst: list[Mistake], titles: list[str],
                         cam_classes: list[int]) -> Figure:
        """The grid of ``worst``, each beside its Grad-CAM for its class of ``cam_classes`` (with ``cam``)."""
        data = datamodule_of(trainer)
        normalized = torch.stack([m.image for m in worst])
        images = plots.to_viewable(normalized, data and data.normalization)
        if self.cam:
            heat = cam.grad_cam(pl_module.model, normalized.to(pl_module.device), torch.tensor(cam_classes)).cpu()
            overlays = [torch.from_numpy(cam.overlay((image.expand(3, -1, -1).permute(1, 2, 0) * 255).byte()
                                                     .numpy(), map_.numpy())).permute(2, 0, 1) / 255
                        for image, map_ in zip(images, heat)]
            images = torch.stack([view for pair in zip(images.expand(-1, 3, -1, -1), overlays) for view in pair])
            titles = [title for pair in zip(titles, ["Grad-CAM"] * len(titles)) for title in pair]
        return plots.mistakes_figure(images, titles)

    def _write_label_sets(self, trainer: Trainer, pl_module: LightningModule, stage: str, folder: Path,
                          results: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        names = pl_module.class_names
        images = int(results["counts"][0, :4].sum())  # true and false positives and negatives of the first label
        table = format_label_report(stage, trainer.callback_metrics, names, results,
                                    pl_module.label_thresholds.cpu(), images)
        print(table)
        (folder / f"report_{stage}.txt").write_text(table + "\n")
        figures = {"precision_recall": precision_recall_figure(results["curve"], results, names, stage)}
        if self._worst:  # a label predicted where it is not, or missed where it is, the most confidently
            worst = sorted(self._worst, reverse=True)
            titles = [f"{names[m.target]}: {'not there' if m.predicted else 'missed'}\n"
                      f"p {m.confidence if m.predicted else 1 - m.confidence:.2f}" for m in worst]
            figures["mistakes"] = self._mistakes_figure(trainer, pl_module, worst, titles, [m.target for m in worst])
        for name, figure in figures.items():
            figure.savefig(folder / f"{name}_{stage}.png", dpi=120, bbox_inches="tight")
        print(f"wrote report_{stage}.txt, {', '.join(f'{name}_{stage}.png' for name in figures)} in {folder}",
              flush=True)
        writer = tensorboard(trainer)
        for name in figures if writer is not None else ():
            add_png(writer, f"{stage}/{'most_confident_mistakes' if name == 'mistakes' else name}",
                    folder / f"{name}_{stage}.png", trainer.global_step)


def format_report(stage: str, logged: dict[str, Tensor], names: list[str], per_class: Tensor, counts: Tensor,
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
