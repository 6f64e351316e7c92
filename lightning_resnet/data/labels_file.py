"""A labels file: the images a folder's class sub-folders would hold, listed in a CSV file instead.

Its columns: ``path`` (relative to ``data.data_dir``, or absolute), ``labels`` (the image's class, or its labels
separated by spaces), and optionally ``split`` (``train``, ``val`` or ``test``: the file is split already, as a
folder with ``train/`` and ``val/`` is). A file where some image has two labels or more is a multi-label set: each
image's target is its label set. Listed without reading an image, into the :class:`~.listing.FolderListing` a folder
gives, so that every check, the split and ``split.csv`` are the folder's.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, check
from ..stages import TEST, TRAIN, VAL
from ..tasks import task_of
from .corrections import csv_rows
from .listing import IMAGE_EXTENSIONS, SPLIT_FOLDER_NAMES, FolderLayout, FolderListing, is_image_file

LABELS_COLUMNS = ("path", "labels")
SPLIT_COLUMN = "split"


@dataclass(frozen=True)
class LabelsFileLayout(FolderLayout):
    """A labels file's layout: its images under ``root``; ``train``, ``val`` and ``test`` are ``root`` for each part
    its ``split`` column names (none without the column)."""

    labels_file: Path = Path()

    def describe(self) -> str:
        parts = [name for name, folder in ((TRAIN, self.train), (VAL, self.val), (TEST, self.test)) if folder]
        split = f", split by its {SPLIT_COLUMN} column: {', '.join(parts)}" if self.presplit else ""
        return f"{self.labels_file} (images under {self.root}{split})"


def check_columns(option: str, columns: list[str]) -> None:
    """One line for a column that is a misspelling of one the file is read by (``splt``: a split column the file
    means to have, which would otherwise be ignored); a warning for any other column, which is not read."""
    read = (*LABELS_COLUMNS, SPLIT_COLUMN)
    for column in columns:
        if column in read:
            continue
        meant = difflib.get_close_matches(column.strip().lower(), [name for name in read if name not in columns],
                                          n=1, cutoff=0.6)
        if meant:
            raise UserError(f"{option}: its column {column!r} is none that is read: did you mean {meant[0]}? (the "
                            f"columns read: {', '.join(read)})")
        warnings.warn(f"{option}: its column {column!r} is not read (the columns read: {', '.join(read)})",
                      stacklevel=3)


def list_labels_file(labels_file: str, root: Path, class_names: Sequence[str] | None = None,
                     multilabel: bool | None = None) -> FolderListing:
    """The images of ``labels_file`` with their class (or label set) and part; ``class_names`` fixes the classes (a
    checkpoint's); ``multilabel`` says whether it is a multi-label set (None: when a row has two labels or more).
    One line naming the file and the row when a path is missing or no image, listed twice, its labels empty or not
    the model's, its class folder not among them, or a split not one of train, val, test."""
    option = f"data.labels {labels_file}"
    rows = csv_rows("data.labels", labels_file, LABELS_COLUMNS)
    check(rows, f"{option} has no rows: expected one row per image with its path and its label")
    check_columns(option, list(rows[0]))
    presplit = SPLIT_COLUMN in rows[0]
    entries: list[tuple[str, tuple[str, ...], str | None]] = []
    first_line: dict[str, int] = {}
    for number, row in enumerate(rows, start=2):
        where = f"{option}, line {number}"
        text = (row["path"] or "").strip()
        check(text, f"{where}: the path is empty: expected an image file relative to {root}")
        path = os.path.normpath(root / Path(text).expanduser())
        check(os.path.isfile(path), f"{where}: {text} does not exist (read as {path}): paths are relative to "
                                    "data.data_dir, or absolute")
        check(is_image_file(path), f"{where}: {text} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        check(path not in first_line, f"{where}: {text} is listed twice (line {first_line.get(path)} too): "
                                      "one row per image")
        first_line[path] = number
        labels = tuple(sorted(set((row["labels"] or "").split())))
        check(labels, f"{where}: {text} has no label: expected its class name (or its labels, separated by "
                      "spaces) in the labels column")
        check(len(labels) == 1 or multilabel is not False,
              f"{where}: {text} has {len(labels)} labels ({' '.join(labels)}) and data.multilabel is false: one "
              "class per image, or data.multilabel true")
        part = None
        if presplit:
            named = (row[SPLIT_COLUMN] or "").strip().lower()
            check(named in SPLIT_FOLDER_NAMES, f"{where}: split {row[SPLIT_COLUMN]!r} of {text}: expected train, "
                                               "val or test")
            part = SPLIT_FOLDER_NAMES[named]
        entries.append((path, labels, part))
    given = multilabel
    task = task_of(any(len(labels) > 1 for _, labels, _ in entries) if given is None else given)
    training = {label for _, labels, part in entries if part in (None, TRAIN) for label in labels}
    check(training, f"{option} has a {SPLIT_COLUMN} column but no train row: expected some images in train")
    names = tuple(class_names) if class_names else tuple(sorted(training))
    check(len(names) >= 2 or task.multi_hot_targets, f"{option}: its training images are of one class only "
                                                      f"({names[0]}): a classifier needs at least two classes")
    what, plural = task.item, task.items
    for number, (path, labels, _) in enumerate(entries, start=2):
        for label in labels:
            check(label in names, f"{option}, line {number}: {label!r} is not a {what} "
                                  f"{'of the model' if class_names else 'of the training rows'} "
                                  f"({plural}: {', '.join(names)})")
        folder = Path(os.path.relpath(path, root)).parts[0]
        check(folder not in names or folder in labels, f"{option}, line {number}: {os.path.relpath(path, root)} is "
              f"in the class folder {folder} but labelled {' '.join(labels)}: the file and the folders disagree")
    parts = {part for _, _, part in entries}
    layout = LabelsFileLayout(root, *(root if presplit and part in parts else None for part in (TRAIN, VAL, TEST)),
                              labels_file=Path(labels_file))
    files = tuple((path, task.target(tuple(names.index(label) for label in labels))) for path, labels, _ in entries)
    return FolderListing(layout, names, files, tuple(part for _, _, part in entries), task)
