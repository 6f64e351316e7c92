"""What ``fit`` leaves to read: ``split.csv``, the augmented inputs of the first step, learning curves and HPARAMS."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid

from ..data import SPLIT_CSV, datamodule_of, write_split_csv
from ..stages import TRAIN, VAL
from ..tasks.metrics import ACCURACY, LOSS, MEAN_AP, metric_key
from ..training.checkpoints import best_checkpoint
from ..training.metrics import SKIPPED_IMAGES, TRAIN_LOSS_EPOCH
from ..training.run import run_dir, tensorboard
from . import plots

TRAINING_CURVES = "training_curves.png"
CURVES = {
    "train loss": TRAIN_LOSS_EPOCH,
    "val loss": metric_key(VAL, LOSS),
    "train accuracy": metric_key(TRAIN, ACCURACY),
    "val accuracy": metric_key(VAL, ACCURACY),
    "val mAP": metric_key(VAL, MEAN_AP),
}
"""The curves of ``training_curves.png`` and the TensorBoard scalars they are read from."""


class TrainingReport(Callback):
    """During and after ``fit``: the split, the augmented inputs of the first step, learning curves and HPARAMS.

    At the start, ``split.csv`` (``path,split,class`` of every image: which were held out) is
    written beside the run. At the first training step a grid of the batch as the model sees it (after Mixup, Erasing)
    goes to TensorBoard. At the end, ``training_curves.png`` (loss and accuracy per epoch, train
    and validation, read back from the TensorBoard events) is written beside the run, and the
    hyper-parameters are logged with the final metrics for TensorBoard's HPARAMS tab.
    """

    def __init__(self, input_grid: int = 32) -> None:
        self.input_grid = input_grid

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = run_dir(trainer)
        data = datamodule_of(trainer)
        if trainer.is_global_zero and data is not None:
            folder.mkdir(parents=True, exist_ok=True)
            write_split_csv(folder / SPLIT_CSV, data.source.split_rows())

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        data = datamodule_of(trainer)
        if data is not None and (trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches):
            # at the epoch's last step, not at its end: see ImageClassifier.training_step
            pl_module.log(SKIPPED_IMAGES, float(data.skipped_images), on_step=False, on_epoch=True,
                          reduce_fx="sum", sync_dist=True)
        if trainer.is_global_zero:
            self._log_inputs(trainer, batch)

    def _log_inputs(self, trainer: Trainer, batch) -> None:
        writer = tensorboard(trainer)
        if trainer.global_step != 1 or writer is None or self.input_grid <= 0:
            return
        data = datamodule_of(trainer)
        images = plots.to_viewable(batch[0][: self.input_grid], data and data.normalization)
        writer.add_image("train/inputs", make_grid(images, nrow=8, padding=2), trainer.global_step)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = run_dir(trainer)
        writer = tensorboard(trainer)
        if not trainer.is_global_zero or writer is None:
            return
        self._log_hparams(trainer, pl_module)
        for logger in trainer.loggers:
            logger.save()
        writer.flush()
        curves = read_curves(folder)
        if curves:
            plots.curves_figure(curves).savefig(folder / TRAINING_CURVES, dpi=120)

    def _log_hparams(self, trainer: Trainer, pl_module: LightningModule) -> None:
        metrics = {f"hp/{key.replace('/', '_')}": float(value) for key, value in trainer.callback_metrics.items()
                   if key.startswith(f"{VAL}/") and value.numel() == 1}
        best = best_checkpoint(trainer)
        if best is not None:
            metrics[f"hp/best_{best.monitor.replace('/', '_')}"] = best.score
        hparams = dict(pl_module.hparams)
        if trainer.datamodule is not None:
            hparams.update({f"data.{k}": v for k, v in trainer.datamodule.hparams.items()})
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(hparams, metrics=metrics, step=trainer.global_step)


def _by_epoch(folder: Path, wanted) -> dict[str, dict[int, float]]:
    """Scalars of ``folder``'s TensorBoard events whose tag ``wanted(tag)`` accepts, per epoch."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags().get("scalars", []))
    if "epoch" not in tags:
        return {}
    epoch_at_step = {event.step: int(event.value) for event in events.Scalars("epoch")}
    return {tag: {epoch_at_step.get(event.step, event.step): event.value for event in events.Scalars(tag)}
            for tag in sorted(tags) if wanted(tag)}


def read_curves(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch train/val loss and accuracy as recorded in the TensorBoard event files of ``folder``."""
    scalars = _by_epoch(folder, set(CURVES.values()).__contains__)
    return {name: sorted(scalars[tag].items()) for name, tag in CURVES.items() if tag in scalars}
