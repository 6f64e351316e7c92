"""Data sets by name: ``data.data_dir cifar10`` (or ``cifar100``, ``mnist``, ``fashion_mnist``, ``imagenette``,
``imagenette320``, ``imagenette160``) is downloaded once through torchvision's data set class into this project's
cache and written as the image folder the rest of the data reads, split as its authors split it: ``train/`` and
``test/`` of one folder per class (validation is ``data.val_fraction`` of ``train/``). ``demo:digits`` is a name
too: scikit-learn's digits, which need no download (:mod:`.digits`).

A folder that exists under the name wins over it. A copy a Linux distribution installed (:data:`SYSTEM_COPIES`:
Debian's ``dataset-fashion-mnist``) is read before anything is downloaded. Without a network, the download fails in
one line that names the files to fetch and where to put them; torchvision checks their MD5 when it reads them.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import os
import shutil
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from PIL import Image

from ..errors import UserError
from .cache import cache_dir
from .digits import DIGITS_DATA, DIGITS_DIR, write_digits, written_into_place

TRAIN_PART, TEST_PART = "train", "test"
DOWNLOAD_FAILURES = (OSError, RuntimeError, urllib.error.URLError)
"""What torchvision raises when a download cannot be made (no network, a refused connection, a wrong checksum)."""


@dataclass(frozen=True)
class NamedDataSet:
    """A data set that ``data.data_dir`` names: where its image folder is, and how it is written there."""

    name: str
    folder: Path
    write: Callable[[Path], None]
    """Writes the image folder at the path it is given (through :func:`~.digits.written_into_place`)."""
    classes: int
    """How many classes it has, known before it is downloaded (what ``summary`` needs)."""

    def written(self) -> Path:
        """The image folder, written first if it is not there yet: by one process at a time (the processes of a
        DDP run each read the data's classes when they start), the others waiting, then reading it."""
        if not self.folder.is_dir():
            from filelock import FileLock

            self.folder.parent.mkdir(parents=True, exist_ok=True)
            lock = self.folder.parent / ".writing.lock"
            try:
                with FileLock(lock):
                    if not self.folder.is_dir():
                        self.write(self.folder)
            except UserError:  # nothing written: no empty folder or lock file left in the cache
                for empty in (self.folder.parent / "download", self.folder.parent):
                    lock.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        empty.rmdir()
                raise
        return self.folder


def datasets_dir() -> Path:
    """Where the data sets by name are kept: ``<cache>/datasets/<name>/`` holds ``download/`` (torchvision's
    files) and ``images/`` (the folder this project reads)."""
    return cache_dir() / "datasets"


def torchvision_class(name: str) -> type:
    import torchvision.datasets as datasets  # the data set classes are imported by the run that downloads

    return getattr(datasets, name)


def class_folder(name: str | tuple[str, ...]) -> str:
    """A class's folder name: its first name (Imagenette gives several), a path separator made ``_``
    (Fashion-MNIST's ``T-shirt/top``)."""
    first = name[0] if isinstance(name, tuple) else name
    return first.replace(os.sep, "_")


OfficialFile = tuple[str, Path, str]
"""A file torchvision downloads for a data set: its URL, where torchvision looks for it, and its MD5."""


def official_files(class_name: str, download: Path, size: str = "") -> list[OfficialFile]:
    """The files torchvision downloads for the data set."""
    kind = torchvision_class(class_name)
    if class_name == "Imagenette":
        # torchvision keeps Imagenette's archives in a private table: read, not copied, so the line names its URL
        url, md5 = kind._ARCHIVES[size]
        return [(url, download / Path(url).name, md5)]
    if hasattr(kind, "mirrors"):  # MNIST and Fashion-MNIST: four files under <class name>/raw
        return [(kind.mirrors[0] + file, download / class_name / "raw" / file, md5) for file, md5 in kind.resources]
    return [(kind.url, download / kind.filename, kind.tgz_md5)]


def fetched(name: str, files: list[OfficialFile], parts: Callable[[bool], dict[str, Any]]) -> dict[str, Any]:
    """The data set's parts as torchvision reads them (``parts(download)``), downloaded first if they are not there;
    a failed download is one line that says what to fetch and where to put it, or which file there is not the one
    expected. Offline, that line is the only one: the server is tried before the download is announced."""
    with contextlib.suppress(*DOWNLOAD_FAILURES):
        return parts(False)  # there already: extracted, or placed by hand
    missing = [url for url, path, _ in files if not path.exists()]
    unreachable = unreachable_host(missing[0]) if missing else None
    if unreachable:
        raise cannot_download(name, files, f"could not download it ({unreachable}): ")
    rank_zero_info(f"data: downloading the {name} data set into {files[0][1].parent} (once)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # torchvision prints each mirror it tries
            return parts(True)
    except DOWNLOAD_FAILURES as error:
        from torchvision.datasets.utils import check_integrity

        placed = [path for _, path, md5 in files if path.exists() and not check_integrity(str(path), md5)]
        reason = (f"{', '.join(map(str, placed))} is there but is not the file torchvision expects (another checksum): "
                  "delete it, and " if placed else f"could not download it ({' '.join(str(error).split())}): ")
        raise cannot_download(name, files, reason) from None


def unreachable_host(url: str, timeout: float = 10.0) -> str | None:
    """Why the server of ``url`` cannot be reached (no network, a refused connection), or None when it can."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                 timeout=timeout).close()
    except OSError as error:
        return f"{parts.hostname}: {error.strerror or error}"
    return None


def cannot_download(name: str, files: list[OfficialFile], reason: str) -> UserError:
    wanted = "; ".join(f"{url} as {path}" for url, path, _ in files)
    return UserError(f"data.data_dir {name}: {reason}on a machine with a network, download {wanted}, then run "
                     "again (or give data.data_dir a folder of images)")


def wrote(name: str, counts: dict[str, int], images: Path) -> None:
    """Say where a data set by name was written, and how many images each part has."""
    parts = " + ".join(f"{count:,} {part}" for part, count in counts.items())
    rank_zero_info(f"data: wrote the {name} data set ({parts} images) to {images}")


SYSTEM_COPIES: dict[str, Path] = {"FashionMNIST": Path("/usr/share/datasets/fashion-mnist")}
"""Where a distribution's package installs a data set torchvision would download (``apt install
dataset-fashion-mnist``): the same four gzipped IDX files."""


def idx_array(data: bytes, dimensions: int) -> tuple[int, ...] | None:
    """The shape of ``data`` when it is an IDX file of unsigned bytes with ``dimensions`` axes, 28 x 28 pixels
    (images) or labels 0-9; else None."""
    header = 4 + 4 * dimensions
    if data[:4] != bytes([0, 0, 8, dimensions]) or len(data) < header:
        return None
    shape = tuple(int.from_bytes(data[4 + 4 * axis : 8 + 4 * axis], "big") for axis in range(dimensions))
    if len(data) != header + int(np.prod(shape)) or shape[1:] not in ((), (28, 28)):
        return None
    return shape if dimensions > 1 or max(data[header:], default=0) <= 9 else None


def place_system_copy(class_name: str, files: list[OfficialFile]) -> Path | None:
    """Put a distribution's copy of the data set where torchvision reads it, uncompressed, unless torchvision's own
    files are there, and when each of its files parses as the array expected and each part has as many labels as
    images (its files are recompressed, so torchvision's MD5s of the ``.gz`` files do not apply); the copy's
    folder, or None."""
    folder = SYSTEM_COPIES.get(class_name)
    targets = [path.with_suffix("") for _, path, _ in files]
    if folder is None or any(path.exists() for path in targets) or not all(
            (folder / path.name).is_file() for _, path, _ in files):
        return None
    arrays = {path.with_suffix(""): gzip.decompress((folder / path.name).read_bytes()) for _, path, _ in files}
    shapes = {path.name: idx_array(data, 3 if "images" in path.name else 1) for path, data in arrays.items()}
    counts = {name.replace("images-idx3", "labels-idx1"): shape[0] for name, shape in shapes.items()
              if shape and "images" in name}
    if None in shapes.values() or any(shapes.get(name, (None,))[0] != count for name, count in counts.items()):
        return None
    for path, data in arrays.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def write_arrays(name: str, class_name: str) -> Callable[[Path], None]:
    """The writer of a data set that torchvision holds as arrays of pixels (CIFAR, MNIST): one PNG per image."""

    def write(images: Path) -> None:
        download = images.parent / "download"
        kind = torchvision_class(class_name)
        files = official_files(class_name, download)
        if (copy := place_system_copy(class_name, files)) is not None:
            rank_zero_info(f"data: reading the {name} data set from {copy} (a copy installed on this machine)")
        parts = fetched(name, files, lambda fetch: {
            part: kind(str(download), train=part == TRAIN_PART, download=fetch) for part in (TRAIN_PART, TEST_PART)})
        with written_into_place(images) as partial:
            for part, data in parts.items():
                folders = [partial / part / class_folder(label) for label in data.classes]
                for folder in folders:
                    folder.mkdir(parents=True)
                for index, (pixels, target) in enumerate(zip(data.data, data.targets)):
                    Image.fromarray(np.asarray(pixels)).save(folders[int(target)] / f"{index:05d}.png")
        wrote(name, {part: len(data.targets) for part, data in parts.items()}, images)

    return write


def write_imagenette(name: str, size: str) -> Callable[[Path], None]:
    """The writer of an Imagenette size: torchvision's JPEG files linked (not copied) under class names, its
    ``val`` split as ``test/``."""

    def write(images: Path) -> None:
        download = images.parent / "download"
        files = official_files("Imagenette", download, size)
        kind = torchvision_class("Imagenette")
        splits = {TRAIN_PART: "train", TEST_PART: "val"}
        parts = fetched(name, files, lambda fetch: {
            part: kind(str(download), split=split, size=size, download=fetch) for part, split in splits.items()})
        extracted = download / Path(files[0][0]).stem  # where torchvision extracts the archive
        with written_into_place(images) as partial:
            for part, data in parts.items():
                for wnid, label in zip(data.wnids, data.classes):
                    shutil.copytree(extracted / splits[part] / wnid, partial / part / class_folder(label),
                                    copy_function=os.link)
        wrote(name, {part: len(data) for part, data in parts.items()}, images)

    return write


Writer = Callable[[Path], None]
DOWNLOADED: dict[str, tuple[int, Callable[[str], Writer]]] = {
    "cifar10": (10, lambda name: write_arrays(name, "CIFAR10")),
    "cifar100": (100, lambda name: write_arrays(name, "CIFAR100")),
    "mnist": (10, lambda name: write_arrays(name, "MNIST")),
    "fashion_mnist": (10, lambda name: write_arrays(name, "FashionMNIST")),
    "imagenette": (10, lambda name: write_imagenette(name, "full")),
    "imagenette320": (10, lambda name: write_imagenette(name, "320px")),
    "imagenette160": (10, lambda name: write_imagenette(name, "160px")),
}
"""Each name that is downloaded: its number of classes, and the writer of its folder."""
NAMES = (DIGITS_DATA, *DOWNLOADED)
NOT_BY_NAME = {"imagenet": "ImageNet is not downloaded by name (its archives need an account at image-net.org): "
                           "give its folder, train/<class>/ and val/<class>/"}
"""Names a user may try that no download here can serve, and what to do instead."""


def named_data_set(data_dir: str) -> NamedDataSet | None:
    """The data set ``data_dir`` names, or None when it is a path (a folder that exists wins over a name)."""
    if data_dir == DIGITS_DATA:
        return NamedDataSet(DIGITS_DATA, DIGITS_DIR, write_digits, classes=10)
    if data_dir not in DOWNLOADED or Path(data_dir).is_dir():
        return None
    classes, writer = DOWNLOADED[data_dir]
    return NamedDataSet(data_dir, datasets_dir() / data_dir / "images", writer(data_dir), classes)


def neither_folder_nor_name(data_dir: str) -> str:
    """The line for a ``data_dir`` that is neither a folder nor a name: the names, and the closest one."""
    if data_dir.lower() in NOT_BY_NAME:
        return f"data.data_dir {data_dir}: no such folder; {NOT_BY_NAME[data_dir.lower()]}"
    close = difflib.get_close_matches(data_dir.lower(), NAMES, n=1, cutoff=0.6)
    return (f"data.data_dir {data_dir}: no folder {data_dir} (expected {data_dir}/<class name>/<image files>), "
            f"nor a data set by name ({', '.join(NAMES)})"
            + (f": did you mean {close[0]}?" if close else ""))
