"""A labels file as a source (``data.labels``, :mod:`..labels_file`): the folder source's checks, split, caches and
loaders, with the images and their classes listed by the file rather than by class folders."""

from __future__ import annotations

from pathlib import Path

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
    def images_root(options: SourceOptions) -> Path:
        if options.data_dir == DIGITS_DATA:  # data_dir left at its default: the paths are the file's neighbours
            return Path(options.labels).expanduser().parent
        return Path(options.data_dir).expanduser()

    def listing(self) -> FolderListing:
        if self._listing is None:
            require_folder(self.root, f"data.data_dir must be the folder the paths of data.labels "
                                      f"{self.options.labels} are relative to")
            self._listing = list_labels_file(self.options.labels, self.root, self.given_class_names)
        return self._listing
