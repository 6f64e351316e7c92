"""What a run leaves for a person to read: prediction files, evaluation reports, plots.

All three are callbacks that the command line always adds (configurable under
``predictions``, ``evaluation`` and ``training_report``). Files go beside the run, into the
logger's folder ``logs/<experiment>/version_N/``; figures also go to TensorBoard.
"""

from __future__ import annotations

import csv
import heapq
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch import Callback, LightningModule, Trainer  # noqa: E402
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from lightning.pytorch.utilities import rank_zero_only  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torch import Tensor  # noqa: E402
from torchmetrics import MetricCollection  # noqa: E402
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run: the logger's ``version_N`` folder, or the trainer's root without a logger.

    Every process must call this together: ``trainer.log_dir`` is broadcast from process 0.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


def tensorboard(trainer: Trainer):
    """The ``SummaryWriter`` of the run's TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def to_viewable(images: Tensor, trainer: Trainer) -> Tensor:
    """Normalized images back to [0, 1] with the data module's mean and std (min-max scaled without them)."""
    images = images.detach().float().cpu()
    mean = getattr(trainer.datamodule, "mean", None)
    std = getattr(trainer.datamodule, "std", None)
    if mean is not None and std is not None:
        images = images * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    else:
        low = images.amin(dim=(1, 2, 3), keepdim=True)
        high = images.amax(dim=(1, 2, 3), keepdim=True)
        images = (images - low) / (high - low).clamp_min(1e-6)
    return images.clamp(0, 1)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` beside the run: path, class, confidence and the top-k classes.

    Each process writes its own part; process 0 joins them in path order (dropping the repeats
    that a distributed sampler pads with) and lists the images that could not be read.
    """

    def __init__(self, filename: str = "predictions.csv", top_k: int = 5) -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.top_k = top_k
        self.folder: Path | None = None

    def _part(self, rank: int) -> Path:
        return self.folder / f".{self.filename}.part{rank}"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.folder = run_dir(trainer)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._part(trainer.global_rank).write_text("")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Tensor],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if prediction is None:
            return
        paths = batch[1]
        probabilities = prediction["probabilities"].float().cpu()
        top = probabilities.topk(min(self.top_k, probabilities.shape[1]), dim=1)
        names = pl_module.class_names
        with open(self._part(trainer.global_rank), "a", newline="") as handle:
            writer = csv.writer(handle)
            for path, values, indices in zip(paths, top.values.tolist(), top.indices.tolist()):
                writer.writerow([
                    path,
                    names[indices[0]],
                    f"{values[0]:.6f}",
                    "|".join(names[i] for i in indices),
                    "|".join(f"{v:.6f}" for v in values),
                    "",
                ])

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            rows: dict[str, list[str]] = {}
            for rank in range(trainer.world_size):
                part = self._part(rank)
                with open(part, newline="") as handle:
                    rows.update((row[0], row) for row in csv.reader(handle))
                part.unlink()
            for path in getattr(trainer.datamodule, "predict_paths", []):
                if path not in rows:
                    rows[path] = [path, "", "", "", "", "could not be read"]
            output = self.folder / self.filename
            with open(output, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["path", "prediction", "confidence", f"top{self.top_k}_classes",
                                 f"top{self.top_k}_probabilities", "error"])
                writer.writerows(rows[path] for path in sorted(rows))
            unreadable = sum(1 for row in rows.values() if row[5])
            print(f"wrote {len(rows)} predictions to {output}" + (f" ({unreadable} unreadable)" if unreadable else ""))
        trainer.strategy.barrier()


class EvaluationReport(Callback):
    """After ``validate`` and ``test``: a readable table, the confusion matrix and the most confident mistakes.

    The table (top-1, top-5, macro precision / recall / F1, per-class accuracy) is printed and saved
    as ``report_<stage>.txt``; the confusion matrix and a grid of the ``mistakes`` most confident
    wrong predictions are saved as PNGs beside the run and logged to TensorBoard.
    """

    def __init__(self, mistakes: int = 16, max_plot_classes: int = 40) -> None:
        self.mistakes = mistakes
        self.max_plot_classes = max_plot_classes
        self.metrics: MetricCollection | None = None
        self._worst: list[tuple[float, int, Tensor, int, int]] = []
        self._seen = 0

    def _active(self, trainer: Trainer) -> bool:
        return trainer.state.fn in ("validate", "test")

    def _start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._active(trainer):
            return
        classes = pl_module.num_classes
        self.metrics = MetricCollection(
            {
                "per_class": MulticlassAccuracy(classes, average="none"),
                "confusion": MulticlassConfusionMatrix(classes),
            }
        ).to(pl_module.device)
        self._worst = []

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, pl_module)

    def _collect(self, trainer: Trainer, logits: Tensor | None, batch: Any) -> None:
        if not self._active(trainer) or logits is None:
            return
        images, targets = batch
        self.metrics.update(logits, targets)
        confidence, predicted = logits.float().softmax(dim=1).max(dim=1)
        for index in (predicted != targets).nonzero().flatten().tolist():
            self._seen += 1
            entry = (confidence[index].item(), self._seen, images[index].cpu(),
                     targets[index].item(), predicted[index].item())
            if len(self._worst) < self.mistakes:
                heapq.heappush(self._worst, entry)
            else:
                heapq.heappushpop(self._worst, entry)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._report(trainer, pl_module, "val")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._report(trainer, pl_module, "test")

    def _report(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        results = self.metrics.compute()  # every process takes part in the sync and in run_dir
        folder = run_dir(trainer)
        if trainer.is_global_zero:
            self._write(trainer, pl_module, stage, folder, {k: v.cpu() for k, v in results.items()})
        self.metrics.reset()

    def _write(self, trainer: Trainer, pl_module: LightningModule, stage: str, folder: Path,
               results: dict[str, Tensor]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        names = pl_module.class_names
        confusion = results["confusion"]
        table = format_report(stage, trainer.callback_metrics, names, results["per_class"], confusion.sum(1))
        print(table)
        (folder / f"report_{stage}.txt").write_text(table + "\n")
        writer = tensorboard(trainer)
        step = trainer.global_step

        if len(names) <= self.max_plot_classes:
            figure, _ = MulticlassConfusionMatrix(len(names)).plot(val=confusion, labels=names)
            figure.set_size_inches(max(5, 0.5 * len(names) + 3), max(4, 0.5 * len(names) + 2))
            figure.savefig(folder / f"confusion_matrix_{stage}.png", dpi=120, bbox_inches="tight")
            if writer is not None:
                writer.add_figure(f"{stage}/confusion_matrix", figure, step)
            plt.close(figure)
        with open(folder / f"confusion_matrix_{stage}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([["true \\ predicted", *names],
                                          *([name, *row] for name, row in zip(names, confusion.tolist()))])

        if self._worst:
            figure = mistakes_figure(sorted(self._worst, reverse=True), names, trainer)
            figure.savefig(folder / f"mistakes_{stage}.png", dpi=120)
            if writer is not None:
                writer.add_figure(f"{stage}/most_confident_mistakes", figure, step)
            plt.close(figure)


def format_report(stage: str, logged: dict[str, Tensor], names: list[str], per_class: Tensor, counts: Tensor) -> str:
    rows = [("top-1 accuracy", "acc"), ("top-5 accuracy", "acc_top5"), ("macro precision", "precision"),
            ("macro recall", "recall"), ("macro F1", "f1"), ("loss", "loss")]
    lines = [f"{stage}: {int(counts.sum())} images, {len(names)} classes"]
    for label, key in rows:
        value = logged.get(f"{stage}/{key}")
        if value is not None:
            lines.append(f"  {label:<16} {float(value):.4f}")
    width = max(12, *(len(name) for name in names))
    lines.append(f"  {'class':<{width}} {'images':>7} {'accuracy':>9}")
    for name, count, accuracy in zip(names, counts.tolist(), per_class.tolist()):
        shown = f"{accuracy:.4f}" if count else "-"
        lines.append(f"  {name:<{width}} {int(count):>7} {shown:>9}")
    return "\n".join(lines)


def mistakes_figure(worst: list[tuple], names: list[str], trainer: Trainer):
    images = to_viewable(torch.stack([entry[2] for entry in worst]), trainer)
    columns = min(8, len(worst))
    rows = math.ceil(len(worst) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, (confidence, _, _, target, predicted) in zip(axes.flat, images, worst):
        axis.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        axis.set_title(f"true {names[target]}\npred {names[predicted]} {confidence:.2f}", fontsize=8)
    figure.suptitle("most confident mistakes")
    figure.tight_layout()
    return figure


class TrainingReport(Callback):
    """During and after ``fit``: the augmented inputs of the first step, learning curves and HPARAMS.

    At the first training step a grid of the batch as the model sees it (after Mixup, Erasing)
    goes to TensorBoard. At the end, ``training_curves.png`` (loss and accuracy per epoch, train
    and validation, read back from the TensorBoard events) is written beside the run, and the
    hyper-parameters are logged with the final metrics for TensorBoard's HPARAMS tab.
    """

    def __init__(self, input_grid: int = 32) -> None:
        self.input_grid = input_grid

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        writer = tensorboard(trainer)
        if trainer.global_step != 1 or writer is None or self.input_grid <= 0:
            return
        images = to_viewable(batch[0][: self.input_grid], trainer)
        writer.add_image("train/inputs", make_grid(images, nrow=8, padding=2), trainer.global_step)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = run_dir(trainer)
        if not trainer.is_global_zero or tensorboard(trainer) is None:
            return
        self._log_hparams(trainer, pl_module)
        for logger in trainer.loggers:
            logger.save()
        tensorboard(trainer).flush()
        curves = read_curves(folder)
        if curves:
            figure = curves_figure(curves)
            figure.savefig(folder / "training_curves.png", dpi=120)
            plt.close(figure)

    def _log_hparams(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {f"hp/{key.replace('/', '_')}": float(value) for key, value in trainer.callback_metrics.items()
                   if key.startswith("val/") and value.numel() == 1}
        checkpoint = next((cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)), None)
        if checkpoint is not None and checkpoint.best_model_score is not None:
            metrics[f"hp/best_{checkpoint.monitor.replace('/', '_')}"] = float(checkpoint.best_model_score)
        hparams = dict(pl_module.hparams)
        if trainer.datamodule is not None:
            hparams.update({f"data.{k}": v for k, v in trainer.datamodule.hparams.items()})
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(hparams, metrics=metrics, step=trainer.global_step)


def read_curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch train/val loss and accuracy as recorded in the TensorBoard event files of ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags().get("scalars", []))
    if "epoch" not in tags:
        return {}
    epoch_at_step = {event.step: int(event.value) for event in events.Scalars("epoch")}
    curves = {}
    for name, tag in (("train loss", "train/loss_epoch"), ("val loss", "val/loss"),
                      ("train accuracy", "train/acc"), ("val accuracy", "val/acc")):
        if tag in tags:
            by_epoch = {epoch_at_step.get(event.step, event.step): event.value for event in events.Scalars(tag)}
            curves[name] = sorted(by_epoch.items())
    return curves


def curves_figure(curves: dict[str, list[tuple[int, float]]]):
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, kind in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        for split, style in (("train", "o-"), ("val", "s-")):
            points = curves.get(f"{split} {kind}")
            if points:
                axis.plot([epoch + 1 for epoch, _ in points], [value for _, value in points], style, label=split)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel(kind)
        axis.set_title(f"{kind} per epoch")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    return figure


