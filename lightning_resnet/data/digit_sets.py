"""The offline multi-label demo: images of two or three of scikit-learn's handwritten digits side by side, each
labelled with the set of digits it shows, and the labels file that lists them (``data.labels demo:digit_sets``)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from .digits import digit_ink, written_into_place

log = logging.getLogger(__name__)

DIGIT_SETS = "demo:digit_sets"
"""The ``data.labels`` value of the multi-label demo, written to :data:`DIGIT_SETS_DIR` on first use."""
DIGIT_SETS_DIR = Path("data/digit_sets")
LABELS_CSV = "labels.csv"
DIGIT_SETS_IMAGES = 2000
CELL = 8
"""A digit's side in pixels: the demo's images are 2 x 2 cells of 8 px (16 px, the digits demo's size), two or three
of them holding a digit of a different class, the others blank."""
LAYOUTS = {"grid": (2, 2), "wide": (1, 3), "tall": (3, 1), "wide4": (1, 4)}
"""Rows and columns of cells: the demo's square, and strips of three (3:1 and 1:3) and of four."""


def write_digit_sets(root: Path, count: int = DIGIT_SETS_IMAGES, seed: int = 0, layout: str = "grid") -> None:
    """Write ``count`` images of two or three different digits each, in cells laid out as ``layout`` says
    (:data:`LAYOUTS`), and ``labels.csv`` (``path,labels``) listing them, to ``root``
    (:func:`~.digits.written_into_place`)."""
    rows_of_cells, columns_of_cells = LAYOUTS[layout]
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = digit_ink(digits.images)
    by_class = [np.flatnonzero(digits.target == digit) for digit in range(10)]
    rng = np.random.default_rng(seed)
    with written_into_place(root) as partial:
        (partial / "images").mkdir()
        rows = []
        for index in range(count):
            classes = rng.choice(10, size=int(rng.integers(2, 4)), replace=False)
            cells = rng.choice(rows_of_cells * columns_of_cells, size=len(classes), replace=False)
            canvas = np.zeros((rows_of_cells * CELL, columns_of_cells * CELL), dtype=np.uint8)
            for digit, cell in zip(classes, cells):
                row, column = divmod(int(cell), columns_of_cells)
                example = ink[rng.choice(by_class[digit])]
                canvas[row * CELL:(row + 1) * CELL, column * CELL:(column + 1) * CELL] = example
            name = f"images/{index:05d}.png"
            Image.fromarray(canvas, "L").save(partial / name)
            rows.append((name, " ".join(str(digit) for digit in sorted(classes))))
        with open(partial / LABELS_CSV, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(("path", "labels"))
            writer.writerows(rows)
    log.info("wrote the multi-label digits demo (%d images) to %s", count, root)
