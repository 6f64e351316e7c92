"""The splits' promises, on plain lists of class indices: quotas, disjointness, groups kept whole, seeds."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from lightning_resnet.data.splits import fold_numbers, stratified_split

FIFTY_FIVE_FIVE = [0] * 50 + [1] * 5 + [2] * 5


def per_class(targets, indices) -> list[int]:
    counts = Counter(targets[i] for i in indices)
    return [counts[c] for c in range(max(targets) + 1)]


def random_targets(seed: int, size: int = 600, classes: int = 7) -> list[int]:
    return np.random.default_rng(seed).integers(0, classes, size).tolist()


def random_groups(targets: list[int], seed: int, count: int = 40, largest: int = 4) -> list[list[int]]:
    """Disjoint groups of 2 to ``largest`` images of one class each, as duplicates are."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for index in rng.permutation(len(targets)).tolist():
        by_class.setdefault(targets[index], []).append(index)
    groups = []
    for group_number in range(count):
        pool = by_class[group_number % len(by_class)]
        size = int(rng.integers(2, largest + 1))
        groups.append(sorted(pool[:size]))
        del pool[:size]
    return groups


def straddling(groups, val) -> list[list[int]]:
    held_out = set(val)
    return [group for group in groups if 0 < len(held_out.intersection(group)) < len(group)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fifty_five_five_gives_ten_one_one(seed):
    train, val = stratified_split(FIFTY_FIVE_FIVE, 0.2, seed)
    assert per_class(FIFTY_FIVE_FIVE, val) == [10, 1, 1]
    assert per_class(FIFTY_FIVE_FIVE, train) == [40, 4, 4]


def test_every_class_of_two_or_more_gets_one_validation_image_never_all():
    targets = [0] * 50 + [1] * 2 + [2] * 2
    _, val = stratified_split(targets, 0.2, seed=0)
    assert per_class(targets, val) == [10, 1, 1]
    _, val = stratified_split([0, 0, 1, 1], 0.9, seed=0)
    assert per_class([0, 0, 1, 1], val) == [1, 1]


def test_stratified_split_is_disjoint_complete_and_sorted():
    targets = random_targets(3)
    train, val = stratified_split(targets, 0.25, seed=0)
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(len(targets)))
    assert train == sorted(train) and val == sorted(val)


def test_same_seed_same_split_other_seed_other_split():
    first = stratified_split(FIFTY_FIVE_FIVE, 0.2, seed=0)
    assert stratified_split(FIFTY_FIVE_FIVE, 0.2, seed=0) == first
    assert stratified_split(FIFTY_FIVE_FIVE, 0.2, seed=1) != first


@pytest.mark.parametrize("seed", range(5))
def test_a_duplicate_group_never_straddles(seed):
    targets = random_targets(seed)
    groups = random_groups(targets, seed)
    train, val = stratified_split(targets, 0.2, seed, groups)
    assert straddling(groups, val) == []
    assert sorted(train + val) == list(range(len(targets)))
    assert any(set(group) <= set(val) for group in groups), "no group was held out: the test proves nothing"


def test_a_class_of_one_image_stays_in_training():
    targets = [0] * 10 + [1] + [2] * 10
    train, val = stratified_split(targets, 0.5, seed=0)
    assert 10 in train and 10 not in val
    assert per_class(targets, val) == [5, 0, 5]


def test_the_fraction_is_honoured_on_a_larger_random_folder():
    targets = random_targets(7, size=2000)
    sizes = per_class(targets, range(len(targets)))
    _, val = stratified_split(targets, 0.15, seed=0)
    assert len(val) == round(2000 * 0.15)
    for held_out, size in zip(per_class(targets, val), sizes):
        assert abs(held_out - 0.15 * size) < 1


def folds_of(targets, num_folds, seed, groups=()) -> list[int]:
    fold_of = fold_numbers(targets, num_folds, seed, groups)
    assert len(fold_of) == len(targets) and set(fold_of) <= set(range(num_folds))
    return fold_of


def class_spread(targets, fold_of, num_folds) -> int:
    """The largest difference, over classes, between the fold with most of a class and the one with fewest."""
    spread = 0
    for target in set(targets):
        counts = Counter(f for t, f in zip(targets, fold_of) if t == target)
        per_fold = [counts[f] for f in range(num_folds)]
        spread = max(spread, max(per_fold) - min(per_fold))
    return spread


@pytest.mark.parametrize("num_folds", [2, 5, 7])
def test_folds_are_disjoint_cover_everything_and_split_each_class_evenly(num_folds):
    targets = random_targets(4, size=500) + [7, 7, 7]  # and a class smaller than the number of folds
    fold_of = folds_of(targets, num_folds, seed=0)
    assert class_spread(targets, fold_of, num_folds) == 1


def test_fifty_five_five_in_five_folds_gives_ten_one_one_each():
    fold_of = folds_of(FIFTY_FIVE_FIVE, 5, seed=3)
    for fold in range(5):
        assert per_class(FIFTY_FIVE_FIVE, [i for i, f in enumerate(fold_of) if f == fold]) == [10, 1, 1]


@pytest.mark.parametrize("seed", range(3))
def test_folds_keep_groups_whole_and_classes_even_within_the_largest_group(seed):
    targets = random_targets(seed, size=500)
    groups = random_groups(targets, seed, largest=4)
    fold_of = folds_of(targets, 5, seed, groups)
    assert [group for group in groups if len({fold_of[i] for i in group}) > 1] == []
    assert class_spread(targets, fold_of, 5) <= 4


def test_folds_are_reproducible_for_a_seed():
    targets = random_targets(5, size=200)
    assert folds_of(targets, 5, seed=0) == folds_of(targets, 5, seed=0)
    assert folds_of(targets, 5, seed=0) != folds_of(targets, 5, seed=1)
