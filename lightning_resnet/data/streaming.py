"""A folder converted to LitData's streaming format: ``convert`` writes it, the data module reads it.

A converted data set ``DIR`` (a local folder, a shared file system or a bucket URL) holds:

- ``converted.json``: the classes, the images of each part and class, ``max_side``, the training split's
  mean and std when they were measured (``data.normalize: auto``; one per fold), and the folder it came from;
- ``split.csv``: the split it was made with, as a run writes it (with folds, each image's fold part);
- ``train/``, ``val/`` and ``test/``: one LitData data set each (``index.json`` and chunk files), each
  sample an image file's bytes (or a smaller JPEG with ``--max_side``), its class index and its path.
  Converted with ``data.num_folds K``, ``fold_0/`` to ``fold_<K-1>/`` take the place of ``train/`` and ``val/``:
  each image is stored once, and fold F trains on the other folds' parts and validates on ``fold_F/``.

Training on ``train/`` streams it (LitData's shuffle, shared out among processes and workers by LitData);
training on several fold parts reads them by index in the folder's own shuffle (:class:`IndexedImages`).

Decoding, EXIF, CMYK and 16-bit handling stay this project's own (:mod:`.decode`): the samples are the
files' bytes. LitData itself is imported only by a run that reads or writes this format.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
import multiprocessing
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..errors import UserError, check
from ..stages import TEST, TRAIN, VAL
from .decode import DECODE_ERRORS, decode_problem, to_rgb
from .normalization import Normalization
from .splits import SPLIT_CSV, split_rows_of, write_split_csv

if TYPE_CHECKING:
    from torch import Tensor

    from .datamodule import ImageFolderDataModule
    from .dataset import Sample

MANIFEST = "converted.json"
FORMAT = "lightning_resnet streaming images 1"
URL_SCHEMES = ("s3://", "gs://", "azure://", "hf://")
"""Object stores LitData streams from; a ``data_dir`` that starts with one is a converted data set."""
SampleTarget = Literal["label", "path"]
"""What a sample read from a converted part comes with: its class index, or its path (out-of-fold predictions)."""
INDEX = "index.json"
CHUNK_BYTES = "64MB"  # LitData's advice for images; a chunk is the unit each loader worker downloads and reads
JPEG_QUALITY = 90


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
    """Each chunk the index lists is there with the size it lists: LitData would wait for a short chunk
    to finish downloading, for ever, and fail on a missing one deep inside a loader worker."""
    index_file = folder / INDEX
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


# ----- writing -------------------------------------------------------------------------------------


def encoded_sample(item: tuple[str, int], max_side: int | None) -> dict[str, Any]:
    """One sample as LitData stores it: the file's bytes, or with ``max_side`` a JPEG whose longer side is at
    most that (a file already that small is kept as it is), its class index and its path."""
    path, target = item
    data = Path(path).read_bytes()
    if max_side is not None:
        data = shrunk(data, max_side)
    # the path as bytes: LitData stores a string that names an existing image file as that image, decoded
    return {"image": data, "label": target, "path": str(path).encode()}


def shrunk(data: bytes, max_side: int) -> bytes:
    """``data`` as a JPEG with its longer side at most ``max_side``, EXIF orientation applied; unchanged when
    it is no larger. A photo-sized JPEG decodes in a fraction of a phone-sized one's time (FFCV's trick)."""
    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= max_side:
            return data
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that is enough
        image = to_rgb(ImageOps.exif_transpose(image))
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue()


def convert_folder(data: ImageFolderDataModule, output: Path, max_side: int | None, num_workers: int) -> str:
    """Write ``data``'s split (or its folds, under ``data.num_folds``) as a converted data set in ``output``;
    returns what was written, in a line."""
    check(max_side is None or max_side >= 1, f"--max_side must be a positive number of pixels, got {max_side}")
    check(not output.exists() or (output.is_dir() and not any(output.iterdir())),
          f"--output {output} exists and is not empty: name a new folder (nothing is overwritten)")
    check(data.converted is None, f"data.data_dir {data.data_dir} is a converted data set already")
    use_litdata()
    from functools import partial

    from litdata import optimize

    if data.num_folds is None:
        parts = dict(zip((TRAIN, VAL), data.split()))
    else:
        parts = {fold_part(fold): samples for fold, samples in enumerate(data.fold_samples())}
    if data.has_test_set:
        parts[TEST] = data.test_samples()
    names = data.class_names
    output.mkdir(parents=True, exist_ok=True)
    for part, samples in parts.items():
        # LitData's shuffle mixes the order of chunks and of the items within a few chunks, not across
        # the whole set: the items go in already shuffled, so a chunk is never one class
        order = list(samples)
        random.Random(data.seed).shuffle(order)
        print(f"{part}: {len(order)} images")
        optimize(fn=partial(encoded_sample, max_side=max_side), inputs=order, output_dir=str(output / part),
                 chunk_bytes=CHUNK_BYTES, num_workers=max(1, min(num_workers, len(order))), reorder_files=False,
                 keep_data_ordered=True, mode="overwrite", start_method="fork")
    counts = {part: [sum(target == index for _, target in samples) for index in range(len(names))]
              for part, samples in parts.items()}
    manifest = {"format": FORMAT, "class_names": names, "class_counts": counts, "max_side": max_side,
                "num_folds": data.num_folds,
                "normalizations": [{"mean": list(stats.mean), "std": list(stats.std)}
                                   for stats in training_normalizations(data, parts)],
                "source": str(data.data_dir.resolve())}
    write_split_csv(output / SPLIT_CSV, conversion_rows(data, parts))
    (output / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(len(samples) for samples in parts.values())
    size = sum(file.stat().st_size for file in output.rglob("*.bin"))
    shares = ", ".join(f"{part} {len(samples)}" for part, samples in parts.items())
    return (f"converted {total} images of {len(names)} classes ({shares}) into {output}: "
            f"{size / 2**20:.1f} MiB of chunks"
            + (f", longer sides at most {max_side} px" if max_side else ""))


def training_normalizations(data: ImageFolderDataModule, parts: dict[str, list[Sample]]) -> list[Normalization]:
    """Under ``data.normalize: auto``, the training split's statistics: one, or each fold's (of the other folds)."""
    if data.normalize != "auto":
        return []
    if data.num_folds is None:
        return [data.normalization]
    return [data.measured_normalization([sample for other in range(data.num_folds) if other != fold
                                         for sample in parts[fold_part(other)]])
            for fold in range(data.num_folds)]


def conversion_rows(data: ImageFolderDataModule, parts: dict[str, list[Sample]]) -> list[tuple[str, str, str]]:
    """The conversion's ``split.csv``: each image with the part it is stored in, then the excluded ones."""
    names = data.class_names
    rows = [(path, part, names[target]) for part, samples in parts.items() for path, target in samples]
    return rows + [row for row in data.split_rows() if row[1] not in (TRAIN, VAL, TEST)]


# ----- reading -------------------------------------------------------------------------------------


def read_split_rows(converted: ConvertedData, fold: int) -> list[tuple[str, str, str]]:
    """``split.csv`` of a run of fold ``fold``: the conversion's, each image in the part the run puts it in."""
    return [(path, converted.run_part(part, fold), name)
            for path, part, name in split_rows_of(read_text(converted.root, SPLIT_CSV))]


@cache
def streaming_images_class() -> type:
    """:class:`StreamingImages`, made on first use: LitData is imported when a run reads a converted data set."""
    use_litdata()
    from litdata import StreamingDataset

    from .dataset import count_unreadable, seeded
    from .samplers import sample_seed

    class StreamingImages(StreamingDataset):
        """One part of a converted data set, each sample decoded and cropped by this project's ``view``.

        Streamed (iterated by LitData's loader), training samples are shuffled by LitData, and with ``drop_last``
        the last uneven items are left out (so that every process takes the same number of batches); each
        sample's augmentation is seeded by ``(seed, epoch, index)``, as in :class:`~.samplers.ResumableShuffle`,
        so a resumed epoch repeats it. :meth:`read` reads one sample by index instead.
        """

        def __init__(self, part: str, view: Callable[..., Tensor], augmentation: Callable[[Tensor], Tensor] | None,
                     seed: int, shuffle: bool, drop_last: bool, skipped: Any, target: SampleTarget,
                     batch_decode: int | str = "auto") -> None:
            super().__init__(part, shuffle=shuffle, drop_last=drop_last, seed=seed, batch_decode=batch_decode)
            self.view = view
            self.augmentation = augmentation
            self.skipped = skipped
            self.target = target

        def __getitem__(self, index: Any) -> tuple[Tensor, int | str] | None:
            number = getattr(index, "index", index)
            return self.read(index, sample_seed(self.seed, self.current_epoch, number))

        def read(self, index: Any, key: int | None) -> tuple[Tensor, int | str] | None:
            """Sample ``index`` as ``(crop, label)`` (or ``(crop, path)``), its augmentation seeded by ``key``."""
            item = super().__getitem__(index)
            path = item["path"]  # bytes (a memoryview) when streamed, already text when read by index
            path = path if isinstance(path, str) else bytes(path).decode()
            try:
                with seeded(key):
                    image = self.view(path, item["image"])
                    image = self.augmentation(image) if self.augmentation else image
                    return image, (path if self.target == "path" else item["label"])
            except DECODE_ERRORS as error:
                count_unreadable(self.skipped, path, error)
                return None

    return StreamingImages


def streamed_images(converted: ConvertedData, view: Callable[..., Tensor],
                    augmentation: Callable[[Tensor], Tensor] | None, seed: int, drop_last: bool) -> Any:
    """The ``train`` part, streamed in LitData's shuffle."""
    return streaming_images_class()(converted.part(TRAIN), view, augmentation, seed, True, drop_last,
                                    multiprocessing.Value("i", 0), "label")


class IndexedImages(Dataset):
    """Parts of a converted data set read by index, one after the other, as one data set.

    Evaluation reads its part so, in order, so that it shares its images out among processes as the folder path
    does (each counted once): LitData shares out whole chunks, and gave one of two processes all 15 images of a
    one-chunk validation set and the other none, which Lightning refuses. A fold trains on the other folds'
    parts so, in the folder's own resumable shuffle: a key is an index or an ``(index, seed)`` pair of
    :class:`~.samplers.ResumableShuffle`.
    """

    def __init__(self, streams: Sequence[Any], sizes: Sequence[int]) -> None:
        self.streams = list(streams)
        self.ends = list(itertools.accumulate(sizes))  # the whole parts': under DDP, LitData's length is a share
        self.skipped = self.streams[0].skipped

    def __len__(self) -> int:
        return self.ends[-1]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int | str] | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        part = bisect.bisect_right(self.ends, index)
        return self.streams[part].read(index - (self.ends[part - 1] if part else 0), seed)


def indexed_images(converted: ConvertedData, parts: Sequence[str], view: Callable[..., Tensor],
                   augmentation: Callable[[Tensor], Tensor] | None = None,
                   target: SampleTarget = "label") -> IndexedImages:
    """``parts`` of ``converted`` read by index, each sample ``(crop, label)``, or ``(crop, path)``."""
    skipped = multiprocessing.Value("i", 0)
    # Each read deserializes its own sample only: LitData's default deserializes a window of up to 256 around it,
    # which made a random read of a 16 px digit 1,330-2,260 us against the folder's 500; 430-510 us so
    streams = [streaming_images_class()(converted.part(part), view, augmentation, 0, False, False, skipped, target,
                                        batch_decode=0) for part in parts]
    return IndexedImages(streams, [converted.size(part) for part in parts])


def streaming_loader(dataset: Any, batch_size: int, num_workers: int, collate: Callable,
                     batches_done: Callable[[], int | None], **options: Any) -> Any:
    """LitData's loader, whose saved place is the last batch the trainer finished rather than the last one
    fetched (Lightning fetches one batch ahead: saved as fetched, a resumed epoch would skip one)."""
    use_litdata()
    from litdata import StreamingDataLoader

    class StepAlignedLoader(StreamingDataLoader):
        resumed_epoch_begun = False

        def __iter__(self) -> Any:
            # LitData leaves its "resuming" flag set until an iterator is exhausted, and Lightning stops after the
            # epoch's last batch without exhausting it: the epoch after a resumed one would resume it again
            if self.resumed_epoch_begun:
                self.restore = False
            self.resumed_epoch_begun = self.restore
            yield from super().__iter__()

        def state_dict(self) -> dict[str, Any]:
            done = batches_done()
            if done is None:
                return super().state_dict()
            workers = max(1, self.num_workers)
            fetched = self._num_samples_yielded_streaming // self.batch_size
            # A state of 0 samples is not a resume for LitData: its next iterator starts the epoch after the
            # state's, from the start
            if done >= len(self):
                epoch, latest = self.current_epoch, 0
                done = 0
            elif done == 0:
                epoch, latest = self.current_epoch - 1, 0
            else:
                epoch, latest = self.current_epoch, (self._latest_worker_idx - (fetched - done)) % workers
            samples = done * self.batch_size
            return {"dataset": self.dataset.state_dict(samples, self.num_workers, self.batch_size),
                    "current_epoch": epoch, "num_samples_yielded": samples, "latest_worker_idx": latest}

    return StepAlignedLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, **options)
