"""A folder of images as a source: one sub-folder per class (split here), or split already (``train/``, ``val/``,
``test/``), or a data set by name (``cifar10``, ``demo:digits``, ...: :mod:`..named_sets`), written as such a folder
on first use.

The folder is listed once (:mod:`..listing`, no file read), then checked, hashed and split once
(:mod:`..folder_split`, from the caches after the first run); each part is read file by file
(:class:`~..dataset.ImageSamples`) in a resumable shuffle (:class:`~..loaders.SampledLoader`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from ...errors import UserError, check
from ...stages import TEST, TRAIN, VAL
from ..corrections import EXCLUDED, Corrections, read_corrections
from ..dataset import ImageSamples, Sample, label_counts, target_names
from ..extra_labels import PSEUDO, read_extra_labels, refuse_copies_of_held_out
from ..folder_split import FolderSplit, announce, split_folder
from ..listing import FolderLayout, FolderListing, detect_layout, list_folder, list_test_folder, visible_folders
from ..loaders import LoaderSettings, SampledLoader
from ..named_sets import NamedDataSet, named_data_set, neither_folder_nor_name
from ..normalization import Normalization, cached_mean_std
from ..previous_run import REHEARSAL, PreviousRun
from ..splits import SplitRow
from ..transforms import EvaluationView
from .base import Augmentation, ImageSource, SourceOptions, View


class FolderSource(ImageSource):
    """A folder of image files: see the module's docstring."""

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        self.named: NamedDataSet | None = self.named_set(options)
        """The data set ``data_dir`` names (written on first use), or None for a folder's path."""
        self.root: Path = self.images_root(options)
        self.corrections: Corrections = read_corrections(options.exclude, options.relabel, self.root)
        self._listing: FolderListing | None = None  # the folder listed, once
        self._split: FolderSplit | None = None  # ... then checked, hashed and split, once
        self._measured: Normalization | None = None  # normalize: auto, once measured or read from the cache
        self._extra: list[Sample] | None = None  # data.extra_labels, once read
        self.previous: PreviousRun | None = PreviousRun.read(options.extends) if options.extends else None
        """The run of the model an extended run grows (``model.extend``), or None."""
        self._rehearsal: list[Sample] = []  # the previous run's training images it keeps (rehearse)

    @classmethod
    def reads(cls, options: SourceOptions) -> bool:
        return True  # what no other source reads is a folder; listing it says what a folder must hold

    @classmethod
    def named_set(cls, options: SourceOptions) -> NamedDataSet | None:
        """The data set ``data_dir`` names, or None when it is a folder's path."""
        return named_data_set(options.data_dir)

    @classmethod
    def images_root(cls, options: SourceOptions) -> Path:
        """The folder the images are under (a data set by name: where it is written)."""
        named = cls.named_set(options)
        return named.folder if named is not None else Path(options.data_dir).expanduser()

    @property
    def location(self) -> Path:
        return self.root

    def listing(self) -> FolderListing:
        """Every image file of the folder with its class and part: the folder is listed once (no file read), under
        the given classes, or an extended model's and the folder's (listed twice: a listing reads no file)."""
        if self._listing is None:
            names = self.given_class_names
            if names is None and self.previous is not None:
                names = self.previous.classes_with(self.own_class_names(), str(self.location))
            self._listing = self.list_images(names)
        return self._listing

    def written_root(self) -> Path:
        """:attr:`root`, written first for a data set by name; one line when it is neither a folder nor a name."""
        if self.named is not None:
            self.named.written()
        elif not self.root.exists() and os.sep not in self.options.data_dir:
            raise UserError(neither_folder_nor_name(self.options.data_dir))
        return self.root

    def list_images(self, class_names: tuple[str, ...] | None) -> FolderListing:
        """The images and their classes (``class_names`` when given, else the folder's)."""
        return list_folder(self.written_root(), class_names)

    def own_class_names(self) -> list[str]:
        """The class folders (of ``train/`` when split already), one enough: an extended model adds its own."""
        layout = detect_layout(self.written_root())
        return visible_folders(layout.train if layout.presplit else layout.root)

    def folder_split(self, find_duplicates: bool | None = None) -> FolderSplit:
        """The folder checked, hashed (``find_duplicates``, ``group_duplicates`` by default) and split: the one
        made already when it answers the question, else made (from the caches) and announced."""
        rule = self.options.split_rule
        hashes = rule.group_duplicates if find_duplicates is None else find_duplicates
        if self._split is None or (hashes and not self._split.hashed):
            self._split = split_folder(self.listing(), rule, self.options.verify_images, hashes, self.corrections)
            if self.previous is not None:
                self._split = self._split.with_held_out(resolved(path for path, _ in self.previous.validation))
            announce(self._split, rule, balanced=self.options.sampler == "balanced" or self.options.balanced_elsewhere)
        return self._split

    @property
    def layout(self) -> FolderLayout:
        return self.listing().layout

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.given_class_names or self.listing().class_names

    def image_sizes(self) -> list[tuple[int, int]]:
        records = self.folder_split().records or ()
        return [(record.height, record.width) for record in records if record.readable and record.width]

    def known_class_names(self) -> tuple[str, ...] | None:
        return self.given_class_names or (self._listing.class_names if self._listing else None)

    def prepare(self) -> None:
        self.folder_split()
        self.extra_samples()

    def split(self) -> tuple[list[Sample], list[Sample]]:
        """The (train, validation) samples: a pre-split folder's own, else a stratified random split fixed
        by the seed (or one fold of ``num_folds``) that keeps duplicates together; the images of
        ``data.extra_labels`` join the training part."""
        split = self.folder_split()
        return (split.samples(split.train) + self.extra_samples() + self._rehearsal,
                split.samples(split.val) + self.previous_validation)

    @cached_property
    def previous_validation(self) -> list[Sample]:
        """An extended model's old validation images that are not in this folder (none without ``model.extend``):
        validated with the folder's, so that the old classes are validated too."""
        if self.previous is None:
            return []
        return [(path, self.class_names.index(name)) for path, name in self.previous.validation
                if str(Path(path).resolve()) not in self.listed_paths]

    @cached_property
    def listed_paths(self) -> set[str]:
        """The absolute paths of the folder's images (what an extended model's old images are compared with)."""
        return resolved(path for path, _ in self.listing().files)

    def rehearse(self, images: list[tuple[str, str]]) -> int:
        """Train on ``images`` (path, class name) of the previous run too (:func:`..previous_run.rehearsal_images`),
        those of this folder aside (they train anyway); how many."""
        self._rehearsal = [(path, self.class_names.index(name)) for path, name in images
                           if str(Path(path).resolve()) not in self.listed_paths]
        return len(self._rehearsal)

    def extra_samples(self) -> list[Sample]:
        """The images of ``data.extra_labels`` (none without it), read and checked once."""
        if self.options.extra_labels is None:
            return []
        if self._extra is None:
            extra = read_extra_labels(self.options.extra_labels, self.class_names, self.root, self.task)
            split = self.folder_split()
            held_out = [path for path, _ in split.samples(split.val) + (self.test_samples() if self.has_test else [])]
            refuse_copies_of_held_out(self.options.extra_labels, extra, held_out)
            self._extra = extra
        return self._extra

    def fold_samples(self) -> list[list[Sample]]:
        """The images each fold of ``num_folds`` validates (what ``convert`` writes as ``fold_0``, ``fold_1``, ...)."""
        split = self.folder_split()
        return [split.samples(fold) for fold in split.folds]

    def test_samples(self) -> list[Sample]:
        """The labelled images of ``test``: ``data.test_dir``, else a pre-split folder's ``test/``."""
        if self.test_dir is not None:
            return list_test_folder(self.test_dir, self.class_names, self.options.verify_images)
        if self.layout.test is None:
            raise UserError("test needs data.test_dir, or a test/ folder beside train/ in data.data_dir: "
                            "a folder laid out like data_dir (<class name>/<images>)")
        split = self.folder_split()
        return split.samples(split.test)

    @property
    def has_own_test(self) -> bool:
        return self.layout.test is not None

    def split_rows(self) -> list[SplitRow]:
        split = self.folder_split()
        parts = [(TRAIN, split.samples(split.train)), (PSEUDO, self.extra_samples()), (REHEARSAL, self._rehearsal),
                 (VAL, split.samples(split.val) + self.previous_validation),
                 (TEST, self.test_samples() if self.has_test else []), (EXCLUDED, split.samples(split.excluded))]
        return [(path, part, target_names(target, self.class_names)) for part, samples in parts
                for path, target in samples]

    def training_class_counts(self) -> list[int]:
        return label_counts((target for _, target in self.split()[0]), len(self.class_names))

    def measured_normalization(self, view: EvaluationView, num_workers: int) -> Normalization:
        if self._measured is None:
            self._measured = self.normalization_of(self.split()[0], view, num_workers)
        return self._measured

    @staticmethod
    def normalization_of(samples: list[Sample], view: EvaluationView, num_workers: int) -> Normalization:
        """The mean and std of ``samples`` as ``view`` shows them: from the cache, or measured and cached."""
        return Normalization(*cached_mean_std(samples, view, num_workers, *view.settings))

    @property
    def num_labels(self) -> int:
        """The length of a multi-hot target (what a label set becomes in a batch)."""
        check(self.task.multi_hot_targets or not self.options.multilabel,
              f"data.multilabel true needs data.labels, a labels file giving each image its labels: {self.location} "
              "gives one class per image")
        return len(self.class_names)

    def training_set(self, view: View, augmentation: Augmentation, settings: LoaderSettings,
                     processes: int) -> ImageSamples:
        return ImageSamples(self.split()[0], view, augmentation, replace_unreadable=True, num_labels=self.num_labels)

    def evaluation_set(self, part: str, view: View) -> ImageSamples:
        return ImageSamples(self.split()[1] if part == VAL else self.test_samples(), view, num_labels=self.num_labels)

    def training_loader(self, dataset: ImageSamples, settings: LoaderSettings, processes: int, rank: int,
                        batches_done: Callable[[], int | None]) -> SampledLoader:
        return SampledLoader(dataset, settings, processes, rank, balanced=self.options.sampler == "balanced")


def resolved(paths) -> set[str]:
    """The absolute forms of ``paths`` (``split.csv`` keeps the paths as the run was given them)."""
    return {str(Path(path).resolve()) for path in paths}
