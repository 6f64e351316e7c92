"""The offline data set of the demo: scikit-learn's handwritten digits, which ship inside the installed package."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

DIGITS_DATA = "demo:digits"
"""The ``data_dir`` value of the offline demo: scikit-learn's digits, written to :data:`DIGITS_DIR` on first use."""
DIGITS_DIR = Path("data/digits")


@contextmanager
def written_into_place(root: Path) -> Iterator[Path]:
    """A temporary folder beside ``root`` to write a demo data set into, renamed to ``root`` when the block ends, so
    that an interrupted write or a second process never leaves a partial data set at ``root`` (a second process
    that renamed first wins)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        yield partial
        partial.rename(root)
    except OSError:
        if not root.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def digit_ink(pixels: np.ndarray) -> np.ndarray:
    """scikit-learn's digit pixels (0-16) as 8-bit grey levels."""
    return np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)


def write_digits(root: Path) -> None:
    """Write scikit-learn's 1,797 handwritten digits (8x8, 10 classes) as an ImageFolder tree of PNGs
    (:func:`written_into_place`)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    with written_into_place(root) as partial:
        for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
            folder = partial / str(label)
            folder.mkdir(exist_ok=True)
            Image.fromarray(digit_ink(pixels), "L").save(folder / f"{index:04d}.png")
    log.info("wrote the scikit-learn digits demo (%d images) to %s", len(digits.target), root)
