"""Which of the images nobody labelled a person should label next (``suggest``): those the model is unsure between
two classes of (a small margin between its two most probable classes), and those unlike anything labelled (far, in
the model's feature space, from every labelled image and from every image picked before them).

Uncertainty alone picks near-copies of one hard case, one after the other; each pick here moves the images like it
closer to what is covered, so the next pick is another case (a greedy k-center in cosine distance, its distances
weighed equally with the margin). baal, the library of such heuristics, is not used: version 2.1.0 installs the
Jupyter stack (79 packages here, ``pip install --dry-run baal``) for a margin that is one line, and has no k-center.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

UNCERTAIN = "uncertain"
UNLIKE_LABELLED = "unlike anything labelled"


@dataclass(frozen=True)
class Suggestion:
    """The ``index`` of an image among those looked at, its ``rank`` (1 first), its ``score`` when it was picked,
    the two parts of that score, and the larger one as ``why``."""

    index: int
    rank: int
    score: float
    uncertainty: float
    novelty: float
    why: str


def margin_uncertainty(probabilities: Tensor) -> Tensor:
    """1 minus the margin between each row's two most probable classes: 1 for a tie, 0 for a certain answer."""
    top = probabilities.topk(min(2, probabilities.shape[1]), dim=1).values
    return 1.0 - (top[:, 0] - top[:, 1]) if top.shape[1] == 2 else torch.zeros(len(probabilities))


def suggest_images(features: Tensor, probabilities: Tensor, labelled_features: Tensor, budget: int) -> list[Suggestion]:
    """``budget`` images (rows of ``features``) to label next, best first: see the module's docstring."""
    unlabelled = F.normalize(features.float(), dim=1)
    uncertainty = margin_uncertainty(probabilities.float())
    if len(labelled_features):
        labelled = F.normalize(labelled_features.float(), dim=1)
        distance = (1.0 - unlabelled @ labelled.T).amin(dim=1).clamp_min(0)
    else:
        distance = torch.ones(len(unlabelled))
    scale = float(distance.max()) or 1.0
    picked = torch.zeros(len(unlabelled), dtype=torch.bool)
    suggestions = []
    for rank in range(1, min(budget, len(unlabelled)) + 1):
        novelty = distance / scale
        score = (0.5 * uncertainty + 0.5 * novelty).masked_fill(picked, -1.0)
        index = int(score.argmax())
        picked[index] = True
        suggestions.append(Suggestion(index, rank, float(score[index]), float(uncertainty[index]),
                                      float(novelty[index]),
                                      UNCERTAIN if uncertainty[index] >= novelty[index] else UNLIKE_LABELLED))
        distance = torch.minimum(distance, (1.0 - unlabelled @ unlabelled[index]).clamp_min(0))
    return suggestions
