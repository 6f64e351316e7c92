"""``model.semi_supervised``: which method trains on the unlabelled images, and its options."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import check

FIXMATCH_THRESHOLD = 0.95
"""FixMatch's confidence threshold (its paper's, for every data set)."""


@dataclass(frozen=True)
class SemiSupervised:
    """How ``fit`` learns from ``data.unlabelled_dir`` (its images per labelled one: ``data.unlabelled_ratio``).

    Args:
        method: ``fixmatch`` (Sohn et al., 2020: a fixed confidence threshold) or ``freematch`` (Wang et al., 2023:
            a threshold per class that follows the model's confidence, from low to high as it learns, and a
            fairness term that keeps pseudo-labels spread over the classes).
        threshold: ``fixmatch``: the confidence a pseudo-label needs (0.95); ``freematch`` adapts its own.
        weight: the unlabelled images' loss against the labelled images' (1.0 in both papers).
        momentum: ``freematch``: of the moving averages its thresholds come from (0.999, its paper's).
        fairness_weight: ``freematch``: of its fairness term (0.001; 0 leaves it out).
        ema_decay: evaluate and keep a moving average of the weights with this decay (Lightning's
            ``EMAWeightAveraging``; 0.999 in both papers, for runs of hundreds of thousands of steps), or null.
    """

    method: str = "fixmatch"
    threshold: float | None = None
    weight: float = 1.0
    momentum: float = 0.999
    fairness_weight: float = 0.001
    ema_decay: float | None = None

    def check(self, methods: list[str]) -> None:
        """One line for a value that cannot work (not in ``__post_init__``: the parser would bury the line)."""
        check(self.method in methods, f"model.semi_supervised.method must be one of {', '.join(methods)}, "
                                      f"got {self.method}")
        check(self.threshold is None or 0.0 < self.threshold <= 1.0,
              f"model.semi_supervised.threshold is a confidence in (0, 1], got {self.threshold}")
        check(self.threshold is None or self.method == "fixmatch",
              f"model.semi_supervised.threshold: {self.method} adapts its thresholds to the model's confidence; "
              "leave it out (its pace is model.semi_supervised.momentum)")
        check(self.weight >= 0, f"model.semi_supervised.weight must be 0 or more, got {self.weight}")
        check(0.0 < self.momentum < 1.0, f"model.semi_supervised.momentum must be in (0, 1), got {self.momentum}")
        check(self.fairness_weight >= 0,
              f"model.semi_supervised.fairness_weight must be 0 or more, got {self.fairness_weight}")
        check(self.ema_decay is None or 0.0 < self.ema_decay < 1.0,
              f"model.semi_supervised.ema_decay must be in (0, 1) or null, got {self.ema_decay}")
