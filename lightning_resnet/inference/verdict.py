"""What a model says of one image: its most probable classes, and whether it is *unsure*, i.e. the image may be
none of its classes.

A classifier trained on four bird species still names a species for a photo of a car. The
score that tells such images apart here is the calibrated top probability (the largest softmax
of the logits divided by the temperature): ``fit`` ends by choosing the threshold below which
a prediction is unsure, on the validation split, as the value that keeps ``keep_correct`` (95 %)
of the correctly classified validation images above it (:func:`choose_reject_below`). It is stored in
the checkpoint and the export; ``predictions.csv``, the server and the demo page report
``unsure`` against it. Measured on held-out classes (README, "Share your model"; the score chosen
over the energy score and the largest logit there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

KEEP_CORRECT = 0.95
"""The share of correctly classified validation images whose top probability the threshold keeps."""

Gather = Callable[[Tensor], Tensor]
"""Joins the 1-d tensors of every process into one (the identity in one process)."""


@dataclass(frozen=True)
class Verdict:
    """The ``top`` classes of one image with their probabilities, most probable first, and whether the top
    probability is below the model's threshold (``unsure``)."""

    top: tuple[tuple[str, float], ...]
    unsure: bool

    @property
    def prediction(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        return self.top[0][1]


def verdict(probabilities: Tensor, class_names: Sequence[str], top_k: int, reject_below: float) -> Verdict:
    """The verdict on one image from its class probabilities (a 1-d tensor)."""
    top = probabilities.float().topk(min(top_k, len(probabilities)))
    ranked = tuple((class_names[index], value) for index, value in zip(top.indices.tolist(), top.values.tolist()))
    return Verdict(ranked, is_unsure(ranked[0][1], reject_below))


def is_unsure(confidence, reject_below: float):
    """The one rule: unsure when the top probability (a number, or a tensor of them) is below the threshold
    (0 flags nothing)."""
    return confidence < reject_below


def choose_reject_below(probabilities: Tensor, targets: Tensor, keep_correct: float = KEEP_CORRECT,
                        gather: Gather = lambda values: values) -> float:
    """The threshold that keeps ``keep_correct`` of the correctly classified images (every process's) at or
    above it: the ``1 - keep_correct`` quantile of their top probabilities, taken at an observed value; 0
    when no image was classified correctly."""
    confidence, predicted = probabilities.max(dim=1)
    correct = gather(confidence[predicted == targets].double())
    if not len(correct):
        return 0.0
    return float(torch.quantile(correct, 1.0 - keep_correct, interpolation="lower"))
