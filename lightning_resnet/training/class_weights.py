"""``model.class_weights``: the weights of the classes in the training loss, given or ``balanced`` from the
training split's class counts (scikit-learn's rule)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, check


def loss_weights(weights: Literal["balanced"] | list[float], class_names: list[str],
                 class_counts: Callable[[], Sequence[int]] | None) -> Tensor:
    """One weight per class: ``weights`` as given, or for ``balanced`` the training images over the number of
    classes times each class's count (``class_counts`` gives the counts; the data module's, on the command line)."""
    if weights != "balanced":
        return torch.tensor(weights, dtype=torch.float32)
    if class_counts is None:
        raise UserError("model.class_weights balanced needs the training split's class counts, which this "
                        "project's data module gives; give one weight per class instead")
    counts = list(class_counts())
    empty = [name for name, count in zip(class_names, counts) if not count]
    check(not empty, f"model.class_weights balanced: {', '.join(empty)} have no training image; "
                     "give one weight per class instead")
    from sklearn.utils.class_weight import compute_class_weight  # 0.5 s to import, for this option only

    labels = np.repeat(np.arange(len(counts)), counts)
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(len(counts)), y=labels),
                        dtype=torch.float32)
