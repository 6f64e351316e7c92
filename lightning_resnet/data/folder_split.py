"""A listed folder checked, hashed, grouped and split, worked out once into an immutable value (:class:`FolderSplit`).

It reads every file once (from the cache after the first time, see :mod:`.image_records`), so the folder
source makes it in ``prepare_data``/``setup``, after the cheap listing (:mod:`.listing`). Nothing here changes
after it is made: a different question (hashes that were not asked for) makes a new one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from ..errors import check
from ..stages import TEST, TRAIN, VAL
from ..tasks import MULTI_LABEL, SINGLE_LABEL
from .corrections import Corrections
from .dataset import Sample, label_counts
from .duplicates import DuplicateGroup, cached_duplicate_groups
from .image_records import ImageRecord, image_records, warn_unreadable
from .listing import FolderLayout, FolderListing, LayoutError
from .multilabel_split import multilabel_fold_numbers, multilabel_split
from .splits import SplitRule, fold_numbers, stratified_split

IMBALANCE_WARNING_RATIO = 5.0
"""Start-up warns when the largest class of the training split has more than this many times the
images of the smallest."""


@dataclass(frozen=True)
class FolderSplit:
    """A listed folder with each file's record, the duplicate groups, and the training/validation split.

    ``train`` and ``val`` index into ``listing.files`` (with ``data.relabel``'s classes); unreadable and
    excluded files (``data.exclude``) are in neither.
    """

    listing: FolderListing
    records: tuple[ImageRecord, ...] | None
    """Each file's check and hashes; None when neither was asked for."""
    verified: bool
    hashed: bool
    groups: tuple[DuplicateGroup, ...]
    train: tuple[int, ...]
    val: tuple[int, ...]
    excluded: tuple[int, ...] = ()
    folds: tuple[tuple[int, ...], ...] = ()
    """Under ``data.num_folds``, the images each fold validates (``val`` is the chosen fold's); else empty."""

    @property
    def files(self) -> tuple[Sample, ...]:
        return self.listing.files

    def samples(self, indices: Sequence[int]) -> list[Sample]:
        return [self.listing.files[i] for i in indices]

    @cached_property
    def test(self) -> tuple[int, ...]:
        """The readable files of a pre-split folder's ``test/``."""
        left_out = set(self.excluded)
        return tuple(i for i, part in enumerate(self.listing.parts)
                     if part == TEST and self.readable(i) and i not in left_out)

    def readable(self, index: int) -> bool:
        return not self.verified or self.records[index].readable

    @cached_property
    def part_of_files(self) -> dict[int, str]:
        """The part (train, val, test) each listed file is in, by index; unreadable files are in none."""
        return dict.fromkeys(self.test, TEST) | dict.fromkeys(self.train, TRAIN) | dict.fromkeys(self.val, VAL)

    @cached_property
    def leaks(self) -> tuple[tuple[DuplicateGroup, tuple[str, ...]], ...]:
        """Duplicate groups with copies in more than one part, each with those parts."""
        found = []
        for group in self.groups:
            parts = tuple(sorted({self.part_of_files[i] for i in group.members if i in self.part_of_files}))
            if len(parts) > 1:
                found.append((group, parts))
        return tuple(found)

    def with_held_out(self, paths: set[str]) -> FolderSplit:
        """This split with the training images whose absolute paths are ``paths`` moved to validation (an extended
        model's old validation images, which must not train it)."""
        moved = {i for i in self.train if str(Path(self.files[i][0]).resolve()) in paths}
        if not moved:
            return self
        return replace(self, train=tuple(i for i in self.train if i not in moved),
                       val=tuple(sorted({*self.val, *moved})))

    def class_counts(self, indices: Sequence[int]) -> list[int]:
        """Images of each class (with each label, in a multi-label set) among ``indices``, in class index order."""
        return label_counts((self.listing.files[i][1] for i in indices), len(self.listing.class_names))


def split_folder(listing: FolderListing, rule: SplitRule, verify: bool, find_duplicates: bool,
                 corrections: Corrections = Corrections()) -> FolderSplit:
    """Check (``verify``) and hash (``find_duplicates``) every listed file, group the copies and split what
    ``corrections`` does not exclude, under its classes."""
    listing, excluded = corrections.apply(listing)
    root = listing.layout.root
    paths = [path for path, _ in listing.files]
    records = None
    if verify or find_duplicates:
        records = tuple(image_records(root, paths, with_hashes=find_duplicates))
        if verify:
            warn_unreadable(paths, records, root)
    groups = tuple(cached_duplicate_groups(records)) if find_duplicates else ()
    usable = [record.readable for record in records] if verify else [True] * len(paths)
    for index in excluded:
        usable[index] = False
    train, val, folds = _split(listing, rule, usable, groups)
    return FolderSplit(listing, records, verify, find_duplicates, groups, train, val, excluded, folds)


def _class_folds(targets: Sequence, names: Sequence[str], rule: SplitRule, units: list[list[int]],
                 layout: FolderLayout) -> list[int]:
    counts = Counter(targets)
    scarcest = min(range(len(names)), key=lambda target: counts[target])
    check(rule.num_folds <= counts[scarcest],
          f"data.num_folds {rule.num_folds}: class {names[scarcest]} has {counts[scarcest]} readable images in "
          f"{layout.root}, so some folds would validate none of it; use at most {counts[scarcest]} folds")
    return fold_numbers(targets, rule.num_folds, rule.seed, units)


@dataclass(frozen=True)
class Stratified:
    """How a task's images are shared between training and validation (``split``), or among folds (``folds``), so
    that each class, or each label, is in every part as much as it can be."""

    split: Callable[[Sequence, Sequence[str], SplitRule, list[list[int]], FolderLayout], tuple[list[int], list[int]]]
    folds: Callable[[Sequence, Sequence[str], SplitRule, list[list[int]], FolderLayout], list[int]]


STRATIFIED = {
    SINGLE_LABEL.name: Stratified(
        lambda targets, names, rule, units, layout: stratified_split(targets, rule.val_fraction, rule.seed, units),
        _class_folds),
    MULTI_LABEL.name: Stratified(  # iterative stratification
        lambda targets, names, rule, units, layout: multilabel_split(targets, names, rule.val_fraction, rule.seed,
                                                                     units, layout.describe()),
        lambda targets, names, rule, units, layout: multilabel_fold_numbers(targets, names, rule.num_folds,
                                                                            rule.seed, units, layout.describe())),
}
IMBALANCE_REMEDIES = {SINGLE_LABEL.name: "--model.class_weights balanced or --data.sampler balanced",
                      MULTI_LABEL.name: "--model.class_weights with a weight per label"}


def _split(listing: FolderListing, rule: SplitRule, usable: list[bool], groups: Sequence[DuplicateGroup]
           ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(train, val, each fold's validation images under ``num_folds``), as indices into ``listing.files``."""
    layout, parts = listing.layout, listing.parts
    check(not layout.presplit or rule.num_folds is None,
          f"data.num_folds: {layout.describe()} is split already; k-fold needs one folder per class "
          "(merge train/ and val/ to cross-validate)")
    if layout.presplit and layout.val is not None:
        return (tuple(i for i, part in enumerate(parts) if part == TRAIN and usable[i]),
                tuple(i for i, part in enumerate(parts) if part == VAL and usable[i]), ())
    pool = [i for i, part in enumerate(parts) if part in (None, TRAIN) and usable[i]]
    position = {index: order for order, index in enumerate(pool)}
    units = [[position[i] for i in group.members if i in position] for group in groups]
    units = [unit for unit in units if len(unit) > 1] if rule.group_duplicates else []
    targets = [listing.files[i][1] for i in pool]
    names = listing.class_names
    stratified = STRATIFIED[listing.task.name]
    if rule.num_folds is not None:
        fold_of = stratified.folds(targets, names, rule, units, layout)
        folds = tuple(tuple(pool[i] for i, f in enumerate(fold_of) if f == fold) for fold in range(rule.num_folds))
        train = [i for i, f in enumerate(fold_of) if f != rule.fold]
        val = [i for i, f in enumerate(fold_of) if f == rule.fold]
    else:
        folds = ()
        train, val = stratified.split(targets, names, rule, units, layout)
    if not train or not val:
        raise LayoutError(f"{layout.root} has {len(pool)} readable images: too few for a {rule.describe()}")
    return tuple(pool[i] for i in train), tuple(pool[i] for i in val), folds


def announce(split: FolderSplit, rule: SplitRule, balanced: bool) -> None:
    """One line on the layout and the split, and warnings on leaks and, unless the sampler or the loss is
    ``balanced`` already, on class imbalance."""
    layout, names = split.listing.layout, split.listing.class_names
    how = "its own split" if layout.presplit and layout.val is not None else rule.describe()
    grouped = sum(len(group.members) for group in split.groups)
    duplicates = (f"; {len(split.groups)} group(s) of duplicates ({grouped} images)"
                  + (" kept on one side" if rule.group_duplicates and not layout.presplit else "")
                  if split.groups else "")
    excluded = f"; {len(split.excluded)} excluded (data.exclude)" if split.excluded else ""
    rank_zero_info(f"data: {layout.describe()}, {len(names)} {split.listing.task.items_described}, {how}: "
                   f"{len(split.train)} training and {len(split.val)} validation images{duplicates}{excluded}")
    if split.leaks:
        examples = "; ".join(" = ".join(split.files[i][0] for i in group.members[:2]) for group, _ in split.leaks[:3])
        rank_zero_warn(f"{layout.root}: {len(split.leaks)} group(s) of duplicate images are in more than one "
                       f"of train/val/test, which inflates the held-out scores (e.g. {examples}); "
                       "see python -m lightning_resnet inspect")
    counts = split.class_counts(split.train)
    present = [index for index, count in enumerate(split.class_counts(range(len(split.files)))) if count] or [0]
    largest = max(present, key=counts.__getitem__)
    smallest = min(present, key=counts.__getitem__)  # a class with no file here (an extended model's) is not scarce
    if not balanced and counts[largest] > IMBALANCE_WARNING_RATIO * max(counts[smallest], 1):
        rank_zero_warn(f"{layout.root}: the classes are imbalanced ({names[largest]}: {counts[largest]} "
                       f"training images, {names[smallest]}: {counts[smallest]}); consider "
                       f"{IMBALANCE_REMEDIES[split.listing.task.name]}")
