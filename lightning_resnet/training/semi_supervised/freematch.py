"""FreeMatch (Wang et al., 2023): self-adaptive thresholds and a fairness term.

Moving averages (``momentum``) over the unlabelled batches, the same in every process: ``confidence``, the mean of
the most probable class's probability, and ``class_probabilities``, the mean probability of each class. The
threshold of class ``c`` is ``confidence * class_probabilities[c] / max(class_probabilities)``: low while the model
is unsure (most pseudo-labels used early on), rising as it learns, lower for the classes it predicts less. The
fairness term is minus the cross-entropy between two distributions over the classes, each class's probability
divided by its share of the pseudo-labels: the moving averages' (``class_probabilities`` over ``label_histogram``)
and the confident images' strong views' in this batch. Minimizing it moves the batch's predictions off the classes
the model has been predicting most, so that a few classes cannot take all pseudo-labels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .method import ConsistencyMethod, MeanAcrossProcesses, without_infinities
from .options import SemiSupervised


class FreeMatch(ConsistencyMethod):
    name = "freematch"

    def __init__(self, options: SemiSupervised, num_classes: int, mean: MeanAcrossProcesses) -> None:
        super().__init__(options, num_classes, mean)
        start = torch.full((num_classes,), 1.0 / num_classes)
        self.register_buffer("confidence", torch.tensor(1.0 / num_classes), persistent=False)
        self.register_buffer("class_probabilities", start.clone(), persistent=False)
        self.register_buffer("label_histogram", start.clone(), persistent=False)

    def observe(self, probabilities: Tensor) -> None:
        labels = probabilities.argmax(dim=-1)
        histogram = torch.bincount(labels, minlength=self.num_classes).float() / len(labels)
        batch = self.mean(torch.cat([probabilities.max(dim=-1).values.mean().reshape(1), probabilities.mean(dim=0),
                                     histogram]))
        momentum = self.options.momentum
        self.confidence.mul_(momentum).add_((1 - momentum) * batch[0])
        self.class_probabilities.mul_(momentum).add_((1 - momentum) * batch[1 : 1 + self.num_classes])
        self.label_histogram.mul_(momentum).add_((1 - momentum) * batch[1 + self.num_classes :])

    def thresholds(self, pseudo_labels: Tensor) -> Tensor:
        by_class = self.confidence * self.class_probabilities / self.class_probabilities.max()
        return by_class[pseudo_labels]

    def extra_loss(self, strong_logits: Tensor, confident: Tensor) -> Tensor | None:
        if self.options.fairness_weight == 0 or not confident.any():
            return None
        probabilities = strong_logits[confident].softmax(dim=-1)
        histogram = torch.bincount(probabilities.argmax(dim=-1), minlength=self.num_classes).float()
        batch = probabilities.mean(dim=0) * without_infinities(1.0 / (histogram / histogram.sum()))
        average = self.class_probabilities * without_infinities(1.0 / self.label_histogram)
        fairness = (average / average.sum() * torch.log(batch / batch.sum() + 1e-12)).sum()
        return self.options.fairness_weight * fairness
