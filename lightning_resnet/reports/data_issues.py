"""What is wrong with the data, from a cross-validation's out-of-fold predictions (``inspect --predictions``).

- **Label errors**: cleanlab's confident learning (``cleanlab.filter.find_label_issues``) over the
  out-of-fold probabilities, ranked by ``cleanlab.rank.get_label_quality_scores`` (self-confidence: the
  probability of the given label); for a multi-label set, ``cleanlab.multilabel_classification``'s. Every
  probability comes from a model that never trained on the image, which is what confident learning asks for.
- **Outliers**: ``cleanlab.outlier.OutOfDistribution`` fitted, for each fold, on the features of the
  images its model trained on, and scoring the images it validated (mean cosine distance to the 10
  nearest, as a score in [0, 1]). An image is an outlier when its score is below all but
  :data:`OUTLIER_QUANTILE` of the training images' own scores (each scored against the others).
- **Near-duplicates in feature space**: pairs whose features are closer than :data:`NEAR_DUPLICATE_RADIUS`
  times the median distance of an image to its nearest neighbour (cleanlab Datalab's rule), in the
  feature space of more than half of the folds' models; they find copies the perceptual hash cannot
  (tiny images, crops, colour changes).

Not cleanlab's ``Datalab``, which does all three from features and probabilities: it needs Hugging Face's
``datasets`` (and pyarrow, about 150 MB) for its data argument, and it would mix the folds' feature spaces.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..tasks import MULTI_LABEL, SINGLE_LABEL
from .out_of_fold import OutOfFold
from .plots import picture_axes, show_thumbnail

LABEL_ISSUES_CSV, LABEL_ISSUES_PNG = "label_issues.csv", "label_issues.png"
OUTLIERS_CSV, OUTLIERS_PNG = "outliers.csv", "outliers.png"
OUTLIER_QUANTILE = 0.01
NEAR_DUPLICATE_RADIUS = 0.13
NEIGHBOURS = 10
GRID_IMAGES = 32


@dataclass(frozen=True)
class LabelIssue:
    path: str
    fold: int
    label: str
    suggested: str
    p_label: float
    p_suggested: float
    quality: float


@dataclass(frozen=True)
class Outlier:
    path: str
    fold: int
    label: str
    prediction: str
    confidence: float
    outlier_score: float


def label_issues(oof: OutOfFold) -> list[LabelIssue]:
    """The images confident learning finds mislabelled, lowest label quality first (cleanlab's confident learning
    of the task: :data:`LABEL_ISSUES`)."""
    return LABEL_ISSUES[oof.task.name](oof)


def class_issues(oof: OutOfFold) -> list[LabelIssue]:
    """The images of one class each whose class confident learning finds wrong, lowest label quality first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    rows = np.flatnonzero(oof.readable)
    labels, probabilities = oof.labels[rows], oof.probabilities[rows]
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 rounding, from the CSV
    flagged = find_label_issues(labels, probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    names = oof.class_names
    issues = []
    for position in flagged:
        suggested = int(np.argmax(probabilities[position]))
        row = int(rows[position])
        issues.append(LabelIssue(oof.paths[row], int(oof.folds[row]), names[labels[position]], names[suggested],
                                 float(probabilities[position, labels[position]]),
                                 float(probabilities[position, suggested]), float(quality[position])))
    return issues


def label_set_issues(oof: OutOfFold) -> list[LabelIssue]:
    """The images of a multi-label set whose label sets cleanlab's multi-label confident learning finds wrong,
    lowest label quality first; ``p_label`` is the least probable of the given labels, ``p_suggested`` the most
    probable of the others."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    rows = np.flatnonzero(oof.readable)
    given = [list(oof.label_sets[row]) for row in rows]
    probabilities = oof.probabilities[rows]
    flagged = find_label_issues(given, probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(given, probabilities)
    issues = []
    for position in flagged:
        row, labels = int(rows[position]), given[position]
        others = [index for index in range(len(oof.class_names)) if index not in labels]
        issues.append(LabelIssue(oof.paths[row], int(oof.folds[row]), oof.label_text(row), oof.predictions[row],
                                 float(probabilities[position, labels].min()),
                                 float(probabilities[position, others].max()) if others else 0.0,
                                 float(quality[position])))
    return issues


LABEL_ISSUES = {SINGLE_LABEL.name: class_issues, MULTI_LABEL.name: label_set_issues}
"""Each task's confident learning."""


@dataclass(frozen=True)
class FoldSkill:
    """How well the fold models predict the images they did not train on, and what guessing would score."""

    name: str
    score: float
    chance: float

    @property
    def weak(self) -> bool:
        """Closer to guessing than to right: confident learning then flags the models' own mistakes."""
        return self.score < (1 + self.chance) / 2


def class_skill(oof: OutOfFold) -> FoldSkill:
    """Out-of-fold accuracy, against always answering the largest class."""
    rows = np.flatnonzero(oof.readable)
    labels = oof.labels[rows]
    accuracy = float(np.mean(oof.probabilities[rows].argmax(axis=1) == labels))
    return FoldSkill("accuracy", accuracy, float(np.bincount(labels).max() / len(labels)))


def label_set_skill(oof: OutOfFold) -> FoldSkill:
    """Out-of-fold mAP (the mean of the labels' average precisions), against ranking the images at random (each
    label's average precision is then its share of the images)."""
    from sklearn.metrics import average_precision_score

    rows = np.flatnonzero(oof.readable)
    given = np.zeros((len(rows), len(oof.class_names)))
    for position, row in enumerate(rows):
        given[position, list(oof.label_sets[row])] = 1
    present = given.any(axis=0)
    score = average_precision_score(given[:, present], oof.probabilities[rows][:, present], average="macro")
    return FoldSkill("mAP", float(score), float(given[:, present].mean()))


FOLD_SKILL = {SINGLE_LABEL.name: class_skill, MULTI_LABEL.name: label_set_skill}
"""Each task's out-of-fold score and its chance level."""


def caution(oof: OutOfFold) -> str | None:
    """What to say before the suspected label errors when the fold models are closer to guessing than to right."""
    skill = FOLD_SKILL[oof.task.name](oof)
    if not skill.weak:
        return None
    return (f"caution: the fold models score {skill.name} {skill.score:.2f} out of fold (guessing: "
            f"{skill.chance:.2f}), so most suspected label errors below are their own mistakes; cross-validate "
            "longer or with pretrained weights before relabelling")


def outlier_scores(oof: OutOfFold) -> list[tuple[int, float, float]]:
    """Each readable image scored by the fold that validated it: (row, score, that fold's cutoff); lower scores are
    farther from the images the fold's model trained on."""
    from cleanlab.outlier import OutOfDistribution

    scored = []
    for fold in range(oof.num_folds):
        features = np.asarray(oof.fold_embeddings(fold))
        validated = np.flatnonzero((oof.folds == fold) & oof.readable)
        trained = np.flatnonzero((oof.folds != fold) & oof.readable)
        detector = OutOfDistribution(params={"k": min(NEIGHBOURS, len(trained) - 1)})
        typical = detector.fit_score(features=features[trained], verbose=False)
        cutoff = float(np.quantile(typical, OUTLIER_QUANTILE))
        scored += [(int(row), float(score), cutoff)
                   for row, score in zip(validated, detector.score(features=features[validated]))]
    return scored


def outliers(oof: OutOfFold) -> list[Outlier]:
    """Validated images far from every image their fold's model trained on, most distant first."""
    found = []
    for row, score, cutoff in outlier_scores(oof):
        if score < cutoff:
            most_probable = int(np.argmax(oof.probabilities[row]))
            prediction = oof.predictions[row] if oof.predictions else oof.class_names[most_probable]
            found.append(Outlier(oof.paths[row], int(oof.folds[row]), oof.label_text(row), prediction,
                                 float(oof.probabilities[row, most_probable]), score))
    return sorted(found, key=lambda outlier: outlier.outlier_score)


def feature_duplicates(oof: OutOfFold) -> list[tuple[int, ...]]:
    """Groups of images (row indices) that are near copies in the feature space of most folds' models."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors

    readable = np.flatnonzero(oof.readable)
    votes: dict[tuple[int, int], int] = {}
    for fold in range(oof.num_folds):
        features = np.asarray(oof.fold_embeddings(fold))[readable]
        search = NearestNeighbors(n_neighbors=2, metric="cosine").fit(features)
        nearest, _ = search.kneighbors(features)
        radius = NEAR_DUPLICATE_RADIUS * float(np.median(nearest[:, 1]))
        neighbours = search.radius_neighbors(features, radius=radius, return_distance=False)
        for first, row_neighbours in enumerate(neighbours):
            for second in row_neighbours[row_neighbours > first].tolist():
                votes[first, second] = votes.get((first, second), 0) + 1
    pairs = np.array([pair for pair, count in votes.items() if count > oof.num_folds / 2], dtype=np.int64)
    if not len(pairs):
        return []
    graph = coo_array((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])),
                      shape=(len(readable), len(readable)))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for position in np.unique(pairs):
        members.setdefault(int(component[position]), []).append(int(readable[position]))
    return sorted(tuple(sorted(group)) for group in members.values())


def write_rows(path: Path, rows: Sequence[LabelIssue] | Sequence[Outlier], kind: type) -> None:
    fields = list(kind.__dataclass_fields__)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["rank", *fields])
        for rank, row in enumerate(rows, start=1):
            values = [getattr(row, field) for field in fields]
            writer.writerow([rank, *(f"{v:.4g}" if isinstance(v, float) else v for v in values)])


def captioned_grid(items: Sequence[tuple[str, str]], title: str, channels: int, columns: int = 8,
                   side: int = 96) -> Figure:
    """Images with a caption under each, ``columns`` to a row, each fitted into a ``side`` square."""
    rows = max(1, -(-len(items) // columns))
    figure = Figure(figsize=(1.9 * columns, 2.1 * rows))
    axes = picture_axes(figure, rows, columns)
    for axis, (path, caption) in zip(axes.flat, items):
        show_thumbnail(axis, path, channels, side)
        axis.set_xlabel(caption, fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def label_issues_figure(issues: Sequence[LabelIssue], channels: int) -> Figure:
    items = [(issue.path, f"labelled {issue.label} (p={issue.p_label:.2f})\nlooks like {issue.suggested} "
                          f"(p={issue.p_suggested:.2f})") for issue in issues[:GRID_IMAGES]]
    return captioned_grid(items, f"suspected label errors, most likely first ({len(items)} of {len(issues)})",
                          channels)


def outliers_figure(found: Sequence[Outlier], channels: int) -> Figure:
    items = [(outlier.path, f"labelled {outlier.label}, score {outlier.outlier_score:.2g}\npredicted "
                            f"{outlier.prediction} (p={outlier.confidence:.2f})") for outlier in found[:GRID_IMAGES]]
    return captioned_grid(items, f"outliers, farthest first ({len(items)} of {len(found)})", channels)
