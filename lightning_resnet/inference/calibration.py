"""Calibration at the end of ``fit``: the model's decision fitted on the validation split, into the best checkpoint.

For one class per image, the temperature (temperature scaling, Guo et al. 2017), so that the predicted probabilities
can be read as probabilities, and the threshold below which a prediction is unsure; for a label set, each label's
threshold. The task fits them (:meth:`~lightning_resnet.tasks.Task.fit_decision`); this callback keeps the logits of
the validation epoch the best checkpoint was chosen at during ``fit``, and writes what was fitted into that
checkpoint's bundle, which ``predict``, ``validate``, ``test`` and ``export`` then read.
"""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor
from torchmetrics import Metric

from ..bundle.checkpoint import set_decision
from ..errors import check
from ..tasks import Sync
from ..tasks.energy import KEEP_CORRECT
from ..tasks.temperature import CALIBRATION_BINS
from ..training.checkpoints import best_checkpoint, rewrite_checkpoint
from .across_processes import gather


class ReliabilityBins(Metric):
    """Per confidence bin: the number of predictions, their summed confidence and how many were right."""

    full_state_update = False

    def __init__(self, bins: int = CALIBRATION_BINS) -> None:
        super().__init__()
        self.bins = bins
        for name in ("count", "confidence", "correct"):
            self.add_state(name, torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probabilities: Tensor, targets: Tensor) -> None:
        confidence, predicted = probabilities.max(dim=1)
        index = (confidence * self.bins).long().clamp(0, self.bins - 1)
        self.count.index_add_(0, index, torch.ones_like(confidence, dtype=torch.float64))
        self.confidence.index_add_(0, index, confidence.double())
        self.correct.index_add_(0, index, (predicted == targets).double())

    def compute(self) -> Tensor:
        """Rows: count, mean confidence and accuracy of each bin (0 where empty)."""
        filled = self.count.clamp_min(1)
        return torch.stack([self.count, self.confidence / filled, self.correct / filled])


class Calibration(Callback):
    """During ``fit``: keeps the validation logits of the epoch the best checkpoint was written at; at the
    end, has the model's task fit its decision on them (the temperature, with ``model.calibrate``, and the
    threshold below which a prediction is unsure, the one that keeps ``keep_correct`` of the correctly
    classified validation images; or each label's threshold), and writes it into that checkpoint's bundle
    and into the model in memory.

    No extra pass over the data, and the trainer's metrics stay those of the fit. Which checkpoint
    is best is ``ModelCheckpoint``'s answer (:func:`~lightning_resnet.training.checkpoints.best_checkpoint`):
    it writes after this callback has seen the epoch, so the epoch's logits are adopted when the
    best checkpoint changed during that validation (seen at the next one, or at the end of ``fit``).
    A run resumed after its best epoch has not seen that epoch's logits: its best checkpoint keeps
    the decision it was given when it was written, and the model in memory keeps its task's default.

    Args:
        keep_correct: the share of the correctly classified validation images the unsure threshold
            keeps (their energy score is at or above it).
    """

    def __init__(self, keep_correct: float = KEEP_CORRECT) -> None:
        check(0.0 < keep_correct <= 1.0, f"calibration.keep_correct must be in (0, 1], got {keep_correct}")
        self.keep_correct = keep_correct
        self._best_before: str | None = None  # the best checkpoint when the current validation began
        self._epoch: tuple[str | None, Tensor, Tensor] | None = None  # that, and the last validation's logits, targets
        self._epoch_batches: list[tuple[Tensor, Tensor]] = []
        self._best: tuple[str, Tensor, Tensor] | None = None  # best checkpoint's path, its logits and targets

    @staticmethod
    def _active(trainer: Trainer) -> bool:
        return trainer.state.fn == "fit" and not trainer.sanity_checking

    @staticmethod
    def _best_path(trainer: Trainer) -> str | None:
        best = best_checkpoint(trainer)
        return None if best is None else str(best.path)

    def _adopt_if_best(self, trainer: Trainer) -> None:
        """The last validation's logits belong to the best checkpoint if that validation wrote it."""
        if self._epoch is not None:
            before, logits, targets = self._epoch
            now = self._best_path(trainer)
            if now is not None and now != before:
                self._best = (now, logits, targets)
        self._epoch = None

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._adopt_if_best(trainer)
            self._best_before = self._best_path(trainer)
        self._epoch_batches = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active(trainer) and outputs is not None:
            self._epoch_batches.append((outputs["logits"].detach().float().cpu(), batch[1].detach().cpu()))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer) and self._epoch_batches:
            self._epoch = (self._best_before,
                           torch.cat([logits for logits, _ in self._epoch_batches]),
                           torch.cat([targets for _, targets in self._epoch_batches]))
        self._epoch_batches = []

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._adopt_if_best(trainer)
        if self._best is None:
            return
        path, logits, targets = self._best
        sync = Sync(total=lambda sums: trainer.strategy.reduce(sums, reduce_op="sum"),
                    gather=lambda values: gather(trainer, values))
        fitted = pl_module.task.fit_decision(logits.to(pl_module.device), targets.to(pl_module.device),
                                             pl_module.class_names, sync,
                                             bool(getattr(pl_module.hparams, "calibrate", True)), self.keep_correct)
        if trainer.is_global_zero:
            rewrite_checkpoint(trainer, path, lambda saved: set_decision(saved, fitted.decision))
            print(f"{fitted.summary} (stored in {path})")
        trainer.strategy.barrier()
        pl_module.decision = fitted.decision
