"""Whether a prediction is *unsure*: the image may be none of the model's classes.

A classifier trained on four bird species still names a species for a photo of a car. The score that tells
such images apart here is the energy score of Liu et al. (2020), ``T·logsumexp(z/T)`` of the logits ``z`` with
the calibration temperature ``T`` (the negative free energy: high for images like the training classes). ``fit``
ends by choosing the threshold below which a prediction is unsure, on the validation split, as the score that
keeps ``keep_correct`` (95 %) of the correctly classified validation images at or above it
(:func:`choose_reject_below`); it is stored in the checkpoint and the export. The energy score rather than the
top probability: benchmarks/README.md ("serve and open-set rejection") has the measurement.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

KEEP_CORRECT = 0.95
"""The share of correctly classified validation images whose score the threshold keeps."""
NO_THRESHOLD = -math.inf
"""The threshold of a model that has none (trained before it existed, or never validated): nothing is unsure."""

Gather = Callable[[Tensor], Tensor]
"""Joins the 1-d tensors of every process into one (the identity in one process)."""


def energy_score(calibrated_logits: Tensor, temperature: float | Tensor) -> Tensor:
    """``T·logsumexp(z/T)`` per row, from the calibrated logits ``z/T`` (the ones the probabilities are the softmax
    of), in float64."""
    return torch.logsumexp(calibrated_logits.double(), dim=-1) * float(temperature)


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
