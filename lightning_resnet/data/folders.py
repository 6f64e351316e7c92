"""Image folders on disk: layout checks, scanning, the start-up check of each file, and the digits demo."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets.folder import make_dataset

from ..errors import UserError
from .dataset import Sample
from .decode import DECODE_ERRORS

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
DEMO_DATA = "demo:digits"
"""The ``data_dir`` value of the offline demo: scikit-learn's digits, written to :data:`DEMO_DIR` on first use."""
DEMO_DIR = Path("data/digits")


class LayoutError(UserError):
    """A data folder that is not laid out as one sub-folder of images per class."""


def is_image_file(path: str | Path) -> bool:
    """True for a visible file with an image extension (any case); hidden files such as ``._x.jpg`` are not."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> tuple[list[str], list[Sample]]:
    """Class names and samples of a folder with one sub-folder of images per class.

    Hidden folders and files are ignored. Empty class folders are left out with a warning,
    unless ``classes`` fixes the class list (the classes a model was trained on).
    """
    layout = f"expected {root}/<class name>/<image files>"
    if not root.exists():
        raise LayoutError(f"data folder {root} does not exist: {layout}")
    if not root.is_dir():
        raise LayoutError(f"data path {root} is not a folder: {layout}")
    found = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not found:
        raise LayoutError(f"{root} holds no class folders: {layout}")
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise LayoutError(
                f"{root} has {len(found)} class folders and the model {len(classes)} classes: "
                f"{', '.join(unknown)} are not among the model's ({', '.join(classes)})"
            )
        present = {name: index for index, name in enumerate(classes) if name in found}
        return list(classes), make_dataset(root, present, is_valid_file=is_image_file, allow_empty=True)

    samples = make_dataset(root, {name: index for index, name in enumerate(found)},
                           is_valid_file=is_image_file, allow_empty=True)
    counts = Counter(target for _, target in samples)
    empty = [name for index, name in enumerate(found) if not counts[index]]
    if len(empty) == len(found):
        raise LayoutError(f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    if len(found) - len(empty) < 2:
        kept = [name for name in found if name not in empty]
        raise LayoutError(f"{root} has images of one class only ({kept[0]}): a classifier needs at least two "
                          f"class folders, {layout}")
    if empty:
        warnings.warn(f"{root}: left out {len(empty)} empty class folder(s): {', '.join(empty)}", stacklevel=2)
        kept = [name for name in found if name not in empty]
        new_index = {found.index(name): index for index, name in enumerate(kept)}
        return kept, [(path, new_index[target]) for path, target in samples]
    return found, samples


def scan_unlabelled(path: Path) -> list[str]:
    """One image file, or every image file under a folder (recursively, following links to folders)."""
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise LayoutError(f"predict path {path} does not exist: expected an image file or a folder of images")
    files = []
    for folder, subfolders, names in os.walk(path, followlinks=True):  # as torchvision's scan for training does
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files.extend(os.path.join(folder, name) for name in names if is_image_file(name))
    files.sort()
    if not files:
        raise LayoutError(f"{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def unreadable_reason(path: str) -> str | None:
    """Why ``path`` cannot be an image, from its header and its last bytes only; None if it looks whole.

    Finds empty files, files that are no image, and JPEG and PNG files cut short (no end marker).
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        with Image.open(path) as image:
            kind = image.format
        end_marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(kind)
        if end_marker:
            with open(path, "rb") as handle:
                handle.seek(max(0, size - 1024))
                if end_marker not in handle.read():
                    return f"truncated {kind}"
    except DECODE_ERRORS as error:
        return str(error) or type(error).__name__
    return None


def without_unreadable(samples: list[Sample], where: Path) -> list[Sample]:
    """``samples`` less the files that :func:`unreadable_reason` rejects, named in one warning."""
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        reasons = list(pool.map(unreadable_reason, [path for path, _ in samples]))
    bad = [(path, reason) for (path, _), reason in zip(samples, reasons) if reason]
    if bad:
        listed = "; ".join(f"{path} ({reason})" for path, reason in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        warnings.warn(f"{where}: left out {len(bad)} unreadable image(s) of {len(samples)}: {listed}{more}",
                      stacklevel=2)
    return [sample for sample, reason in zip(samples, reasons) if not reason]


def write_digits_demo(root: Path) -> None:
    """Write scikit-learn's 1,797 handwritten digits (8x8, 10 classes) as an ImageFolder tree of PNGs.

    The tree is written to a temporary folder beside ``root`` and renamed into place, so that
    an interrupted write or a second process never leaves a partial data set at ``root``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
            folder = partial / str(label)
            folder.mkdir(exist_ok=True)
            ink = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(ink, "L").save(folder / f"{index:04d}.png")
        partial.rename(root)
        log.info("wrote the scikit-learn digits demo (%d images) to %s", len(digits.target), root)
    except OSError:
        if not root.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
