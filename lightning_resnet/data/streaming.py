"""A folder converted to LitData's streaming format: ``convert`` writes it, the data module reads it.

A converted data set ``DIR`` (a local folder, a shared file system or a bucket URL) holds:

- ``converted.json``: the classes, the images of each part and class, ``max_side``, the training split's
  mean and std when they were measured (``data.normalize: auto``), and the folder it came from;
- ``split.csv``: the split it was made with, as a run writes it;
- ``train/``, ``val/`` and ``test/``: one LitData data set each (``index.json`` and chunk files), each
  sample an image file's bytes (or a smaller JPEG with ``--max_side``), its class index and its path.

Decoding, EXIF, CMYK and 16-bit handling stay this project's own (:mod:`.decode`): the samples are the
files' bytes. LitData itself is imported only by a run that reads or writes this format.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps
from torch.utils.data import Dataset

from ..errors import UserError, check
from .decode import DECODE_ERRORS, decode_problem, to_rgb
from .normalization import Normalization
from .splits import SPLIT_CSV, split_rows_of, write_split_csv

if TYPE_CHECKING:
    from torch import Tensor

    from .datamodule import ImageFolderDataModule

MANIFEST = "converted.json"
FORMAT = "lightning_resnet streaming images 1"
URL_SCHEMES = ("s3://", "gs://", "azure://", "hf://")
"""Object stores LitData streams from; a ``data_dir`` that starts with one is a converted data set."""
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


@dataclass(frozen=True)
class ConvertedData:
    """What ``converted.json`` says of a converted data set, read once."""

    root: str
    class_names: tuple[str, ...]
    class_counts: dict[str, tuple[int, ...]]
    """Images of each class in each part (``train``, ``val``, ``test`` when there is one)."""
    max_side: int | None
    normalization: Normalization | None
    """The training split's mean and std, measured at conversion with ``data.normalize: auto``."""
    source: str

    def part(self, name: str) -> str:
        return join(self.root, name)

    def has(self, part: str) -> bool:
        return part in self.class_counts

    def size(self, part: str) -> int:
        return sum(self.class_counts.get(part, ()))

    def describe(self) -> str:
        """The line a run starts with, as a folder's run starts with its split."""
        parts = ", ".join(f"{self.size(part)} {part}" for part in self.class_counts)
        return (f"data: {self.root}, converted (LitData) from {self.source}, {len(self.class_names)} classes, "
                f"the conversion's split: {parts} images")


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
    stats = manifest.get("normalization")
    converted = ConvertedData(
        root=root,
        class_names=tuple(manifest["class_names"]),
        class_counts={part: tuple(counts) for part, counts in manifest["class_counts"].items()},
        max_side=manifest.get("max_side"),
        normalization=Normalization(tuple(stats["mean"]), tuple(stats["std"])) if stats else None,
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
    """Write ``data``'s split as a converted data set in ``output``; returns what was written, in a line."""
    check(max_side is None or max_side >= 1, f"--max_side must be a positive number of pixels, got {max_side}")
    check(not output.exists() or (output.is_dir() and not any(output.iterdir())),
          f"--output {output} exists and is not empty: name a new folder (nothing is overwritten)")
    check(data.converted is None, f"data.data_dir {data.data_dir} is a converted data set already")
    use_litdata()
    from functools import partial

    from litdata import optimize

    parts = dict(zip(("train", "val"), data.split()))
    if data.has_test_set:
        parts["test"] = data.test_samples()
    names = data.class_names
    normalization = data.normalization if data.normalize == "auto" else None
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
                "normalization": {"mean": list(normalization.mean), "std": list(normalization.std)}
                if normalization else None, "source": str(data.data_dir.resolve())}
    write_split_csv(output / SPLIT_CSV, data.split_rows())
    (output / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(len(samples) for samples in parts.values())
    size = sum(file.stat().st_size for file in output.rglob("*.bin"))
    shares = ", ".join(f"{part} {len(samples)}" for part, samples in parts.items())
    return (f"converted {total} images of {len(names)} classes ({shares}) into {output}: "
            f"{size / 2**20:.1f} MiB of chunks"
            + (f", longer sides at most {max_side} px" if max_side else ""))


# ----- reading -------------------------------------------------------------------------------------


def read_split_rows(converted: ConvertedData) -> list[tuple[str, str, str]]:
    return split_rows_of(read_text(converted.root, SPLIT_CSV))


def streaming_images(part: str, size: int, view: Callable[..., Tensor],
                     augmentation: Callable[[Tensor], Tensor] | None, seed: int, training: bool,
                     drop_last: bool = False) -> Any:
    """A :class:`StreamingImages` of ``part`` (a folder or URL) for training; for evaluation, the same read by index
    (:class:`IndexedImages`). LitData is imported here, when a run reads one."""
    use_litdata()
    from litdata import StreamingDataset

    from .dataset import count_unreadable, seeded
    from .samplers import sample_seed

    class StreamingImages(StreamingDataset):
        """LitData's streaming data set, each sample decoded and cropped by this project's ``view``.

        Training samples are shuffled by LitData, and with ``drop_last`` the last uneven items are left out
        (so that every process takes the same number of batches); each sample's augmentation is seeded by
        ``(seed, epoch, index)``, as in :class:`~.samplers.ResumableShuffle`, so a resumed epoch repeats it.
        """

        def __init__(self) -> None:
            super().__init__(part, shuffle=training, drop_last=drop_last, seed=seed)
            self.view = view
            self.augmentation = augmentation
            self.training = training
            self.skipped = multiprocessing.Value("i", 0)

        def __getitem__(self, index: Any) -> tuple[Tensor, int] | None:
            item = super().__getitem__(index)
            path = item["path"]  # bytes (a memoryview) when streamed, already text when read by index
            item["path"] = path if isinstance(path, str) else bytes(path).decode()
            number = getattr(index, "index", index)
            key = sample_seed(seed, self.current_epoch, number) if self.training else None
            try:
                with seeded(key):
                    image = self.view(item["path"], item["image"])
                    return (self.augmentation(image) if self.augmentation else image), item["label"]
            except DECODE_ERRORS as error:
                count_unreadable(self.skipped, item["path"], error)
                return None

    return StreamingImages() if training else IndexedImages(StreamingImages(), size)


class IndexedImages(Dataset):
    """A converted part read by index, in order, so that evaluation shares its images out among processes as the
    folder path does (each counted once): LitData shares out whole chunks, and gave one of two processes all 15
    images of a one-chunk validation set and the other none, which Lightning refuses."""

    def __init__(self, stream: Any, size: int) -> None:
        self.stream = stream
        self.size = size  # the whole part's: under DDP, the length of LitData's data set is this process's share
        self.skipped = stream.skipped

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        return self.stream[index]


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
