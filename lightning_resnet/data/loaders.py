"""How images are batched: the settings every loader of a run shares, the evaluation and prediction loaders, and
the training loader of a map-style data set, whose place in the epoch a checkpoint keeps (:class:`SampledLoader`).

A source whose training images stream (:mod:`.sources.converted`) has a training loader of its own with the same
two methods, :meth:`~TrainingLoader.position` and :meth:`~TrainingLoader.resume`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

from ..errors import check
from .dataset import collate_readable
from .samplers import BalancedDraw, ResumableShuffle, evaluation_sampler
from .workers import default_workers, worker_options

TRAIN_POSITION = "train_position"
"""The key of a map-style training loader's place in the data module's checkpoint state: ``[epoch, batches done]``."""


def processes_of(trainer: Any) -> tuple[int, int]:
    """(number of training processes, this one's rank) of ``trainer`` (one process without a trainer): how the
    loaders share the images out."""
    return (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)


def settings_for(trainer: Any, batch_size: int, num_workers: int | None, seed: int) -> LoaderSettings:
    """The loader settings of a data module's options under ``trainer``: ``num_workers`` or the default that shares
    the cores (:func:`default_workers`), and pinned memory on a GPU."""
    workers = num_workers if num_workers is not None else default_workers(
        trainer.num_devices if trainer is not None else 1)
    on_gpu = trainer is not None and trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
    return LoaderSettings(batch_size, workers, seed, pin_memory=on_gpu)


def training_batches_done(trainer: Any) -> int | None:
    """Training batches whose optimizer step ran in this epoch (where Lightning's loop resumes; a save inside
    ``on_train_batch_end`` comes before its batch counts as completed); None outside ``fit``."""
    if trainer is None or trainer.state.fn != "fit":
        return None
    return trainer.fit_loop.epoch_loop.batch_progress.current.processed


@dataclass(frozen=True)
class LoaderSettings:
    """What every loader of a run shares: images per batch and process, loader processes, the seed of the shuffle,
    and whether batches go to pinned memory (for a GPU)."""

    batch_size: int
    num_workers: int
    seed: int
    pin_memory: bool = False

    def __post_init__(self) -> None:
        check(self.batch_size >= 1, f"data.batch_size must be at least 1, got {self.batch_size}")
        check(self.num_workers >= 0, f"data.num_workers must be 0 or more, got {self.num_workers}")

    def loader(self, dataset: Dataset, sampler: Sampler, persistent: bool = False, **options: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            pin_memory=self.pin_memory,
            persistent_workers=persistent and self.num_workers > 0,
            collate_fn=collate_readable,
            # its own generator: creating an iterator then draws nothing from torch's global random
            # stream, which an exactly resumed run must find where the interrupted one left it
            generator=torch.Generator().manual_seed(self.seed),
            **worker_options(self.num_workers),
            **options,
        )


def evaluation_loader(dataset: Dataset, settings: LoaderSettings, processes: int, rank: int) -> DataLoader:
    """This process's share of an evaluation set, in order, each image counted once across processes."""
    return settings.loader(dataset, evaluation_sampler(dataset, processes, rank))


def prediction_loader(dataset: Dataset, settings: LoaderSettings) -> DataLoader:
    # Lightning shares predict sets out among processes without repeats by itself
    return settings.loader(dataset, SequentialSampler(dataset))


class TrainingLoader(Protocol):
    """A training loader whose place in the epoch a checkpoint keeps, so that an interrupted run resumes exactly."""

    loader: Any
    """What ``train_dataloader`` returns."""

    def position(self, batches_done: int, batches_in_epoch: int) -> dict[str, Any]:
        """The place after ``batches_done`` trained batches, as entries of the data module's checkpoint state."""

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from the place in a checkpoint's data module ``state`` (nothing when it holds none of this
        loader's)."""


class SampledLoader:
    """A map-style training set read in a shuffle (or a class-balanced draw) fixed by the seed and the epoch,
    shared out among the training processes, resumable after any batch."""

    def __init__(self, dataset: Dataset, settings: LoaderSettings, processes: int, rank: int,
                 balanced: bool = False) -> None:
        self.batch_size = settings.batch_size
        if balanced:
            targets = [target for _, target in dataset.samples]
            self.sampler: ResumableShuffle = BalancedDraw(targets, num_replicas=processes, rank=rank,
                                                          seed=settings.seed)
        else:
            self.sampler = ResumableShuffle(dataset, num_replicas=processes, rank=rank, seed=settings.seed)
        # every process gets ceil(images / processes) (DDP's sampler pads); only a last batch of one image is
        # dropped, which BatchNorm cannot train on
        per_process = math.ceil(len(dataset) / processes)
        self.loader = settings.loader(dataset, self.sampler, persistent=True,
                                      drop_last=per_process % settings.batch_size == 1)

    def position(self, batches_done: int, batches_in_epoch: int) -> dict[str, Any]:
        epoch = self.sampler.epoch
        if batches_done >= batches_in_epoch:  # the epoch's batches are all done: the next epoch's start
            epoch, batches_done = epoch + 1, 0
        return {TRAIN_POSITION: [epoch, batches_done]}

    def resume(self, state: dict[str, Any]) -> None:
        if TRAIN_POSITION in state:
            epoch, batches_done = state[TRAIN_POSITION]
            self.sampler.resume(epoch, batches_done * self.batch_size)
