"""Temperature scaling (Guo et al. 2017): one number dividing the logits, fitted on the validation split
after ``fit`` so that the predicted probabilities can be read as probabilities.

Dividing the logits by ``T`` never changes the top-1 class, only how confident each prediction is.
``T`` minimises the validation negative log-likelihood (NLL); the NLL is convex in ``1 / T``, so a
golden-section search over it finds the minimum, and each step needs only two sums over the
validation images, added up across DDP processes. The logits are those of the validation epoch
the best checkpoint was chosen at, kept during ``fit``; the fitted ``T`` is stored in that
checkpoint, which ``predict``, ``validate``, ``test`` and ``export`` then read.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassCalibrationError

from ..training.metrics import MONITOR, MONITOR_MODE

CALIBRATION_BINS = 15
"""Confidence bins of the expected calibration error and the reliability diagram (Guo et al.'s 15)."""
_SEARCH_RANGE = (math.log(1 / 20), math.log(20))  # 1 / T from 1/20 to 20
_SEARCH_STEPS = 60  # golden-section steps: the range shrinks to 0.618^60 of its width


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


def fit_temperature(logits: Tensor, targets: Tensor, total: Callable[[Tensor], Tensor] = lambda sums: sums) -> float:
    """The ``T`` minimising the mean NLL of ``logits / T``; ``total`` adds sums up across processes."""

    def mean_nll(log_inverse: float) -> float:
        local = F.cross_entropy(logits * math.exp(log_inverse), targets, reduction="sum")
        sums = total(torch.stack([local.double(), torch.tensor(float(len(targets)), dtype=torch.float64,
                                                               device=local.device)]))
        return float(sums[0] / sums[1])

    ratio = (math.sqrt(5) - 1) / 2
    low, high = _SEARCH_RANGE
    left, right = high - ratio * (high - low), low + ratio * (high - low)
    left_value, right_value = mean_nll(left), mean_nll(right)
    for _ in range(_SEARCH_STEPS):
        if left_value < right_value:
            high, right, right_value = right, left, left_value
            left = high - ratio * (high - low)
            left_value = mean_nll(left)
        else:
            low, left, left_value = left, right, right_value
            right = low + ratio * (high - low)
            right_value = mean_nll(right)
    return 1 / math.exp((low + high) / 2)


def _scores(logits: Tensor, targets: Tensor, temperature: float, num_classes: int,
            total: Callable[[Tensor], Tensor]) -> tuple[float, float]:
    """(NLL, ECE) of ``logits / temperature`` over every process's images."""
    scaled = logits / temperature
    sums = total(torch.stack([F.cross_entropy(scaled, targets, reduction="sum").double(),
                              torch.tensor(float(len(targets)), dtype=torch.float64, device=logits.device)]))
    ece = MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS).to(logits.device)
    ece.update(scaled.softmax(dim=1), targets)  # computed across processes by torchmetrics
    return float(sums[0] / sums[1]), float(ece.compute())


class TemperatureScaling(Callback):
    """During ``fit``: keeps the validation logits of the epoch the best checkpoint is chosen at; at the
    end, fits the temperature on them and writes it into that checkpoint (with ``model.calibrate``).

    No extra pass over the data, and the trainer's model and metrics stay those of the fit. The
    best epoch is the first with the best :data:`~lightning_resnet.metrics.MONITOR`, as
    ``ModelCheckpoint`` chooses it.
    """

    def __init__(self) -> None:
        self._logits: list[Tensor] = []
        self._targets: list[Tensor] = []
        self._kept: tuple[float, Tensor, Tensor] | None = None  # (monitored score, logits, targets)

    @staticmethod
    def _active(trainer: Trainer, pl_module: LightningModule) -> bool:
        return (trainer.state.fn == "fit" and not trainer.sanity_checking
                and bool(getattr(pl_module.hparams, "calibrate", False)))

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._logits, self._targets = [], []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._active(trainer, pl_module) and outputs is not None:
            # log-probabilities times the temperature: the logits less a constant per image, which no
            # softmax sees (the temperature is 1 during fit anyway)
            self._logits.append((outputs.detach().float() * pl_module.temperature).cpu())
            self._targets.append(batch[1].detach().cpu())

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        score = trainer.callback_metrics.get(MONITOR)
        if not self._active(trainer, pl_module) or score is None or not self._logits:
            return
        sign = 1 if MONITOR_MODE == "max" else -1
        if self._kept is None or sign * float(score) > sign * self._kept[0]:
            self._kept = (float(score), torch.cat(self._logits), torch.cat(self._targets))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        best = next((callback for callback in trainer.checkpoint_callbacks
                     if callback.monitor == MONITOR and callback.best_model_path), None)
        if not self._active(trainer, pl_module) or self._kept is None or best is None:
            return
        score, logits, targets = self._kept
        if best.best_model_score is None or abs(float(best.best_model_score) - score) > 1e-9:
            rank_zero_warn(f"not calibrated: the validation logits kept do not belong to {best.best_model_path}")
            return
        calibrate_checkpoint(trainer, best.best_model_path, logits.to(pl_module.device),
                             targets.to(pl_module.device), pl_module.num_classes)


def calibrate_checkpoint(trainer: Trainer, checkpoint: str, logits: Tensor, targets: Tensor,
                         num_classes: int) -> float:
    """Fit the temperature of ``checkpoint`` on these validation ``logits`` (every process its own share),
    store it in the checkpoint and print the NLL and ECE before and after; returns it."""

    def total(sums: Tensor) -> Tensor:
        return trainer.strategy.reduce(sums, reduce_op="sum")

    temperature = fit_temperature(logits, targets, total)
    before = _scores(logits, targets, 1.0, num_classes, total)
    after = _scores(logits, targets, temperature, num_classes, total)
    count = int(total(torch.tensor([float(len(targets))], device=logits.device))[0])
    if trainer.is_global_zero:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        saved["state_dict"]["temperature"] = torch.tensor(temperature)
        torch.save(saved, checkpoint)
        print(f"calibration on {count} validation images: temperature {temperature:.3f}; "
              f"NLL {before[0]:.4f} -> {after[0]:.4f}, ECE {before[1]:.4f} -> {after[1]:.4f} (stored in {checkpoint})")
    trainer.strategy.barrier()
    return temperature
