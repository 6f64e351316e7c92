"""What ``converted.json`` says of a data set written by ``convert``, read once and checked (:class:`ConvertedData`),
and where its files are: a local folder, a shared file system or a bucket URL. :mod:`.converted` reads the data set;
:mod:`..convert` writes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError, check
from ...stages import TRAIN, VAL
from ..decode import decode_problem
from ..normalization import Normalization

MANIFEST = "converted.json"
FORMAT = "lightning_resnet streaming images 1"
URL_SCHEMES = ("s3://", "gs://", "azure://", "hf://")
"""Object stores LitData streams from; a ``data_dir`` that starts with one is a converted data set."""
LITDATA_INDEX = "index.json"
"""The file of each part that lists its chunks (LitData's)."""


def use_litdata() -> None:
    """Before LitData's first import: it asks PyPI for a newer version of itself otherwise (a 30 s timeout
    on a machine without network)."""
    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")


def is_url(data_dir: str) -> bool:
    return str(data_dir).startswith(URL_SCHEMES)


def is_converted(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` names a converted data set (a URL, or a folder with ``converted.json``)."""
    return is_url(str(data_dir)) or (Path(data_dir).expanduser() / MANIFEST).is_file()


def join(root: str, *names: str) -> str:
    return "/".join([root.rstrip("/"), *names]) if is_url(root) else str(Path(root, *names))


def fold_part(fold: int) -> str:
    return f"fold_{fold}"


@dataclass(frozen=True)
class ConvertedData:
    """What ``converted.json`` says of a converted data set, read once."""

    root: str
    class_names: tuple[str, ...]
    class_counts: dict[str, tuple[int, ...]]
    """Images of each class in each part (``train``, ``val``, or ``fold_0`` ... with folds; ``test`` when there is
    one)."""
    max_side: int | None
    num_folds: int | None
    """The number of fold parts, when converted with ``data.num_folds``."""
    normalizations: tuple[Normalization, ...]
    """The training split's mean and std, measured at conversion with ``data.normalize: auto``: one, or one per
    fold (of the other folds' images); empty when not measured."""
    source: str

    def part(self, name: str) -> str:
        return join(self.root, name)

    def has(self, part: str) -> bool:
        return part in self.class_counts

    def size(self, part: str) -> int:
        return sum(self.class_counts.get(part, ()))

    def labelled_parts(self) -> list[str]:
        """The parts training and validation draw from: ``train`` and ``val``, or every fold's."""
        return [TRAIN, VAL] if self.num_folds is None else [fold_part(fold) for fold in range(self.num_folds)]

    def training_parts(self, fold: int) -> list[str]:
        """The parts fold ``fold`` trains on: ``train``, or every other fold's part."""
        if self.num_folds is None:
            return [TRAIN]
        return [part for part in self.labelled_parts() if part != fold_part(fold)]

    def validation_part(self, fold: int) -> str:
        return VAL if self.num_folds is None else fold_part(fold)

    def class_counts_of(self, parts: Sequence[str]) -> list[int]:
        return [sum(column) for column in zip(*(self.class_counts[part] for part in parts))]

    def run_part(self, part: str, fold: int) -> str:
        """The part (train, val, test) an image of conversion part ``part`` is in for a run of fold ``fold``."""
        if self.num_folds is None or not part.startswith("fold_"):
            return part
        return VAL if part == fold_part(fold) else TRAIN

    def describe(self, fold: int) -> str:
        """The line a run starts with, as a folder's run starts with its split."""
        parts = ", ".join(f"{self.size(part)} {part}" for part in self.class_counts)
        held_out = f"; fold {fold} ({fold + 1} of {self.num_folds}) validates" if self.num_folds else ""
        return (f"data: {self.root}, converted (LitData) from {self.source}, {len(self.class_names)} classes, "
                f"the conversion's split: {parts} images{held_out}")


def read_text(root: str, name: str) -> str:
    """A file of a converted data set, local or in a bucket (obstore, which LitData installs)."""
    if not is_url(root):
        return Path(root, name).read_text()
    from obstore import get
    from obstore.store import from_url

    return bytes(get(from_url(root), name).bytes()).decode()


def read_converted(data_dir: str) -> ConvertedData:
    """The manifest of ``data_dir``, checked: each part's index present and its chunks whole (local folders)."""
    root = data_dir if is_url(data_dir) else str(Path(data_dir).expanduser())
    try:
        manifest = json.loads(read_text(root, MANIFEST))
    except FileNotFoundError:
        raise UserError(f"data.data_dir {data_dir}: no {MANIFEST}; convert a folder with "
                        "python -m lightning_resnet convert --data.data_dir FOLDER --output DIR") from None
    except (OSError, ValueError) as error:
        raise UserError(f"data.data_dir {data_dir}: cannot read {MANIFEST} ({decode_problem(error)})") from None
    check(isinstance(manifest, dict) and manifest.get("format") == FORMAT,
          f"data.data_dir {data_dir}: {MANIFEST} is not a data set written by lightning_resnet convert")
    converted = ConvertedData(
        root=root,
        class_names=tuple(manifest["class_names"]),
        class_counts={part: tuple(counts) for part, counts in manifest["class_counts"].items()},
        max_side=manifest.get("max_side"),
        num_folds=manifest.get("num_folds"),
        normalizations=tuple(Normalization(tuple(stats["mean"]), tuple(stats["std"]))
                             for stats in manifest.get("normalizations", [manifest.get("normalization")]) if stats),
        source=manifest.get("source", ""),
    )
    if not is_url(root):
        for part in converted.class_counts:
            check_chunks(Path(converted.part(part)))
    return converted


def check_chunks(folder: Path) -> None:
    """Each chunk the part's index lists is there with the size it lists: LitData would wait for a short chunk
    to finish downloading, for ever, and fail on a missing one deep inside a loader worker."""
    index_file = folder / LITDATA_INDEX
    try:
        chunks = json.loads(index_file.read_text())["chunks"]
    except FileNotFoundError:
        raise UserError(f"data.data_dir: {index_file} is missing: the conversion did not finish; convert again") \
            from None
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"data.data_dir: {index_file} is damaged ({decode_problem(error)}); convert again") from None
    for chunk in chunks:
        file = folder / chunk["filename"]
        size = file.stat().st_size if file.is_file() else None
        check(size == chunk["chunk_bytes"],
              f"data.data_dir: chunk {file} is {'missing' if size is None else f'{size} bytes'}, its index says "
              f"{chunk['chunk_bytes']} bytes: the conversion was cut short or the file is damaged; convert again")
