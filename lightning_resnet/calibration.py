"""Temperature scaling (Guo et al. 2017): one number dividing the logits, fitted on the validation split
after ``fit`` so that the predicted probabilities can be read as probabilities.

Dividing the logits by ``T`` never changes the top-1 class, only how confident each prediction is.
``T`` minimises the validation negative log-likelihood (NLL); the NLL is convex in ``1 / T``, so a
golden-section search over it finds the minimum, and each step needs only two sums over the
validation images, added up across DDP processes. The fitted ``T`` is stored in the best
checkpoint, which ``predict``, ``validate`` and ``test`` then read.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassCalibrationError

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


class _LogitCollector(Callback):
    """Keeps this process's validation logits and targets of one ``validate`` call."""

    def __init__(self) -> None:
        self.logits: list[Tensor] = []
        self.targets: list[Tensor] = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is not None:
            self.logits.append(outputs.detach().float())
            self.targets.append(batch[1])


def fit_temperature(logits: Tensor, targets: Tensor, total: callable = lambda sums: sums) -> float:
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


def _scores(logits: Tensor, targets: Tensor, temperature: float, num_classes: int, total) -> tuple[float, float]:
    """(NLL, ECE) of ``logits / temperature`` over every process's images."""
    scaled = logits / temperature
    sums = total(torch.stack([F.cross_entropy(scaled, targets, reduction="sum").double(),
                              torch.tensor(float(len(targets)), dtype=torch.float64, device=logits.device)]))
    ece = MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS).to(logits.device)
    ece.update(scaled.softmax(dim=1), targets)  # computed across processes by torchmetrics
    return float(sums[0] / sums[1]), float(ece.compute())


def calibrate(trainer: Trainer, model: LightningModule, datamodule: LightningDataModule, checkpoint: str) -> float:
    """Fit the temperature of ``checkpoint`` on the validation split, store it there and in ``model``.

    Runs ``validate`` on the checkpoint (which also writes its validation report), prints the
    NLL and ECE before and after, and returns the temperature.
    """
    collector = _LogitCollector()
    trainer.callbacks.append(collector)
    test_time_augmentation, model.tta = model.tta, "none"  # the temperature is the model's own, fitted without
    try:
        trainer.validate(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)
    finally:
        trainer.callbacks.remove(collector)
        model.tta = test_time_augmentation
    device = model.device
    # the model's log-probabilities times its temperature: its logits less a constant per image (which
    # no softmax sees), as if divided by a temperature of 1
    logits = torch.cat(collector.logits).to(device) * model.temperature
    targets = torch.cat(collector.targets).to(device)

    def total(sums: Tensor) -> Tensor:
        return trainer.strategy.reduce(sums, reduce_op="sum")

    temperature = fit_temperature(logits, targets, total)
    before = _scores(logits, targets, 1.0, model.num_classes, total)
    after = _scores(logits, targets, temperature, model.num_classes, total)
    count = int(total(torch.tensor([float(len(targets))], device=device))[0])
    model.temperature.fill_(temperature)
    if trainer.is_global_zero:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        saved["state_dict"]["temperature"] = torch.tensor(temperature)
        torch.save(saved, checkpoint)
        print(f"calibration on {count} validation images: temperature {temperature:.3f}; "
              f"NLL {before[0]:.4f} -> {after[0]:.4f}, ECE {before[1]:.4f} -> {after[1]:.4f} (stored in {checkpoint})")
    trainer.strategy.barrier()
    return temperature
