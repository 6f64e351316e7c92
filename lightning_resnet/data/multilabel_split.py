"""How the images of a multi-label set are shared between training and validation, or among K folds: iterative
stratification (Sechidis et al., 2011; the ``iterative-stratification`` package), which keeps each label's share
in every part, with groups of duplicate images moved as one.

A group counts as one item with the union of its images' labels; the split depends on the seed and the sorted file
list only, as the single-label split (:mod:`.splits`) does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from ..errors import check
from .dataset import LabelSet, label_counts


def _units(count: int, groups: Iterable[Sequence[int]]) -> list[list[int]]:
    """The items that move together: each group of duplicates, and every other image on its own."""
    grouped = [sorted(group) for group in groups]
    inside = {index for group in grouped for index in group}
    return sorted(grouped + [[index] for index in range(count) if index not in inside])


def _unit_labels(units: list[list[int]], targets: Sequence[LabelSet], num_labels: int) -> np.ndarray:
    """The multi-hot matrix of the units: a unit has every label of its images."""
    matrix = np.zeros((len(units), num_labels), dtype=np.int64)
    for row, unit in enumerate(units):
        for index in unit:
            matrix[row, list(targets[index])] = 1
    return matrix


def check_label_counts(targets: Sequence[LabelSet], class_names: Sequence[str], parts: int, what: str,
                       source: str) -> None:
    """One line naming ``source`` when a label has fewer images than ``parts``, the parts of ``what`` that each need
    one."""
    counts = label_counts(targets, len(class_names))
    for name, count in zip(class_names, counts):
        check(not 0 < count < parts, f"{source}: label {name} has {count} readable image(s): a {what} needs at least "
                                     f"{parts} of each label, one in each part (give it more images, or take it out "
                                     "of the labels file)")


def multilabel_split(targets: Sequence[LabelSet], class_names: Sequence[str], fraction: float, seed: int,
                     groups: Iterable[Sequence[int]] = (), source: str = "data.labels") -> tuple[list[int], list[int]]:
    """(train, validation) indices, about ``fraction`` of every label's images in validation; a label with a single
    image is one line (it cannot be in both parts). When the counts allow it but a label ends up on one side
    (large groups of duplicates), a warning says so."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    check_label_counts(targets, class_names, 2, "split of training and validation images", source)
    units = _units(len(targets), groups)
    labels = _unit_labels(units, targets, len(class_names))
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train_units, val_units = next(splitter.split(np.zeros(len(units)), labels))
    train = sorted(index for unit in train_units for index in units[unit])
    val = sorted(index for unit in val_units for index in units[unit])
    _warn_one_sided(targets, class_names, train, val)
    return train, val


def multilabel_fold_numbers(targets: Sequence[LabelSet], class_names: Sequence[str], num_folds: int, seed: int,
                            groups: Iterable[Sequence[int]] = (), source: str = "data.labels") -> list[int]:
    """The fold of each image among ``num_folds`` iteratively stratified folds; a label with fewer images than
    folds is one line."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    check_label_counts(targets, class_names, num_folds, f"data.num_folds {num_folds}", source)
    units = _units(len(targets), groups)
    labels = _unit_labels(units, targets, len(class_names))
    folds = [0] * len(targets)
    splitter = MultilabelStratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(units)), labels)):
        for unit in held_out:
            for index in units[unit]:
                folds[index] = fold
    return folds


def _warn_one_sided(targets: Sequence[LabelSet], class_names: Sequence[str], train: list[int], val: list[int]) -> None:
    in_train = label_counts((targets[i] for i in train), len(class_names))
    in_val = label_counts((targets[i] for i in val), len(class_names))
    missing = [f"{name} ({'no training image' if not trained else 'no validation image'})"
               for name, trained, validated in zip(class_names, in_train, in_val)
               if (trained or validated) and not (trained and validated)]
    if missing:
        rank_zero_warn(f"the split left {len(missing)} label(s) on one side: {', '.join(missing[:5])}; its scores "
                       "are not measured for them (groups of duplicates move as one: see inspect)")
