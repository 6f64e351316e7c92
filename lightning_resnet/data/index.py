"""A folder as a run uses it, worked out once into immutable values: listed (:class:`FolderListing`), then
checked, hashed, grouped and split (:class:`FolderIndex`).

Listing is cheap (no file is read) and gives the classes, which the command line needs before
anything runs. Indexing reads every file once (from the cache after the first time, see
:mod:`.catalog`), so the data module does it in ``prepare_data``/``setup``. Nothing here changes
after it is made: a different question (hashes that were not asked for) makes a new index.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from ..errors import check
from ..stages import TEST, TRAIN, VAL
from .catalog import ImageRecord, image_records, warn_unreadable
from .corrections import Corrections
from .dataset import Sample
from .duplicates import DuplicateGroup, cached_duplicate_groups
from .folders import FolderLayout, LayoutError, detect_layout, scan_image_folder, scan_split_part
from .splits import fold_numbers, stratified_split

IMBALANCE_WARNING_RATIO = 5.0
"""Start-up warns when the largest class of the training split has more than this many times the
images of the smallest."""


@dataclass(frozen=True)
class FolderListing:
    """Every image file of a folder with its class index and, in a pre-split folder, its part (else None)."""

    layout: FolderLayout
    class_names: tuple[str, ...]
    files: tuple[Sample, ...]
    parts: tuple[str | None, ...]


def list_folder(root: Path, class_names: Sequence[str] | None = None) -> FolderListing:
    """List ``root`` (one folder per class, or ``train/``, ``val/``, ``test/``); ``class_names`` fixes the classes."""
    layout = detect_layout(root)
    if not layout.presplit:
        names, files = scan_image_folder(root, class_names)
        return FolderListing(layout, tuple(names), tuple(files), (None,) * len(files))
    names, files = scan_image_folder(layout.train, class_names)
    parts: list[str | None] = [TRAIN] * len(files)
    for part, folder in ((VAL, layout.val), (TEST, layout.test)):
        if folder is not None:
            more = scan_split_part(folder, names, layout.train)
            files += more
            parts += [part] * len(more)
    return FolderListing(layout, tuple(names), tuple(files), tuple(parts))


@dataclass(frozen=True)
class SplitRule:
    """How the images that are not split already are shared between training and validation."""

    val_fraction: float = 0.2
    seed: int = 42
    num_folds: int | None = None
    fold: int = 0
    group_duplicates: bool = True

    def describe(self) -> str:
        if self.num_folds is not None:
            return f"stratified fold {self.fold} ({self.fold + 1} of {self.num_folds}, seed {self.seed})"
        return f"stratified {1 - self.val_fraction:.0%}/{self.val_fraction:.0%} split (seed {self.seed})"


@dataclass(frozen=True)
class FolderIndex:
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

    def class_counts(self, indices: Sequence[int]) -> list[int]:
        """Images of each class among ``indices``, in class index order."""
        counts = Counter(self.listing.files[i][1] for i in indices)
        return [counts[index] for index in range(len(self.listing.class_names))]


def index_folder(listing: FolderListing, rule: SplitRule, verify: bool, find_duplicates: bool,
                 corrections: Corrections = Corrections()) -> FolderIndex:
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
    return FolderIndex(listing, records, verify, find_duplicates, groups, train, val, excluded, folds)


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
    if rule.num_folds is not None:
        counts = Counter(targets)
        scarcest = min(range(len(listing.class_names)), key=lambda target: counts[target])
        check(rule.num_folds <= counts[scarcest],
              f"data.num_folds {rule.num_folds}: class {listing.class_names[scarcest]} has {counts[scarcest]} readable "
              f"images in {layout.root}, so some folds would validate none of it; use at most {counts[scarcest]} folds")
        fold_of = fold_numbers(targets, rule.num_folds, rule.seed, units)
        folds = tuple(tuple(pool[i] for i, f in enumerate(fold_of) if f == fold) for fold in range(rule.num_folds))
        train = [i for i, f in enumerate(fold_of) if f != rule.fold]
        val = [i for i, f in enumerate(fold_of) if f == rule.fold]
    else:
        folds = ()
        train, val = stratified_split(targets, rule.val_fraction, rule.seed, units)
    if not train or not val:
        raise LayoutError(f"{layout.root} has {len(pool)} readable images: too few for a {rule.describe()}")
    return tuple(pool[i] for i in train), tuple(pool[i] for i in val), folds


def list_test_folder(root: Path, class_names: Sequence[str], verify: bool) -> list[Sample]:
    """The readable labelled images of a test folder laid out like the training one, with its classes."""
    _, samples = scan_image_folder(root, class_names)
    if not verify:
        return samples
    paths = [path for path, _ in samples]
    records = image_records(root, paths, with_hashes=False)
    warn_unreadable(paths, records, root)
    return [sample for sample, record in zip(samples, records) if record.readable]


def announce(index: FolderIndex, rule: SplitRule, balanced: bool) -> None:
    """One line on the layout and the split, and warnings on leaks and, unless the sampler or the loss is
    ``balanced`` already, on class imbalance."""
    layout, names = index.listing.layout, index.listing.class_names
    how = "its own split" if layout.presplit and layout.val is not None else rule.describe()
    grouped = sum(len(group.members) for group in index.groups)
    duplicates = (f"; {len(index.groups)} group(s) of duplicates ({grouped} images)"
                  + (" kept on one side" if rule.group_duplicates and not layout.presplit else "")
                  if index.groups else "")
    excluded = f"; {len(index.excluded)} excluded (data.exclude)" if index.excluded else ""
    rank_zero_info(f"data: {layout.describe()}, {len(names)} classes, {how}: "
                   f"{len(index.train)} training and {len(index.val)} validation images{duplicates}{excluded}")
    if index.leaks:
        examples = "; ".join(" = ".join(index.files[i][0] for i in group.members[:2]) for group, _ in index.leaks[:3])
        rank_zero_warn(f"{layout.root}: {len(index.leaks)} group(s) of duplicate images are in more than one "
                       f"of train/val/test, which inflates the held-out scores (e.g. {examples}); "
                       "see python -m lightning_resnet inspect")
    counts = index.class_counts(index.train)
    largest = max(range(len(counts)), key=counts.__getitem__)
    smallest = min(range(len(counts)), key=counts.__getitem__)
    if not balanced and counts[largest] > IMBALANCE_WARNING_RATIO * max(counts[smallest], 1):
        rank_zero_warn(f"{layout.root}: the classes are imbalanced ({names[largest]}: {counts[largest]} "
                       f"training images, {names[smallest]}: {counts[smallest]}); consider "
                       "--model.class_weights balanced or --data.sampler balanced")
