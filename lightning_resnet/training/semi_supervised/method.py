"""What every semi-supervised method here does with a batch of unlabelled images (consistency regularization with
pseudo-labels): the model's prediction of each image's weakly augmented view is its pseudo-label; where the model is
confident enough, its strongly augmented view is trained on that label. A method decides what "confident enough"
is (:meth:`ConsistencyMethod.thresholds`), may keep statistics for it, and may add a term.

Not USB's (``semilearn``) algorithms: they run inside its own training loop, and ``pip install semilearn==0.3.2``
would install 40 packages here (itself, transformers, wandb, aim, torchaudio among them; checked with
``pip install --dry-run``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .options import SemiSupervised

MeanAcrossProcesses = Callable[[Tensor], Tensor]
"""The mean of a tensor over the training processes (itself in one process): a method's statistics are the same in
every process, as an exact resume from the checkpoint (rank 0's) needs."""


@dataclass(frozen=True)
class UnlabelledLoss:
    """The loss of a batch of unlabelled images and what it was made of."""

    loss: Tensor
    confident: Tensor
    """Whether each image's pseudo-label was trained on."""
    pseudo_labels: Tensor
    """Each image's pseudo-label (the class its weak view was given)."""


class ConsistencyMethod(nn.Module):
    """A semi-supervised method: its statistics are buffers (moving with the device), saved in the checkpoint by the
    LightningModule (:meth:`state` and :meth:`load_state`), never in the trained model's weights."""

    name: ClassVar[str]

    def __init__(self, options: SemiSupervised, num_classes: int, mean: MeanAcrossProcesses) -> None:
        super().__init__()
        self.options = options
        self.num_classes = num_classes
        self.mean = mean

    def observe(self, probabilities: Tensor) -> None:
        """Take in a batch's weak-view probabilities before its thresholds are read (nothing by default)."""

    def thresholds(self, pseudo_labels: Tensor) -> Tensor:
        """The confidence each image's pseudo-label needs."""
        raise NotImplementedError

    def extra_loss(self, strong_logits: Tensor, confident: Tensor) -> Tensor | None:
        """A method's own term on the confident images' strong views (none by default)."""
        return None

    def loss(self, weak_logits: Tensor, strong_logits: Tensor) -> UnlabelledLoss:
        probabilities = weak_logits.detach().float().softmax(dim=-1)
        self.observe(probabilities)
        confidence, pseudo_labels = probabilities.max(dim=-1)
        confident = confidence >= self.thresholds(pseudo_labels)
        per_image = F.cross_entropy(strong_logits.float(), pseudo_labels, reduction="none")
        loss = (per_image * confident).mean()
        extra = self.extra_loss(strong_logits.float(), confident)
        return UnlabelledLoss(loss if extra is None else loss + extra, confident, pseudo_labels)

    def state(self) -> dict[str, Tensor]:
        """The method's statistics, for the checkpoint."""
        return {name: buffer.detach().cpu() for name, buffer in self.named_buffers()}

    def load_state(self, state: dict[str, Tensor]) -> None:
        for name, buffer in self.named_buffers():
            if name in state:
                buffer.copy_(state[name])


def without_infinities(values: Tensor) -> Tensor:
    """``values`` with infinities and NaN made 0 (one over a count of 0)."""
    return torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
