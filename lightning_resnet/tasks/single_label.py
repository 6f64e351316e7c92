"""One class per image (``multiclass``): a softmax over the classes, cross-entropy, accuracy, the temperature and
the unsure threshold fitted at the end of ``fit``, the most probable classes as the answer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ..errors import check
from ..stages import VAL
from .base import Decision, Fitted, Sync, Task
from .energy import choose_reject_below, energy_score, is_unsure
from .metrics import ACCURACY, METRIC_LABELS, classification_metrics, metric_key
from .temperature import (
    CALIBRATION_BINS,
    MIN_CALIBRATION_IMAGES,
    SEARCHED,
    at_the_end_of_the_search,
    expected_calibration_error,
    fit_temperature,
    mean_nll,
)
from .verdicts import ClassVerdict


class CrossEntropy(nn.Module):
    """Cross-entropy over the classes; targets are class indices or, as Mixup/CutMix make them, class
    probabilities."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, targets: Tensor, class_weights: Tensor | None = None) -> Tensor:
        return F.cross_entropy(logits, targets, weight=class_weights, label_smoothing=self.label_smoothing)


def margin_uncertainty(probabilities: Tensor) -> Tensor:
    """1 minus the margin between each row's two most probable classes: 1 for a tie, 0 for a certain answer."""
    top = probabilities.float().topk(min(2, probabilities.shape[1]), dim=1).values
    return 1.0 - (top[:, 0] - top[:, 1]) if top.shape[1] == 2 else torch.zeros(len(probabilities))


class SingleLabel(Task):
    """One class per image: see the module's docstring."""

    name = "multiclass"
    item, items = "class", "classes"
    does = "tells apart"
    items_described = "classes"
    monitor = metric_key(VAL, ACCURACY)
    metric_labels = METRIC_LABELS
    default_resize = "crop"
    multi_hot_targets = False
    activation_code = "logits.softmax(dim=-1)"
    activation = "the softmax of the logits (batch, num_classes)"
    agreement_name, agreement_words = "top1_agreement", "same class"

    def target(self, indices: tuple[int, ...]) -> int:
        return indices[0]

    written_labels_expected = "a class"

    def written_labels(self, text: str) -> list[str]:
        return [text.strip()] if text.strip() else []  # the whole text: a class may have spaces ("Ankle boot")

    def probabilities(self, calibrated_logits: Tensor) -> Tensor:
        return calibrated_logits.softmax(dim=-1)

    def loss(self, label_smoothing: float, multilabel_loss: str, class_weighted: bool) -> nn.Module:
        check(multilabel_loss == "bce", f"model.multilabel_loss {multilabel_loss} is a loss of several labels per "
                                        "image; this run has one class per image (a labels file with label sets "
                                        "makes it multi-label)")
        return CrossEntropy(label_smoothing)

    def metrics(self, num_classes: int, stage: str) -> MetricCollection:
        return classification_metrics(num_classes, stage)

    def training_metric_inputs(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return logits, targets.argmax(dim=1) if targets.ndim == 2 else targets

    def evaluation_metric_inputs(self, probabilities: Tensor, targets: Tensor,
                                 decision: Decision) -> tuple[Tensor, Tensor]:
        return probabilities, targets

    def reported_loss(self, probabilities: Tensor, targets: Tensor) -> Tensor:
        """The negative log-likelihood of the probabilities (the cross-entropy of the calibrated logits when there is
        one view)."""
        return F.nll_loss(probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log(), targets)

    def distillation_loss(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        """The KL divergence from the teacher's softened distribution over the classes to the student's (Hinton et
        al. 2015)."""
        student = F.log_softmax(student_logits.float() / temperature, dim=1)
        teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
        return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature**2

    def default_decision(self, num_classes: int) -> Decision:
        return Decision(self)

    def fit_decision(self, logits: Tensor, targets: Tensor, class_names: Sequence[str], sync: Sync,
                     fit_temperature: bool, keep_correct: float) -> Fitted:
        """The temperature (with ``fit_temperature`` and enough images: :mod:`.temperature`), then the threshold
        below which an answer is unsure, on the calibrated logits (:mod:`.energy`)."""
        count = int(sync.total(torch.tensor([float(len(targets))], device=logits.device))[0])
        fitting = fit_temperature and count >= MIN_CALIBRATION_IMAGES
        temperature, notes = 1.0, []
        if fitting:
            temperature, done, notes = _fitted_temperature(logits, targets, sync, count)
        elif fit_temperature:
            done = (f"temperature 1 (fewer than {MIN_CALIBRATION_IMAGES} validation images: a temperature fitted on "
                    f"so few made the NLL of other images worse)")
        else:
            done = "temperature 1 (model.calibrate is off)"
        calibrated = logits / temperature
        reject_below = choose_reject_below(calibrated, targets, temperature, keep_correct, sync.gather)
        wrong = calibrated.argmax(dim=1) != targets
        flagged = is_unsure(energy_score(calibrated, temperature), reject_below)
        sums = sync.total(torch.stack([(wrong & flagged).sum(), wrong.sum()]).double())
        said = ("no validation image was misclassified" if sums[1] == 0 else
                f"{float(sums[0] / sums[1]):.0%} of the misclassified flagged")
        summary = (f"calibration on {count} validation images: {done}; unsure below an energy score of "
                   f"{reject_below:.4f} (keeps {keep_correct:.0%} of the correctly classified, {said})"
                   + "".join(f"; {note}" for note in notes))
        return Fitted(Decision(self, temperature, reject_below), summary)

    def describe_decision(self, decision: Decision) -> str:
        return f"unsure below an energy score of {decision.reject_below:.4f}"

    def decide(self, probabilities: Tensor, decision: Decision) -> Tensor:
        return probabilities.argmax(dim=1)

    def answers(self, probabilities: Tensor, decision: Decision, class_names: Sequence[str]) -> list[str]:
        return [class_names[index] for index in self.decide(probabilities, decision).tolist()]

    def verdicts(self, probabilities: Tensor, calibrated_logits: Tensor, decision: Decision,
                 class_names: Sequence[str], top_k: int) -> list[ClassVerdict]:
        top = probabilities.float().topk(min(top_k, probabilities.shape[1]), dim=1)
        scores = energy_score(calibrated_logits, decision.temperature).tolist()
        return [ClassVerdict(tuple((class_names[index], value) for index, value in zip(indices, values)), score,
                             bool(is_unsure(score, decision.reject_below)), decision.reject_below)
                for indices, values, score in zip(top.indices.tolist(), top.values.tolist(), scores)]

    def uncertainty(self, probabilities: Tensor, decision: Decision) -> Tensor:
        return margin_uncertainty(probabilities)

    def chart(self, top_k: int, num_classes: int) -> tuple[str, int]:
        return f"top {min(top_k, num_classes)} classes", top_k

    def header(self, class_names: Sequence[str], top_k: int) -> list[str]:
        return ["path", "prediction", "confidence", f"top{top_k}_classes", f"top{top_k}_probabilities",
                "energy_score", "unsure", "error"]

    def unreadable_row(self, path: str, class_names: Sequence[str], top_k: int) -> tuple[str, ...]:
        return (path, "", "", "", "", "", "", "could not be read")

    def scores(self, probabilities: Tensor, targets: Tensor, decision: Decision) -> dict[str, float]:
        return {"accuracy": float((probabilities.argmax(dim=1) == targets).double().mean())}

    def agreement(self, probabilities: Tensor, other: Tensor, decision: Decision) -> float:
        return float((probabilities.argmax(dim=1) == other.argmax(dim=1)).double().mean())


def _fitted_temperature(logits: Tensor, targets: Tensor, sync: Sync, count: int) -> tuple[float, str, list[str]]:
    """The temperature kept, what it did, and notes: none is kept that does not lower the NLL, nor one at an end of
    the searched range, where the NLL had no minimum."""
    fitted = fit_temperature(logits, targets, sync.total)
    before, at_fitted = mean_nll(logits, targets, 1.0, sync.total), mean_nll(logits, targets, fitted, sync.total)
    at_the_end = at_the_end_of_the_search(fitted)
    temperature = fitted if at_fitted < before and not at_the_end else 1.0
    notes = []
    if at_the_end and fitted > 1:
        notes.append(f"the NLL kept falling as the probabilities flattened, to the end of the searched range (T = "
                     f"{SEARCHED[1]:g}, NLL {at_fitted:.4f}): the model is little better than chance on these images; "
                     "kept 1")
    elif at_the_end:
        notes.append(f"the NLL kept falling as the probabilities sharpened, to the end of the searched range (T = "
                     f"{SEARCHED[0]:g}), which it does when the validation images are all classified right; kept 1")
    elif temperature != fitted:
        notes.append(f"no temperature lowered the NLL ({fitted:.3f} did not): kept 1")
    after = at_fitted if temperature == fitted else before
    ece = (expected_calibration_error(logits, targets, 1.0, logits.shape[1]),
           expected_calibration_error(logits, targets, temperature, logits.shape[1]))
    if ece[1] > ece[0]:
        notes.append(f"the ECE rose: over {count} images its {CALIBRATION_BINS} bins are noisy")
    return temperature, f"temperature {temperature:.3f}; NLL {before:.4f} -> {after:.4f}, ECE {ece[0]:.4f} -> " \
                        f"{ece[1]:.4f}", notes


SINGLE_LABEL = SingleLabel()
