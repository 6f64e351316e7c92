"""Which of the images nobody labelled a person should label next (``suggest``): those the model is unsure of (its
task says what that is: a small margin between its two most probable classes, or a label's probability near its
threshold), and those unlike anything labelled (far, in the model's feature space, from every labelled image), spread
over the kinds of image there are.

Each image's score weighs the two equally. Uncertainty alone picks near-copies of one hard case; so the
``PREFILTER`` x budget best-scored images are grouped into ``budget`` clusters of the model's feature space
(scikit-learn's k-means, weighted by the score) and the image nearest each cluster's centre is picked, best score
first: the weighted k-means of diverse mini-batch active learning (Zhdanov, 2019). A greedy k-center on the same
score, the rule before, picked near-copies of a few digits and lost to random picks (benchmarks/README.md, "Few
labels"). baal, the library of such heuristics, is not used: it installs the Jupyter stack (``pip install --dry-run
baal``) for a margin that is one line.
"""

from __future__ import annotations

import warnings
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


PREFILTER = 10
"""How many times the budget of best-scored images the clusters are made of (Zhdanov's beta)."""


def suggest_images(features: Tensor, uncertainty: Tensor, labelled_features: Tensor, budget: int) -> list[Suggestion]:
    """``budget`` images (rows of ``features``) to label next, best first, from the model's ``uncertainty`` of each
    (its task's: :meth:`~lightning_resnet.tasks.Task.uncertainty`): see the module's docstring."""
    from sklearn.cluster import KMeans  # 1.1 s to import (after torch), for suggest only
    from sklearn.exceptions import ConvergenceWarning

    unlabelled = F.normalize(features.float(), dim=1)
    uncertainty = uncertainty.float()
    if len(labelled_features):
        labelled = F.normalize(labelled_features.float(), dim=1)
        distance = (1.0 - unlabelled @ labelled.T).amin(dim=1).clamp_min(0)
    else:
        distance = torch.ones(len(unlabelled))
    novelty = distance / (float(distance.max()) or 1.0)
    score = 0.5 * uncertainty + 0.5 * novelty
    budget = min(budget, len(unlabelled))
    candidates = score.argsort(descending=True)[: PREFILTER * budget]
    points = unlabelled[candidates].numpy()
    with warnings.catch_warnings():  # fewer distinct images than clusters: handled below
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(budget, n_init=1, random_state=0).fit(points, sample_weight=score[candidates].numpy() + 1e-6)
    picked: list[int] = []
    for cluster, centre in enumerate(torch.from_numpy(clusters.cluster_centers_).float()):
        members = candidates[torch.from_numpy(clusters.labels_ == cluster)]
        if len(members):  # none when there are fewer distinct images than clusters
            picked.append(int(members[(unlabelled[members] - centre).norm(dim=1).argmin()]))
    for index in candidates.tolist():  # then the best-scored others fill the budget
        if len(picked) < budget and index not in picked:
            picked.append(index)
    order = sorted(picked, key=lambda index: -float(score[index]))
    return [Suggestion(index, rank, float(score[index]), float(uncertainty[index]), float(novelty[index]),
                       UNCERTAIN if uncertainty[index] >= novelty[index] else UNLIKE_LABELLED)
            for rank, index in enumerate(order, start=1)]
