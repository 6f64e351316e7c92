"""Calibration at the end of ``fit``: the temperature (temperature scaling, Guo et al. 2017), so that the predicted
probabilities can be read as probabilities, and the threshold below which a prediction is unsure (see
:mod:`.verdict`), both chosen on the validation split.

Dividing the logits by ``T`` never changes the top-1 class, only how confident each prediction is.
``T`` minimises the validation negative log-likelihood (NLL); the NLL is convex in ``1 / T``, so
SciPy's bounded scalar minimisation over ``log(1 / T)`` finds it, and each step needs only two sums
over the validation images, added up across DDP processes (every process takes the same steps).
The threshold is then a quantile of the energy scores of the correctly classified images. The
logits are those of the validation epoch the best checkpoint was chosen at, kept during ``fit``;
the temperature and the threshold are stored in that checkpoint, which ``predict``, ``validate``,
``test`` and ``export`` then read.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, LightningModule, Trainer
from scipy.optimize import minimize_scalar
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import MulticlassCalibrationError

from ..errors import check
from ..training.checkpoints import best_checkpoint, rewrite_checkpoint
from .across_processes import gather
from .label_thresholds import threshold_checkpoint
from .unsure import KEEP_CORRECT, choose_reject_below, energy_score, is_unsure

MIN_CALIBRATION_IMAGES = 96
"""Fewer validation images leave the temperature at 1: a temperature fitted on fewer made the NLL of the other
validation images worse too often (benchmarks/README.md, "Calibration")."""
CALIBRATION_BINS = 15
"""Confidence bins of the expected calibration error and the reliability diagram (Guo et al.'s 15)."""
_LOG_INVERSE_RANGE = (math.log(1 / 20), math.log(20))  # 1 / T from 1/20 to 20

Total = Callable[[Tensor], Tensor]
"""Adds a tensor of sums up across processes (the identity in one process)."""


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


def mean_nll(logits: Tensor, targets: Tensor, temperature: float, total: Total = lambda sums: sums) -> float:
    """The mean negative log-likelihood of ``logits / temperature`` over every process's images."""
    local = F.cross_entropy(logits / temperature, targets, reduction="sum").double()
    sums = total(torch.stack([local, torch.tensor(float(len(targets)), dtype=torch.float64, device=local.device)]))
    return float(sums[0] / sums[1])


def fit_temperature(logits: Tensor, targets: Tensor, total: Total = lambda sums: sums) -> float:
    """The ``T`` in [1/20, 20] minimising :func:`mean_nll` of ``logits / T``."""
    result = minimize_scalar(lambda log_inverse: mean_nll(logits, targets, math.exp(-log_inverse), total),
                             bounds=_LOG_INVERSE_RANGE, method="bounded", options={"xatol": 1e-6})
    return math.exp(-float(result.x))


def expected_calibration_error(logits: Tensor, targets: Tensor, temperature: float, num_classes: int) -> float:
    """The ECE of ``logits / temperature`` over every process's images (torchmetrics syncs it)."""
    ece = MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS).to(logits.device)
    ece.update((logits / temperature).softmax(dim=1), targets)
    return float(ece.compute())


class Calibration(Callback):
    """During ``fit``: keeps the validation logits of the epoch the best checkpoint was written at; at the
    end, fits the temperature on them (with ``model.calibrate``), chooses the threshold below which a
    prediction is unsure (the one that keeps ``keep_correct`` of the correctly classified validation
    images), and writes both into that checkpoint and into the model in memory. A multi-label model gets
    each label's threshold instead (:mod:`.label_thresholds`).

    No extra pass over the data, and the trainer's metrics stay those of the fit. Which checkpoint
    is best is ``ModelCheckpoint``'s answer (:func:`~lightning_resnet.training.checkpoints.best_checkpoint`):
    it writes after this callback has seen the epoch, so the epoch's logits are adopted when the
    best checkpoint changed during that validation (seen at the next one, or at the end of ``fit``).
    A run resumed after its best epoch has not seen that epoch's logits: its best checkpoint keeps
    the temperature and threshold it was given when it was written, and the model in memory keeps
    1 and no threshold.

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
        if pl_module.multilabel:  # no temperature nor unsure threshold: a threshold per label instead
            pl_module.label_thresholds.copy_(threshold_checkpoint(trainer, path, logits.to(pl_module.device),
                                                                  targets.to(pl_module.device), pl_module.class_names))
            return
        temperature, reject_below = calibrate_checkpoint(
            trainer, path, logits.to(pl_module.device), targets.to(pl_module.device), pl_module.num_classes,
            fit_the_temperature=bool(getattr(pl_module.hparams, "calibrate", True)), keep_correct=self.keep_correct)
        pl_module.temperature.fill_(temperature)
        pl_module.reject_below.fill_(reject_below)


def calibrate_checkpoint(trainer: Trainer, checkpoint: str, logits: Tensor, targets: Tensor, num_classes: int,
                         fit_the_temperature: bool = True, keep_correct: float = KEEP_CORRECT) -> tuple[float, float]:
    """Fit the temperature of ``checkpoint`` on these validation ``logits`` (every process its own share; or keep
    1 without ``fit_the_temperature``), choose the unsure threshold on the energy scores of the calibrated logits,
    store both in the checkpoint and print what they did; returns them."""

    def total(sums: Tensor) -> Tensor:
        return trainer.strategy.reduce(sums, reduce_op="sum")

    count = int(total(torch.tensor([float(len(targets))], device=logits.device))[0])
    fitting = fit_the_temperature and count >= MIN_CALIBRATION_IMAGES
    temperature, notes = 1.0, []
    if fitting:
        fitted = fit_temperature(logits, targets, total)
        nll = mean_nll(logits, targets, 1.0, total), mean_nll(logits, targets, fitted, total)
        inside = math.exp(_LOG_INVERSE_RANGE[0]) * 1.01 < 1 / fitted < math.exp(_LOG_INVERSE_RANGE[1]) / 1.01
        # never store a temperature that does not help, nor one at the end of the range, where the NLL had no minimum
        temperature = fitted if nll[1] < nll[0] and inside else 1.0
        ece = (expected_calibration_error(logits, targets, 1.0, num_classes),
               expected_calibration_error(logits, targets, temperature, num_classes))
    calibrated = logits / temperature
    reject_below = choose_reject_below(calibrated, targets, temperature, keep_correct,
                                       lambda values: gather(trainer, values))
    flagged_wrong = _share_flagged_of_wrong(calibrated, targets, temperature, reject_below, total)
    if trainer.is_global_zero:
        def store(saved: dict) -> None:
            saved["state_dict"]["temperature"] = torch.tensor(temperature)
            saved["state_dict"]["reject_below"] = torch.tensor(reject_below)

        rewrite_checkpoint(trainer, checkpoint, store)
        if fitting:
            if not inside:
                notes.append(f"the NLL fell all the way to the end of the searched range (T = {fitted:.3g}; 1/20 to "
                             "20), which it does when the validation images are all classified right: kept 1")
            elif temperature != fitted:
                notes.append(f"no temperature lowered the NLL ({fitted:.3f} did not): kept 1")
            if ece[1] > ece[0]:
                notes.append(f"the ECE rose: over {count} images its {CALIBRATION_BINS} bins are noisy")
            done = (f"temperature {temperature:.3f}; NLL {nll[0]:.4f} -> {min(nll):.4f}, "
                    f"ECE {ece[0]:.4f} -> {ece[1]:.4f}")
        elif fit_the_temperature:
            done = (f"temperature 1 (fewer than {MIN_CALIBRATION_IMAGES} validation images: a temperature fitted on "
                    f"so few made the NLL of other images worse)")
        else:
            done = "temperature 1 (model.calibrate is off)"
        wrong = "no validation image was misclassified" if flagged_wrong is None else \
            f"{flagged_wrong:.0%} of the misclassified flagged"
        print(f"calibration on {count} validation images: {done}; unsure below an energy score of "
              f"{reject_below:.4f} (keeps {keep_correct:.0%} of the correctly classified, {wrong}) "
              f"(stored in {checkpoint})"
              + "".join(f"; {note}" for note in notes))
    trainer.strategy.barrier()
    return temperature, reject_below


def _share_flagged_of_wrong(calibrated_logits: Tensor, targets: Tensor, temperature: float, reject_below: float,
                            total: Total) -> float | None:
    wrong = calibrated_logits.argmax(dim=1) != targets
    flagged = is_unsure(energy_score(calibrated_logits, temperature), reject_below)
    sums = total(torch.stack([(wrong & flagged).sum(), wrong.sum()]).double())
    return None if sums[1] == 0 else float(sums[0] / sums[1])
