"""The report of ``validate`` and ``test``: the task's table and figures (:mod:`.class_report` for one class per
image, :mod:`.label_set_report` for a label set) and the most confident mistakes, printed, saved beside the run and
logged to TensorBoard."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import MetricCollection

from ..data import datamodule_of
from ..stages import TEST, VAL
from ..tasks import MULTI_LABEL, SINGLE_LABEL
from ..training.run import add_png, run_dir, tensorboard
from . import cam, plots
from .class_report import ClassReport
from .label_set_report import LabelSetReport

REPORTS = {SINGLE_LABEL.name: ClassReport, MULTI_LABEL.name: LabelSetReport}
"""Each task's report."""


@dataclass(order=True)
class Mistake:
    """A wrong answer; mistakes order by confidence, then by when they were seen. ``target`` and ``predicted`` are
    the task report's (a true and a predicted class; or a label and whether it was given)."""

    confidence: float
    seen: int
    image: Tensor = field(compare=False)
    target: int = field(compare=False)
    predicted: int = field(compare=False)


class EvaluationReport(Callback):
    """After ``validate`` and ``test``: a readable table, the task's figures and the most confident mistakes.

    The table (for one class per image: top-1, top-5, macro precision / recall / F1, the expected calibration error
    with the temperature the probabilities were divided by, per-class accuracy; for a label set, each label's)
    is printed and saved as ``report_<stage>.txt``; the task's figures (the reliability diagram and the confusion
    matrix, or the precision-recall curves) and a grid of the ``mistakes`` most confident wrong answers (each beside
    its Grad-CAM overlay, with ``cam``) are saved as PNGs beside the run and logged to TensorBoard. Validation inside
    ``fit`` writes nothing.
    """

    def __init__(self, mistakes: int = 16, max_plot_classes: int = 40, cam: bool = True) -> None:
        self.mistakes = mistakes
        self.cam = cam
        self.max_plot_classes = max_plot_classes
        self.report: ClassReport | LabelSetReport | None = None
        self.metrics: MetricCollection | None = None
        self._worst: list[Mistake] = []  # a min-heap of the most confident mistakes so far
        self._seen = 0

    @staticmethod
    def _active(trainer: Trainer) -> bool:
        return trainer.state.fn in ("validate", "test")

    def _start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer):
            return
        self._worst = []
        self.report = REPORTS[pl_module.task.name](pl_module.class_names, self.max_plot_classes)
        self.metrics = self.report.metrics().to(pl_module.device)

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
        self.report.update(self.metrics, probabilities, targets, pl_module.decision)
        for confidence, row, target, predicted in self.report.mistakes(probabilities, targets, pl_module.decision):
            self._keep(confidence, images[row], target, predicted)

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
        # every process takes part in the metrics' sync, the gather and run_dir
        results = self.report.results(self.metrics)
        self._worst = self._gather_worst(trainer)
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            folder.mkdir(parents=True, exist_ok=True)
            table, written, figures = self.report.write(stage, folder, trainer.callback_metrics, results,
                                                        pl_module.decision, getattr(pl_module, "tta", "none"))
            print(table)
            (folder / f"report_{stage}.txt").write_text(table + "\n")
            if self._worst:
                figures["mistakes"] = self._mistakes_figure(trainer, pl_module, sorted(self._worst, reverse=True))
            for name, figure in figures.items():
                figure.savefig(folder / f"{name}_{stage}.png", dpi=120, bbox_inches="tight")
            files = [f"report_{stage}.txt", *written, *(f"{name}_{stage}.png" for name in figures)]
            print(f"wrote {', '.join(files[:-1])} and {files[-1]} in {folder}", flush=True)
            writer = tensorboard(trainer)
            for name in figures if writer is not None else ():
                # the PNG just written: add_figure would draw each figure a second time (0.47 s of a 2.6 s validate
                # on the digits, most of it matplotlib's layout)
                tag = "most_confident_mistakes" if name == "mistakes" else name
                add_png(writer, f"{stage}/{tag}", folder / f"{name}_{stage}.png", trainer.global_step)
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

    def _mistakes_figure(self, trainer: Trainer, pl_module: LightningModule, worst: list[Mistake]) -> Figure:
        """The grid of ``worst``, each beside its Grad-CAM for the class the task report names (with ``cam``)."""
        titles, cam_classes = zip(*(self.report.mistake_title(m.confidence, m.target, m.predicted) for m in worst))
        titles = list(titles)
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
