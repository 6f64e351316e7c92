"""The user's corrections of a folder, from files the user edits: images to leave out (``data.exclude``) and images
to train under another class (``data.relabel``). The folder itself is never changed.

Both are CSV files with a ``path`` column (``relabel`` also a ``label`` column, a class name), such as
``label_issues.csv`` of ``inspect --predictions`` with the rows to keep. A path is the one ``split.csv``
lists, or relative to ``data_dir``; either way it must name an image of the folder.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import UserError, check
from .listing import FolderListing

EXCLUDED = "excluded"
"""The part ``split.csv`` lists an excluded image in."""


@dataclass(frozen=True)
class Corrections:
    """The resolved paths to leave out, and the class (a name) to train each relabelled path under; ``files``: the
    ``data.exclude`` and ``data.relabel`` files they were read from (for the messages)."""

    exclude: frozenset[Path] = frozenset()
    relabel: dict[Path, str] = field(default_factory=dict)
    files: tuple[str | None, str | None] = (None, None)

    def __bool__(self) -> bool:
        return bool(self.exclude or self.relabel)

    def apply(self, listing: FolderListing) -> tuple[FolderListing, tuple[int, ...]]:
        """``listing`` with the relabelled files under their new class, and the indices of the excluded files.
        A path that names no file of the listing is one line naming the file it came from."""
        if not self:
            return listing, ()
        position = {Path(path).resolve(): index for index, (path, _) in enumerate(listing.files)}
        for option, paths, source in (("data.exclude", self.exclude, self.files[0]),
                                      ("data.relabel", self.relabel, self.files[1])):
            unknown = sorted(str(path) for path in paths if path not in position)
            check(not unknown, f"{option} {source}: {len(unknown)} path(s) name no image of {listing.layout.root} "
                               f"(e.g. {unknown[:1]}): expected paths as split.csv lists them, or relative to it")
        names = list(listing.class_names)
        unknown_classes = sorted({name for name in self.relabel.values() if name not in names})
        check(not unknown_classes, f"data.relabel {self.files[1]}: {', '.join(unknown_classes)} is not a class of "
                                   f"{listing.layout.root} (classes: {', '.join(names)})")
        files = list(listing.files)
        for path, name in self.relabel.items():
            index = position[path]
            files[index] = (files[index][0], names.index(name))
        excluded = tuple(sorted(position[path] for path in self.exclude))
        return replace(listing, files=tuple(files)), excluded


def csv_rows(option: str, source: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of the CSV file ``source`` that ``option`` names, which must have ``columns``; one line if not."""
    path = Path(source).expanduser()
    check(path.is_file(), f"{option} {source} does not exist: expected a CSV file with a "
                          f"{' and a '.join(repr(c) for c in columns)} column")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header, rows = reader.fieldnames or [], list(reader)
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{option} {source} is not a readable CSV file ({error})") from None
    missing = [column for column in columns if column not in header]
    check(not missing, f"{option} {source} has no {' or '.join(repr(c) for c in missing)} column: expected a CSV "
                       f"file with a header row naming {', '.join(columns)}")
    return rows


def read_corrections(exclude: str | None, relabel: str | None, root: Path) -> Corrections:
    """The corrections in the ``data.exclude`` and ``data.relabel`` files (each may be None); relative paths in
    them are taken from the current folder when they exist there (as ``split.csv`` writes them), else from
    ``root``."""

    def resolved(text: str) -> Path:
        path = Path(text).expanduser()
        return (path if path.is_absolute() or path.exists() else root / path).resolve()

    excluded = frozenset(resolved(row["path"]) for row in csv_rows("data.exclude", exclude, ("path",))) \
        if exclude else frozenset()
    relabelled = {resolved(row["path"]): row["label"].strip()
                  for row in csv_rows("data.relabel", relabel, ("path", "label"))} if relabel else {}
    both = sorted(str(path) for path in excluded & relabelled.keys())
    check(not both, f"data.exclude {exclude} and data.relabel {relabel} both name {both[:1]}: "
                    "an image is either left out or relabelled")
    return Corrections(excluded, relabelled, (exclude, relabel))
