"""A data set written by ``convert`` (LitData's streaming format) as a source: a local folder, a shared file
system or a bucket URL. ``convert`` writes it (:mod:`..convert`); :mod:`.converted_manifest` reads what
``converted.json`` says of it; this file reads its images.

``DIR`` holds ``converted.json`` (the classes, the images of each part and class, ``max_side``, the training
split's mean and std when measured, one per fold, and the folder it came from), ``split.csv`` (the split it was
made with) and one LitData data set per part (``index.json`` and chunk files): ``train/``, ``val/`` and ``test/``,
or ``fold_0/`` to ``fold_<K-1>/`` with ``data.num_folds K``, each image stored once. A sample is an image file's
bytes (or a smaller JPEG with ``--max_side``), its class index and its path; decoding stays this project's own
(:mod:`..decode`). Training on ``train/`` streams it (LitData's shuffle and loader); training on other folds'
parts reads them by index in the folder's own resumable shuffle. LitData is imported only by a run that reads
or writes this format.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import Dataset

from ...errors import check
from ...stages import TEST, TRAIN, VAL
from ..dataset import ImageSamples, collate_readable
from ..listing import list_test_folder
from ..loaders import LoaderSettings, SampledLoader
from ..normalization import Normalization
from ..splits import SPLIT_CSV, SplitRow, split_rows_of
from ..transforms import EvaluationView
from ..workers import worker_options, worker_processes
from .base import Augmentation, ImageSource, SourceOptions, View
from .converted_manifest import ConvertedData, is_converted, read_converted, read_text, use_litdata

if TYPE_CHECKING:  # imported where a run reads the format: it imports LitData
    from .streaming_images import SampleTarget

STREAMING_POSITION = "streaming_position"
"""The key of a streamed training loader's place in the data module's checkpoint state (LitData's own state)."""


class ConvertedSource(ImageSource):
    """A data set written by ``convert``: see the module's docstring. Its split (or folds), classes and measured
    normalization are the conversion's."""

    def __init__(self, options: SourceOptions) -> None:
        super().__init__(options)
        self.converted = read_converted(options.data_dir)
        check(options.extra_labels is None, f"data.extra_labels {options.extra_labels} adds images to a folder's "
              "training part; a converted data set has its own: convert the folder with the images added instead")
        check(options.sampler == "shuffle", f"data.sampler {options.sampler} draws from a folder's images; a "
              "converted data set streams LitData's shuffle: use model.class_weights: balanced (the loss weighed "
              "by class)")
        rule = options.split_rule
        folds = self.converted.num_folds
        if folds is None:
            check(rule.num_folds is None, f"data.num_folds {rule.num_folds}: {self.converted.root} was converted as "
                  f"one split; convert the folder in folds (convert --data.num_folds {rule.num_folds}) or give the "
                  "folder itself")
        else:
            check(rule.num_folds == folds, f"data.num_folds: {self.converted.root} was converted in {folds} folds; "
                  f"give --data.num_folds {folds} and --data.fold 0 to {folds - 1} (cross_validate runs them all)")
        check(options.exclude is None and options.relabel is None, "data.exclude and data.relabel apply to an image "
              "folder: give them to convert, which leaves those images out or relabels them")
        check(options.extends is None, f"model.extend needs the images in a folder or a labels file: "
                                       f"{self.converted.root} was converted with its classes fixed")
        self.fold = rule.fold
        self.seed = rule.seed

    @classmethod
    def reads(cls, options: SourceOptions) -> bool:
        return is_converted(options.data_dir)

    @property
    def location(self) -> str:
        return self.converted.root

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.given_class_names or self.converted.class_names

    def known_class_names(self) -> tuple[str, ...]:
        return self.class_names

    @property
    def streams_training(self) -> bool:
        """Whether training streams the ``train`` part (LitData's shuffle and loader); a fold trains on the other
        folds' parts read by index, in the folder's shuffle."""
        return self.converted.num_folds is None

    def prepare(self) -> None:
        rank_zero_info(self.converted.describe(self.fold))

    def split_rows(self) -> list[SplitRow]:
        """The conversion's ``split.csv``, each image in the part this run puts it in."""
        return [(path, self.converted.run_part(part, self.fold), name)
                for path, part, name in split_rows_of(read_text(self.converted.root, SPLIT_CSV))]

    def training_class_counts(self) -> list[int]:
        return self.converted.class_counts_of(self.converted.training_parts(self.fold))

    def measured_normalization(self, view: EvaluationView, num_workers: int) -> Normalization:
        measured = self.converted.normalizations
        check(bool(measured), f"data.normalize auto: {self.converted.root} was converted without measuring its "
                              "training split; convert with --data.normalize auto, or give data.normalize")
        return measured[self.fold]  # one per fold, or the one split's (fold 0)

    @property
    def has_own_test(self) -> bool:
        return self.converted.has(TEST)

    def training_set(self, view: View, augmentation: Augmentation, settings: LoaderSettings,
                     processes: int) -> Dataset:
        converted = self.converted
        if not self.streams_training:
            return indexed_images(converted, converted.training_parts(self.fold), view, augmentation)
        # uneven batches across processes would hang DDP (LitData #233); BatchNorm cannot train on one image
        drop_last = processes > 1 or converted.size(TRAIN) % settings.batch_size == 1
        from .streaming_images import StreamingImages

        return StreamingImages(converted.part(TRAIN), view, augmentation, self.seed, True, drop_last,
                                        worker_processes().Value("i", 0), "label")

    def evaluation_set(self, part: str, view: View) -> Dataset:
        # created here, where the process group of DDP exists: LitData shares the chunks out among the
        # processes it finds when a data set is created
        if part == VAL:
            return indexed_images(self.converted, [self.converted.validation_part(self.fold)], view)
        if self.test_dir is not None:
            return ImageSamples(list_test_folder(self.test_dir, self.class_names, self.options.verify_images), view)
        check(self.converted.has(TEST), f"test needs data.test_dir: {self.converted.root} has no test part")
        return indexed_images(self.converted, [TEST], view)

    def training_loader(self, dataset: Dataset, settings: LoaderSettings, processes: int, rank: int,
                        batches_done: Callable[[], int | None]) -> StreamedLoader | SampledLoader:
        if not self.streams_training:
            return SampledLoader(dataset, settings, processes, rank)
        return StreamedLoader(dataset, settings, batches_done)


class IndexedImages(Dataset):
    """Parts of a converted data set read by index, one after the other, as one data set.

    Evaluation reads its part so, in order, so that it shares its images out among processes as the folder path
    does (each counted once): LitData shares out whole chunks, and gave one of two processes all 15 images of a
    one-chunk validation set and the other none, which Lightning refuses. A fold trains on the other folds'
    parts so, in the folder's own resumable shuffle: a key is an index or an ``(index, seed)`` pair of
    :class:`~..samplers.ResumableShuffle`.
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


def indexed_images(converted: ConvertedData, parts: Sequence[str], view: View, augmentation: Augmentation = None,
                   target: SampleTarget = "label") -> IndexedImages:
    """``parts`` of ``converted`` read by index, each sample ``(crop, label)``, or ``(crop, path)``."""
    skipped = worker_processes().Value("i", 0)
    # Each read deserializes its own sample only: LitData's default deserializes a window of up to 256 around it
    # (benchmarks/README.md: a random read 3-4x slower)
    from .streaming_images import StreamingImages

    streams = [StreamingImages(converted.part(part), view, augmentation, 0, False, False, skipped, target,
                                        batch_decode=0) for part in parts]
    return IndexedImages(streams, [converted.size(part) for part in parts])


class StreamedLoader:
    """LitData's loader over a streamed training part (it shares the chunks out among processes and workers),
    whose saved place is the last batch the trainer finished rather than the last one fetched (Lightning fetches
    one batch ahead: saved as fetched, a resumed epoch would skip one)."""

    def __init__(self, dataset: Any, settings: LoaderSettings, batches_done: Callable[[], int | None]) -> None:
        use_litdata()
        from litdata import StreamingDataLoader

        class StepAlignedLoader(StreamingDataLoader):
            resumed_epoch_begun = False

            def __iter__(self) -> Any:
                # LitData leaves its "resuming" flag set until an iterator is exhausted, and Lightning stops after
                # the epoch's last batch without exhausting it: the epoch after a resumed one would resume it again
                if self.resumed_epoch_begun:
                    self.restore = False
                self.resumed_epoch_begun = self.restore
                yield from super().__iter__()

            def state_dict(self) -> dict[str, Any]:
                done = batches_done()
                return super().state_dict() if done is None else self.state_after(done)

            def state_after(self, done: int) -> dict[str, Any]:
                """LitData's state after ``done`` batches of this epoch."""
                workers = max(1, self.num_workers)
                fetched = self._num_samples_yielded_streaming // self.batch_size
                # A state of 0 samples is not a resume for LitData: its next iterator starts the epoch after the
                # state's, from the start
                if done >= len(self):
                    epoch, latest, done = self.current_epoch, 0, 0
                elif done == 0:
                    epoch, latest = self.current_epoch - 1, 0
                else:
                    epoch, latest = self.current_epoch, (self._latest_worker_idx - (fetched - done)) % workers
                samples = done * self.batch_size
                return {"dataset": self.dataset.state_dict(samples, self.num_workers, self.batch_size),
                        "current_epoch": epoch, "num_samples_yielded": samples, "latest_worker_idx": latest}

        self.loader = StepAlignedLoader(dataset, batch_size=settings.batch_size, collate_fn=collate_readable,
                                        pin_memory=settings.pin_memory,
                                        generator=torch.Generator().manual_seed(settings.seed),
                                        **worker_options(settings.num_workers))

    def position(self, batches_done: int, batches_in_epoch: int) -> dict[str, Any]:
        return {STREAMING_POSITION: self.loader.state_after(batches_done)}

    def resume(self, state: dict[str, Any]) -> None:
        # Lightning restores a loader's state only when it builds the loader after the checkpoint is read, and
        # it builds it before, to count the steps of a learning-rate schedule: the state travels here instead
        if STREAMING_POSITION in state:
            self.loader.load_state_dict(state[STREAMING_POSITION])
