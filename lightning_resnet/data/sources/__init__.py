"""The sources of labelled images, one file each behind :class:`~.base.ImageSource`; :func:`open_source` picks the
first that reads a ``data_dir``. A new source is a new file here and a line in :data:`SOURCES`."""

from __future__ import annotations

from .base import ImageSource, SamplerKind, SourceOptions
from .converted import ConvertedSource
from .folder import FolderSource
from .labels_file import LabelsFileSource

SOURCES: tuple[type[ImageSource], ...] = (LabelsFileSource, ConvertedSource, FolderSource)
"""In the order they are asked whether they read the options; the folder, which reads any path, comes last."""


def open_source(options: SourceOptions) -> ImageSource:
    """The source that reads ``options``."""
    kind = next(source for source in SOURCES if source.reads(options))
    return kind(options)


__all__ = [
    "SOURCES",
    "ConvertedSource",
    "FolderSource",
    "ImageSource",
    "LabelsFileSource",
    "SamplerKind",
    "SourceOptions",
    "open_source",
]
