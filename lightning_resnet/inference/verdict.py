"""What a model says of one image: its most probable classes, and whether it is *unsure*, i.e. the image may be
none of its classes.

A classifier trained on four bird species still names a species for a photo of a car. The score
that tells such images apart here is the energy score of Liu et al. (2020), ``T·logsumexp(z/T)``
of the logits ``z`` with the calibration temperature ``T`` (the negative free energy: high for
images like the training classes). ``fit`` ends by choosing the threshold below which a
prediction is unsure, on the validation split, as the score that keeps ``keep_correct`` (95 %)
of the correctly classified validation images at or above it (:func:`choose_reject_below`); it is
stored in the checkpoint and the export, and ``predictions.csv``, the server and the demo page
report ``unsure`` against it.

The energy score rather than the top probability, measured (``benchmarks/bench_open_set.py``: the
demo trained on 6 of its 10 digits, the other 4 held out, two splits): AUROC of known against
unknown 0.957 and 0.940, against 0.886 and 0.931 for the calibrated top probability in float64,
and 0.721 and 0.931 for it as a float32 softmax, which rounds to exactly 1 for most images of a
confident model and then cannot rank them at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

KEEP_CORRECT = 0.95
"""The share of correctly classified validation images whose score the threshold keeps."""
NO_THRESHOLD = -math.inf
"""The threshold of a model that has none (trained before it existed, or never validated): nothing is unsure."""

Gather = Callable[[Tensor], Tensor]
"""Joins the 1-d tensors of every process into one (the identity in one process)."""


@dataclass(frozen=True)
class Verdict:
    """The ``top`` classes of one image with their probabilities, most probable first, its energy ``score``, and
    whether that is below the model's threshold (``unsure``)."""

    top: tuple[tuple[str, float], ...]
    score: float
    unsure: bool

    @property
    def prediction(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]


def energy_score(calibrated_logits: Tensor, temperature: float | Tensor) -> Tensor:
    """``T·logsumexp(z/T)`` per row, from the calibrated logits ``z/T`` (the ones the probabilities are the softmax
    of), in float64."""
    return torch.logsumexp(calibrated_logits.double(), dim=-1) * float(temperature)


def verdicts(probabilities: Tensor, calibrated_logits: Tensor, temperature: float, class_names: Sequence[str],
             top_k: int, reject_below: float) -> list[Verdict]:
    """The verdict on each image (row) from its class probabilities and calibrated logits."""
    top = probabilities.float().topk(min(top_k, probabilities.shape[1]), dim=1)
    scores = energy_score(calibrated_logits, temperature).tolist()
    return [Verdict(tuple((class_names[index], value) for index, value in zip(indices, values)), score,
                    is_unsure(score, reject_below))
            for indices, values, score in zip(top.indices.tolist(), top.values.tolist(), scores)]


def is_unsure(score, reject_below: float):
    """The one rule: unsure when the energy score (a number, or a tensor of them) is below the threshold."""
    return score < reject_below


def choose_reject_below(calibrated_logits: Tensor, targets: Tensor, temperature: float,
                        keep_correct: float = KEEP_CORRECT, gather: Gather = lambda values: values) -> float:
    """The threshold that keeps ``keep_correct`` of the correctly classified images (every process's) at or
    above it: the ``1 - keep_correct`` quantile of their energy scores, taken at an observed value;
    :data:`NO_THRESHOLD` when no image was classified correctly."""
    correct = calibrated_logits.argmax(dim=1) == targets
    scores = gather(energy_score(calibrated_logits[correct], temperature))
    if not len(scores):
        return NO_THRESHOLD
    return float(torch.quantile(scores, 1.0 - keep_correct, interpolation="lower"))


def threshold_of(value: float | None) -> float:
    """A threshold as metadata holds it (JSON has no infinity: ``None`` for none)."""
    return NO_THRESHOLD if value is None else float(value)


def as_metadata(reject_below: float) -> float | None:
    return reject_below if math.isfinite(reject_below) else None
