"""The semi-supervised part of a training step: one forward pass over the labelled images and the unlabelled ones'
weak and strong views together (BatchNorm sees them all, as FixMatch trains), the method's loss on the unlabelled
ones, and what is logged of them every epoch: the share of confident images and their pseudo-labels' classes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ...errors import check
from .method import MeanAcrossProcesses
from .methods import METHODS
from .options import SemiSupervised

CONFIDENT = "train/confident"
"""The logged share of unlabelled images whose pseudo-label was trained on (the epoch's mean)."""
UNLABELLED_LOSS = "train/unlabelled_loss"
PSEUDO_LABELS = "train/pseudo_labels"
"""The logged number of confident pseudo-labels of each class in the epoch: ``train/pseudo_labels/<class>``."""
MOST_CLASSES_LOGGED = 50
"""Above this many classes, the pseudo-labels' classes are not logged one by one (a value each per step)."""


class ConsistencyTraining(nn.Module):
    """``model.semi_supervised`` in the LightningModule: the method, and the training step's semi-supervised part."""

    def __init__(self, options: SemiSupervised, class_names: Sequence[str], mean: MeanAcrossProcesses) -> None:
        super().__init__()
        options.check(list(METHODS))
        self.options = options
        self.class_names = list(class_names)
        self.method = METHODS[options.method](options, len(class_names), mean)

    def logits_and_loss(self, network: Callable[[Tensor], Tensor], images: Tensor, unlabelled: Sequence[Tensor],
                        log_dict: Callable[..., None]) -> tuple[Tensor, Tensor]:
        """The labelled images' logits and the unlabelled images' weighted loss; logs what the loss was made of."""
        weak, strong = unlabelled
        logits, weak_logits, strong_logits = network(torch.cat([images, weak, strong])).split(
            [len(images), len(weak), len(strong)])
        result = self.method.loss(weak_logits, strong_logits)
        log_dict({UNLABELLED_LOSS: result.loss.detach(), CONFIDENT: result.confident.float().mean()},
                 on_step=False, on_epoch=True, sync_dist=True, batch_size=len(weak))
        if len(self.class_names) <= MOST_CLASSES_LOGGED:
            counts = torch.bincount(result.pseudo_labels[result.confident], minlength=len(self.class_names)).float()
            log_dict({f"{PSEUDO_LABELS}/{name}": count for name, count in zip(self.class_names, counts)},
                     on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum", batch_size=len(weak))
        return logits, self.options.weight * result.loss


def check_unlabelled(options: SemiSupervised | None, has_unlabelled: bool, refused: str | None,
                     cache_features: bool) -> None:
    """One line when ``model.semi_supervised`` and ``data.unlabelled_dir`` cannot work together."""
    check(options is None or has_unlabelled, "model.semi_supervised needs data.unlabelled_dir: a folder of images "
                                             "without labels to learn from")
    check(not has_unlabelled or refused is None, str(refused))
    check(not has_unlabelled or not cache_features, "data.unlabelled_dir needs the images: model.cache_features "
                                                    "trains the head on cached features of the labelled ones only")
