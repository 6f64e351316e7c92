"""Temperature scaling (Guo et al. 2017): the ``T`` that the logits of a single-label model are divided by, so that
its probabilities can be read as probabilities.

Dividing the logits by ``T`` never changes the top-1 class, only how confident each prediction is. ``T``
minimises the validation negative log-likelihood (NLL); the NLL is convex in ``1 / T``, so SciPy's bounded scalar
minimisation over ``log(1 / T)`` finds it, and each step needs only two sums over the validation images, added up
across DDP processes (every process takes the same steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassCalibrationError

MIN_CALIBRATION_IMAGES = 96
"""Fewer validation images leave the temperature at 1: a temperature fitted on fewer made the NLL of the other
validation images worse too often (benchmarks/README.md, "Calibration")."""
CALIBRATION_BINS = 15
"""Confidence bins of the expected calibration error and the reliability diagram (Guo et al.'s 15)."""
SEARCHED = (1 / 20, 20.0)
"""The temperatures searched, from sharpening twenty-fold to flattening twenty-fold."""

Total = Callable[[Tensor], Tensor]
"""Adds a tensor of sums up across processes (the identity in one process)."""


def mean_nll(logits: Tensor, targets: Tensor, temperature: float, total: Total = lambda sums: sums) -> float:
    """The mean negative log-likelihood of ``logits / temperature`` over every process's images."""
    local = F.cross_entropy(logits / temperature, targets, reduction="sum").double()
    sums = total(torch.stack([local, torch.tensor(float(len(targets)), dtype=torch.float64, device=local.device)]))
    return float(sums[0] / sums[1])


def fit_temperature(logits: Tensor, targets: Tensor, total: Total = lambda sums: sums) -> float:
    """The ``T`` in :data:`SEARCHED` minimising :func:`mean_nll` of ``logits / T``."""
    from scipy.optimize import minimize_scalar

    bounds = (math.log(1 / SEARCHED[1]), math.log(1 / SEARCHED[0]))  # over log(1 / T)
    result = minimize_scalar(lambda log_inverse: mean_nll(logits, targets, math.exp(-log_inverse), total),
                             bounds=bounds, method="bounded", options={"xatol": 1e-6})
    return math.exp(-float(result.x))


def at_the_end_of_the_search(temperature: float) -> bool:
    """Whether ``temperature`` lies at an end of :data:`SEARCHED` (within 1 %): there the NLL had no minimum."""
    return not SEARCHED[0] * 1.01 < temperature < SEARCHED[1] / 1.01


def expected_calibration_error(logits: Tensor, targets: Tensor, temperature: float, num_classes: int) -> float:
    """The ECE of ``logits / temperature`` over every process's images (torchmetrics syncs it)."""
    ece = MulticlassCalibrationError(num_classes, n_bins=CALIBRATION_BINS).to(logits.device)
    ece.update((logits / temperature).softmax(dim=1), targets)
    return float(ece.compute())
