"""What the data module asks of a source of labelled images, whatever holds them: a folder (:mod:`.folder`), a
labels file (:mod:`.labels_file`), a data set written by ``convert`` (:mod:`.converted`), or a source added later,
each in a file of its own.

A source answers with the classes, the split (``split.csv``'s rows), the training class counts, the measured
normalization statistics, the data set of a part in a view, and a training loader whose place in the epoch a
checkpoint keeps. The data module keeps the options, Lightning's hooks and the normalization on the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import Tensor
from torch.utils.data import Dataset

from ...errors import UserError
from ...tasks import SINGLE_LABEL, Task
from ..digits import DIGITS_DATA
from ..loaders import LoaderSettings, TrainingLoader
from ..normalization import Normalization
from ..previous_run import PreviousRun
from ..splits import SplitRow, SplitRule
from ..transforms import EvaluationView

SamplerKind = Literal["shuffle", "balanced"]
"""``shuffle``: every training image once per epoch; ``balanced``: images drawn with replacement, every
class equally often (``WeightedRandomSampler``)."""
View = Callable[..., Tensor]
"""Reads an image file (or its bytes) as a ``uint8`` crop: :class:`~..transforms.EvaluationView` and the training
views."""
Augmentation = Callable[[Tensor], Tensor] | None


@dataclass(frozen=True)
class SourceOptions:
    """The data options a source reads (the data module's, as the user gave them)."""

    data_dir: str
    split_rule: SplitRule = SplitRule()
    exclude: str | None = None
    relabel: str | None = None
    sampler: SamplerKind = "shuffle"
    test_dir: str | None = None
    verify_images: bool = True
    class_names: tuple[str, ...] | None = None
    """The classes in index order when they are known already (a checkpoint's); else the source's own."""
    balanced_elsewhere: bool = False
    """Whether the loss weighs the classes (``model.class_weights``): then imbalance needs no warning."""
    extra_labels: str | None = None
    """A ``pseudo_labels.csv`` whose images join the training part (:mod:`..extra_labels`)."""
    labels: str | None = None
    """A labels file listing the images and their classes (:mod:`..labels_file`), instead of class folders."""
    multilabel: bool | None = None
    """Whether the images have label sets (several labels each); None: as the labels file says."""
    extends: str | None = None
    """The checkpoint of the model an extended run grows (``model.extend``): its classes join the data's, and its
    run's validation images stay out of training (:mod:`..previous_run`)."""

    @classmethod
    def from_data_options(cls, options: Mapping[str, Any]) -> SourceOptions:
        """The options of the data module ``data.*`` (as it was given them, or as a trained model's bundle keeps
        them) that a source reads: every option that decides which images there are and how they are split."""
        names = options.get("class_names")
        return cls(options.get("data_dir", DIGITS_DATA),
                   SplitRule(options.get("val_fraction", 0.2), options.get("seed", 42), options.get("num_folds"),
                             options.get("fold", 0), options.get("group_duplicates", True)),
                   options.get("exclude"), options.get("relabel"), options.get("sampler", "shuffle"),
                   options.get("test_dir"), options.get("verify_images", True), tuple(names) if names else None,
                   options.get("weighted_loss", False), options.get("extra_labels"), options.get("labels"),
                   options.get("multilabel"), options.get("extends"))


class ImageSource(ABC):
    """A source of labelled images: see the module's docstring."""

    previous: PreviousRun | None = None
    """The run of the model an extended run grows (``model.extend``); a source that reads it sets it."""

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.given_class_names: tuple[str, ...] | None = options.class_names
        """The classes the source must use: given, or a checkpoint's (:meth:`use_class_names`)."""
        self.test_dir: Path | None = Path(options.test_dir).expanduser() if options.test_dir else None

    @classmethod
    @abstractmethod
    def reads(cls, options: SourceOptions) -> bool:
        """Whether ``options`` (their ``data_dir``, or an option of the source's own) name a source of this kind."""

    @property
    @abstractmethod
    def location(self) -> str | Path:
        """Where the images are, as messages name it."""

    @property
    @abstractmethod
    def class_names(self) -> tuple[str, ...]:
        """The classes in index order (the given ones, else the source's, found on first use)."""

    @property
    def task(self) -> Task:
        """What each image has: one class, or a label set (a multi-label labels file)."""
        return SINGLE_LABEL

    @abstractmethod
    def known_class_names(self) -> tuple[str, ...] | None:
        """The classes if they are known without reading anything more, else None."""

    def use_class_names(self, names: tuple[str, ...]) -> None:
        """Take a checkpoint's classes; one line when the source's own are others."""
        known = self.known_class_names()
        if known is not None and tuple(known) != tuple(names):
            raise UserError(f"the checkpoint's classes ({', '.join(names)}) differ from the data module's "
                            f"({', '.join(known)}): use the data the model was trained on")
        self.given_class_names = tuple(names)

    def rehearse(self, images: list[tuple[str, str]]) -> int:
        """Train on ``images`` (path, class name) of :attr:`previous` too (how many); only sources that read it can."""
        raise UserError(f"data.rehearsal: {self.location} cannot add the images of another run to its training part")

    @abstractmethod
    def prepare(self) -> None:
        """Work out once per node what the other processes then read from the caches, and say what the run
        reads, in a line."""

    @abstractmethod
    def split_rows(self) -> list[SplitRow]:
        """``(path, part, class)`` of every image the run uses: what ``split.csv`` holds."""

    @abstractmethod
    def training_class_counts(self) -> list[int]:
        """Images of each class in the training part (what ``model.class_weights: balanced`` weighs by)."""

    @abstractmethod
    def measured_normalization(self, view: EvaluationView, num_workers: int) -> Normalization:
        """The mean and std of the training part as ``view`` shows it (``data.normalize: auto``)."""

    def image_sizes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of the labelled images as their headers say, when the source has read them (a folder
        or a labels file verified at setup); empty otherwise."""
        return []

    @property
    def has_test(self) -> bool:
        """Whether ``test`` has images to read: ``data.test_dir``, or the source's own test part."""
        return self.test_dir is not None or self.has_own_test

    @property
    @abstractmethod
    def has_own_test(self) -> bool:
        """Whether the source holds a test part of its own."""

    @abstractmethod
    def training_set(self, view: View, augmentation: Augmentation, settings: LoaderSettings,
                     processes: int) -> Dataset:
        """The training part, each sample a ``(crop, class index)`` read through ``view`` then ``augmentation``."""

    @abstractmethod
    def evaluation_set(self, part: str, view: View) -> Dataset:
        """The validation or test part, in order, each sample ``(crop, class index)``."""

    @abstractmethod
    def training_loader(self, dataset: Dataset, settings: LoaderSettings, processes: int, rank: int,
                        batches_done: Callable[[], int | None]) -> TrainingLoader:
        """The loader of :meth:`training_set`'s data set, its place in the epoch kept by checkpoints;
        ``batches_done`` tells the training batches done in this epoch (None outside ``fit``)."""
