"""What a model says of one image: its most probable classes with their probabilities, its energy score, and
whether it is unsure (:mod:`.unsure`); or, of a multi-label model, the labels at or above their thresholds and every
label's probability. ``predictions.csv``, the server and the demo page say it so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor

from .unsure import energy_score, is_unsure


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


def verdicts(probabilities: Tensor, calibrated_logits: Tensor, temperature: float, class_names: Sequence[str],
             top_k: int, reject_below: float) -> list[Verdict]:
    """The verdict on each image (row) from its class probabilities and calibrated logits."""
    top = probabilities.float().topk(min(top_k, probabilities.shape[1]), dim=1)
    scores = energy_score(calibrated_logits, temperature).tolist()
    return [Verdict(tuple((class_names[index], value) for index, value in zip(indices, values)), score,
                    is_unsure(score, reject_below))
            for indices, values, score in zip(top.indices.tolist(), top.values.tolist(), scores)]


@dataclass(frozen=True)
class LabelSetVerdict:
    """A multi-label model on one image: the ``labels`` whose probability reaches their threshold, and every
    label's probability, in the model's order."""

    labels: tuple[str, ...]
    probabilities: tuple[tuple[str, float], ...]


def label_set_verdicts(probabilities: Tensor, class_names: Sequence[str],
                       thresholds: Sequence[float]) -> list[LabelSetVerdict]:
    """The verdict on each image (row) from its labels' probabilities and the labels' thresholds."""
    rows = probabilities.float().tolist()
    return [LabelSetVerdict(tuple(name for name, value, at in zip(class_names, row, thresholds) if value >= at),
                            tuple(zip(class_names, row))) for row in rows]
