"""What a model says of one image, in every form it is said: a row of ``predictions.csv``, a JSON answer of the
server, a sentence and a chart of the demo page, a pseudo-label.

:class:`ClassVerdict`: one class per image, its most probable classes with their probabilities, its energy score,
and whether it is unsure (:mod:`.energy`). :class:`LabelSetVerdict`: a set of labels per image, the labels at or above
their thresholds and every label's probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .energy import as_metadata


def _number(value: float) -> str:
    return f"{value:.6f}"


@dataclass(frozen=True)
class ClassVerdict:
    """The ``top`` classes of one image with their probabilities, most probable first, its energy ``score``, and
    whether that is below the model's threshold ``reject_below`` (``unsure``)."""

    top: tuple[tuple[str, float], ...]
    score: float
    unsure: bool
    reject_below: float

    @property
    def prediction(self) -> str:
        return self.top[0][0]

    @property
    def confidence(self) -> float:
        """The probability of the answer."""
        return self.top[0][1]

    @property
    def label(self) -> str:
        """The answer as a labels column writes it (``pseudo_labels.csv``)."""
        return self.prediction

    @property
    def cam_label(self) -> str:
        """The class whose activation map is shown."""
        return self.prediction

    def sure(self, min_confidence: float) -> bool:
        """Sure enough to be a pseudo-label: not unsure, and the class's probability at least ``min_confidence``."""
        return not self.unsure and self.confidence >= min_confidence

    def pseudo_label(self, path: str) -> tuple[str, str, str, str]:
        """Its line of ``pseudo_labels.csv``: path, label, confidence, energy score."""
        return path, self.label, _number(self.confidence), _number(self.score)

    def row(self, path: str) -> tuple[str, ...]:
        """Its line of ``predictions.csv`` (see :meth:`~.single_label.SingleLabel.header`)."""
        return (path, self.prediction, _number(self.confidence), "|".join(name for name, _ in self.top),
                "|".join(_number(value) for _, value in self.top), _number(self.score), str(self.unsure).lower(), "")

    def as_json(self) -> dict[str, Any]:
        """The server's answer."""
        return {
            "prediction": self.prediction,
            "confidence": self.confidence,
            "unsure": self.unsure,
            "energy_score": self.score,
            "reject_below": as_metadata(self.reject_below),
            "top": [{"class": name, "probability": probability} for name, probability in self.top],
        }

    def chart(self) -> dict[str, float]:
        """The demo page's bars."""
        return dict(self.top)

    def describe(self, classes: int) -> str:
        """The demo page's sentence (Markdown)."""
        if self.unsure:
            return (f"**Unsure**: {self.prediction}, probability {self.confidence:.3f}; its energy score "
                    f"{self.score:.2f} is below {self.reject_below:.2f}: this image may be none of the {classes} "
                    "classes.")
        above = (f"at or above {self.reject_below:.2f}" if math.isfinite(self.reject_below) else
                 "the model has no threshold")
        return f"**{self.prediction}**, probability {self.confidence:.3f} (energy score {self.score:.2f}, {above})."


@dataclass(frozen=True)
class LabelSetVerdict:
    """A multi-label model on one image: the ``labels`` whose probability reaches their threshold, and every
    label's probability and threshold, in the model's order."""

    labels: tuple[str, ...]
    probabilities: tuple[tuple[str, float], ...]
    thresholds: tuple[float, ...]

    @property
    def label(self) -> str:
        """The labels as a labels column writes them: separated by spaces."""
        return " ".join(self.labels)

    @property
    def confidence(self) -> float:
        """How sure the least sure label's decision is: the probability of the side of its threshold it is on
        (``p`` for a label given, ``1 - p`` for one left out), the lowest over the labels."""
        return min(p if p >= at else 1.0 - p for (_, p), at in zip(self.probabilities, self.thresholds))

    @property
    def cam_label(self) -> str:
        """The label whose activation map is shown: the most probable."""
        return max(self.probabilities, key=lambda pair: pair[1])[0]

    def sure(self, min_confidence: float) -> bool:
        """Sure enough to be a pseudo-label: every label's decision is, at ``min_confidence`` (a label given has at
        least that probability, a label left out at most one minus it), and there is a label to give."""
        return bool(self.labels) and self.confidence >= min_confidence

    def pseudo_label(self, path: str) -> tuple[str, str, str, str]:
        """Its line of ``pseudo_labels.csv``: path, labels, the least sure label's confidence, no energy score."""
        return path, self.label, _number(self.confidence), ""

    def row(self, path: str) -> tuple[str, ...]:
        """Its line of ``predictions.csv`` (see :meth:`~.multi_label.MultiLabel.header`)."""
        return (path, self.label, *(_number(value) for _, value in self.probabilities), "")

    def as_json(self) -> dict[str, Any]:
        """The server's answer: its labels, and every label's probability and threshold."""
        return {
            "labels": list(self.labels),
            "probabilities": [{"label": name, "probability": probability, "threshold": threshold}
                              for (name, probability), threshold in zip(self.probabilities, self.thresholds)],
        }

    def chart(self) -> dict[str, float]:
        return dict(self.probabilities)

    def describe(self, classes: int) -> str:
        if not self.labels:
            return "**No label**: no label's probability reaches its threshold."
        return f"**{', '.join(self.labels)}**: the labels whose probability reaches their threshold."


Verdict = ClassVerdict | LabelSetVerdict
