"""Image folders on disk, listed without reading a file: which layout a folder has, its classes, and its image files
with their class and part (:class:`FolderListing`), which gives the classes the command line needs before anything
runs; and the readable images of a test folder (:func:`list_test_folder`, which checks each file)."""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets.folder import make_dataset

from ..errors import UserError
from ..stages import TEST, TRAIN, VAL
from ..tasks import SINGLE_LABEL, Task
from .dataset import Sample
from .image_records import image_records, warn_unreadable

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


SPLIT_FOLDER_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
"""Sub-folders that make a folder pre-split, and the part each one is (case does not matter)."""


class LayoutError(UserError):
    """A data folder that is not laid out as one sub-folder of images per class."""


@dataclass(frozen=True)
class FolderLayout:
    """How ``data_dir`` is laid out: one sub-folder per class, or split into ``train/``, ``val/`` and ``test/``."""

    root: Path
    train: Path | None = None
    """``root/train`` of a pre-split folder; None when ``root`` holds the class folders itself."""
    val: Path | None = None
    test: Path | None = None

    @property
    def presplit(self) -> bool:
        return self.train is not None

    def describe(self) -> str:
        if not self.presplit:
            return f"{self.root} (one folder per class)"
        parts = [f"{path.name}/" for path in (self.train, self.val, self.test) if path is not None]
        return f"{self.root} (split by its folders: {', '.join(parts)})"


def require_folder(root: Path, layout: str) -> None:
    """A one-line error unless ``root`` is an existing folder; ``layout`` says what it should hold."""
    if not root.exists():
        raise LayoutError(f"data folder {root} does not exist: {layout}")
    if not root.is_dir():
        raise LayoutError(f"data path {root} is not a folder: {layout}")


def visible_folders(root: Path) -> list[str]:
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))


def detect_layout(root: Path) -> FolderLayout:
    """Whether ``root`` holds class folders or ``train/`` and ``val/`` (or ``valid/``, ``validation/``), ``test/``."""
    layout = f"expected {root}/<class name>/<image files> or {root}/train/<class name>/ with {root}/val/<class name>/"
    require_folder(root, layout)
    names = visible_folders(root)
    parts: dict[str, list[str]] = {}
    for name in names:
        if name.lower() in SPLIT_FOLDER_NAMES:
            parts.setdefault(SPLIT_FOLDER_NAMES[name.lower()], []).append(name)
    if not parts:
        return FolderLayout(root)
    others = [name for name in names if name.lower() not in SPLIT_FOLDER_NAMES]
    if others:
        raise LayoutError(f"{root} mixes split folders ({', '.join(sum(parts.values(), []))}) with other folders "
                          f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}): {layout}")
    doubled = [folders for folders in parts.values() if len(folders) > 1]
    if doubled:
        raise LayoutError(f"{root} has {' and '.join(doubled[0])}, which are the same part of a split: keep one")
    if "train" not in parts:
        raise LayoutError(f"{root} has {', '.join(sum(parts.values(), []))}/ but no train/ folder: {layout}")
    folder = {part: root / names[0] for part, names in parts.items()}
    return FolderLayout(root, folder["train"], folder.get("val"), folder.get("test"))


def scan_split_part(folder: Path, classes: Sequence[str], reference: Path) -> list[Sample]:
    """The samples of a pre-split folder's ``val/``, whose classes must be those of ``reference`` (``train/``)."""
    extra = sorted(set(visible_folders(folder)) - set(classes))
    _, samples = scan_image_folder(folder, [name for name in classes] + extra)
    present = {target for _, target in samples if target < len(classes)}
    missing = [name for index, name in enumerate(classes) if index not in present]
    if extra or missing:
        differences = ([f"only in {folder.name}/: {', '.join(extra)}"] if extra else []) + (
            [f"in {reference.name}/ but without images in {folder.name}/: {', '.join(missing)}"] if missing else [])
        raise LayoutError(f"{folder} and {reference} must have the same class folders: {'; '.join(differences)}")
    return samples


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
    require_folder(root, layout)
    found = visible_folders(root)
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


def scan_unlabelled(path: Path, option: str = "data.predict_dir") -> list[str]:
    """One image file, or every image file under a folder (recursively, following links to folders); ``option``
    names where the path came from in the one-line errors."""
    if path.is_file():
        if not is_image_file(path):
            raise LayoutError(f"{option} {path} is not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        return [str(path)]
    if not path.is_dir():
        raise LayoutError(f"{option} {path} does not exist: expected an image file or a folder of images")
    files = []
    for folder, subfolders, names in os.walk(path, followlinks=True):  # as torchvision's scan for training does
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files.extend(os.path.join(folder, name) for name in names if is_image_file(name))
    files.sort()
    if not files:
        raise LayoutError(f"{option} {path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


@dataclass(frozen=True)
class FolderListing:
    """Every image file of a folder with its class index and, in a pre-split folder, its part (else None)."""

    layout: FolderLayout
    class_names: tuple[str, ...]
    files: tuple[Sample, ...]
    parts: tuple[str | None, ...]
    task: Task = SINGLE_LABEL
    """Whether each file has a class or, of a multi-label labels file, a label set (:data:`~.dataset.LabelSet`)."""


def list_folder(root: Path, class_names: Sequence[str] | None = None) -> FolderListing:
    """List ``root`` (one folder per class, or ``train/``, ``val/``, ``test/``); ``class_names`` fixes the classes."""
    layout = detect_layout(root)
    if not layout.presplit:
        names, files = scan_image_folder(root, class_names)
        return FolderListing(layout, tuple(names), tuple(files), (None,) * len(files))
    names, files = scan_image_folder(layout.train, class_names)
    parts: list[str | None] = [TRAIN] * len(files)
    for part, folder in ((VAL, layout.val), (TEST, layout.test)):
        if folder is not None:
            more = scan_split_part(folder, names, layout.train)
            files += more
            parts += [part] * len(more)
    return FolderListing(layout, tuple(names), tuple(files), tuple(parts))


def list_test_folder(root: Path, class_names: Sequence[str], verify: bool) -> list[Sample]:
    """The readable labelled images of a test folder laid out like the training one, with its classes."""
    _, samples = scan_image_folder(root, class_names)
    if not verify:
        return samples
    paths = [path for path, _ in samples]
    records = image_records(root, paths, with_hashes=False)
    warn_unreadable(paths, records, root)
    return [sample for sample, record in zip(samples, records) if record.readable]
