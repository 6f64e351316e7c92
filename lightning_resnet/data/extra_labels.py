"""Images labelled by a model rather than a person (``pseudo_labels.csv`` of ``pseudo_label``), added to the
training part of a run with ``data.extra_labels``: never to validation or test, which must stay the person's
labels. ``split.csv`` lists them in a part of their own, :data:`PSEUDO`.

The file has a ``path`` column (absolute, or relative to the current folder) and a ``label`` column (a class of the
folder; in a multi-label set, the image's labels separated by spaces); its images lie outside the labelled folder,
whose images have a person's labels already.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError, check
from ..tasks import SINGLE_LABEL, Task
from .corrections import csv_rows
from .dataset import Sample
from .hashing import content_digest
from .listing import is_image_file

PSEUDO = "pseudo"
"""The part ``split.csv`` lists an image of ``data.extra_labels`` in."""


def read_extra_labels(source: str, class_names: Sequence[str], labelled_root: Path,
                      task: Task = SINGLE_LABEL) -> list[Sample]:
    """The ``(path, target)`` samples of the ``data.extra_labels`` file ``source``, each target as ``task`` has it
    (a class index, or a label set); one line naming the file and the first bad row when a path is missing, is no
    image, lies in ``labelled_root``, or a label is none of the classes."""
    option = f"data.extra_labels {source}"
    rows = csv_rows("data.extra_labels", source, ("path", "label"))
    root = labelled_root.resolve()
    samples: list[Sample] = []
    for number, row in enumerate(rows, start=2):
        path = Path(row["path"]).expanduser().resolve()
        labels = task.written_labels(row["label"])
        check(path.is_file(), f"{option}, line {number}: {row['path']} does not exist")
        check(is_image_file(path), f"{option}, line {number}: {row['path']} is not an image file")
        check(not path.is_relative_to(root), f"{option}, line {number}: {row['path']} is an image of the labelled "
                                             f"folder {labelled_root}, which has its label already: the file must "
                                             "name images from elsewhere (what pseudo_label read)")
        check(bool(labels), f"{option}, line {number}: {row['label']!r}: expected {task.written_labels_expected}")
        unknown = [label for label in labels if label not in class_names]
        if unknown:
            raise UserError(f"{option}, line {number}: {unknown[0]!r} is not a class of {labelled_root} "
                            f"(classes: {', '.join(class_names)})")
        samples.append((str(path), task.target(tuple(sorted(class_names.index(label) for label in labels)))))
    if not samples:
        warnings.warn(f"{option} names no image (the model was sure of none): training on the labelled images alone",
                      stacklevel=2)
    return samples


def refuse_copies_of_held_out(source: str, samples: list[Sample], held_out: Sequence[str]) -> None:
    """One line when an image of ``data.extra_labels`` is an exact copy of a validation or test image (the same
    bytes): trained on, it would leak that image into training (only files of a size some such image has are
    read)."""
    sizes = {Path(path).stat().st_size for path, _ in samples}
    digests = {content_digest(Path(path).read_bytes()): path for path in held_out
               if Path(path).is_file() and Path(path).stat().st_size in sizes}
    for path, _ in samples:
        copied = digests.get(content_digest(Path(path).read_bytes())) if digests else None
        if copied is not None:
            raise UserError(f"data.extra_labels {source}: {path} is a copy of the held-out image {copied}, which would "
                            "leak into training: leave it out of the file")
