"""A labels file as a source (``data.labels``, :mod:`..labels_file`): the folder source's checks, split, caches and
loaders, with the images and their classes listed by the file rather than by class folders."""

from __future__ import annotations

from pathlib import Path

from ...errors import check
from ...tasks import MULTI_LABEL, SINGLE_LABEL, Task
from ..digit_sets import DIGIT_SETS, DIGIT_SETS_DIR, LABELS_CSV, write_digit_sets
from ..digits import DIGITS_DATA
from ..labels_file import list_labels_file
from ..listing import FolderListing, require_folder
from .base import SourceOptions
from .folder import FolderSource


class LabelsFileSource(FolderSource):
    """The images ``data.labels`` lists, under ``data.data_dir`` (by default, the labels file's folder)."""

    @classmethod
    def reads(cls, options: SourceOptions) -> bool:
        return options.labels is not None

    @staticmethod
    def labels_file(options: SourceOptions) -> Path:
        """The file ``data.labels`` names (``demo:digit_sets``: the demo's, written on first use)."""
        if options.labels == DIGIT_SETS:
            if not (DIGIT_SETS_DIR / LABELS_CSV).is_file():
                write_digit_sets(DIGIT_SETS_DIR)
            return DIGIT_SETS_DIR / LABELS_CSV
        return Path(options.labels).expanduser()

    @classmethod
    def named_set(cls, options: SourceOptions) -> None:
        return None  # the images are those the file lists, under data_dir or beside the file

    @classmethod
    def images_root(cls, options: SourceOptions) -> Path:
        if options.data_dir == DIGITS_DATA:  # data_dir left at its default: the paths are the file's neighbours
            return cls.labels_file(options).parent
        return Path(options.data_dir).expanduser()

    @property
    def task(self) -> Task:
        return self.listing().task

    def own_class_names(self) -> list[str]:
        return list(self.list_images(None).class_names)

    def list_images(self, class_names: tuple[str, ...] | None) -> FolderListing:
        require_folder(self.root, f"data.data_dir must be the folder the paths of data.labels "
                                  f"{self.options.labels} are relative to")
        listing = list_labels_file(str(self.labels_file(self.options)), self.root, class_names,
                                   self.options.multilabel)
        for option, value, why in NOT_WITH[listing.task.name](self.options):
            check(not value, f"{option} does not go with data.labels {self.options.labels}, a multi-label set: "
                             f"it {why}")
        return listing


def not_with_label_sets(options: SourceOptions) -> tuple[tuple[str, object, str], ...]:
    """The options a multi-label set cannot take (each needs one class per image): the option, its value, why."""
    return (("data.sampler balanced", options.sampler == "balanced", "draws by class: use model.class_weights"),
            ("data.relabel", options.relabel, "gives one class: edit the labels file instead"),
            ("data.test_dir", options.test_dir, "is a folder of classes: give test rows in the file's split column"))


NOT_WITH = {SINGLE_LABEL.name: lambda options: (), MULTI_LABEL.name: not_with_label_sets}
"""The data options each task cannot take."""
