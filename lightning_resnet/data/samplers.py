"""The order images are read in: a training shuffle or a class-balanced draw, both resumable mid-epoch,
and evaluation shards.

All are ``DistributedSampler`` subclasses, so Lightning uses them as they are under DDP instead
of putting its own in their place.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence, Sized

import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DistributedSampler, WeightedRandomSampler

SampleKey = tuple[int, int]
"""What the training sampler yields: a sample's index and the seed of its augmentation."""


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training sample's augmentation: the same whatever the loader workers or the resume."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % (2**63)


class ResumableShuffle(DistributedSampler):
    """Each epoch a shuffle fixed by ``(seed, epoch)``, this process's share of it, and a seed per sample.

    The seed of each sample depends on ``(seed, epoch, index)`` alone, so the random crop, flip
    and policy an image gets are the same whatever the number of loader workers, and the same
    again when an interrupted epoch is resumed. :meth:`resume` skips the samples the interrupted
    run had already trained on (:class:`~.loaders.SampledLoader` keeps the place in the checkpoint).
    """

    # Not torchdata's StatefulDataLoader: torchdata is not among this project's packages, and Lightning 2.6 builds
    # the training loader before it restores a checkpoint, so a loader's own saved state would come too late.
    def __init__(self, dataset: Sized, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._resume_at: tuple[int, int] | None = None  # (epoch, samples of this process already trained on)

    def resume(self, epoch: int, samples_done: int) -> None:
        """Continue ``epoch`` after its first ``samples_done`` samples of this process.

        The epoch is set here too: when resuming, Lightning creates the loader's iterator (and
        loader workers start drawing samples) before it calls ``set_epoch``.
        """
        self.set_epoch(epoch)
        self._resume_at = (epoch, samples_done)

    def __iter__(self) -> Iterator[SampleKey]:
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            skip = self._resume_at[1]
            self._resume_at = None
        indices = self._epoch_indices()[skip:]
        return iter([(index, self._sample_seed(index)) for index in indices])

    def _epoch_indices(self) -> list[int]:
        """This process's share of the epoch's indices."""
        return list(super().__iter__())

    def _sample_seed(self, index: int) -> int:
        return sample_seed(self.seed, self.epoch, index)


class BalancedDraw(ResumableShuffle):
    """Each epoch as many draws as there are images, with replacement, every class equally likely.

    Torch's ``WeightedRandomSampler`` (weights one over the class's count) draws the epoch's
    indices with a generator seeded by ``(seed, epoch)``, so every process draws the same list and
    takes its own share of it, and a resumed epoch draws it again.
    """

    def __init__(self, targets: Sequence[int], num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(targets, num_replicas=num_replicas, rank=rank, seed=seed)
        counts = Counter(targets)
        self.weights = torch.tensor([1.0 / counts[target] for target in targets], dtype=torch.float64)

    def _epoch_indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        drawn = list(WeightedRandomSampler(self.weights, self.total_size, replacement=True, generator=generator))
        return drawn[self.rank : self.total_size : self.num_replicas]


def evaluation_sampler(dataset: Sized, num_replicas: int, rank: int) -> UnrepeatedDistributedSampler:
    """This process's share of an evaluation set, in order, with no image repeated to even out the shares.

    Lightning's default pads the shares with repeats, which are then counted twice in the metrics.
    """
    return UnrepeatedDistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)


class UnlabelledStream(DistributedSampler):
    """The unlabelled images of semi-supervised training as one endless stream: pass after pass over them, each pass
    a shuffle fixed by ``(seed, pass)``, dealt out to the processes in turn (disjoint shares), with a seed per sample.

    Epoch ``e`` of the labelled images reads this process's ``per_epoch`` samples that follow epoch ``e - 1``'s, so
    a pool larger than an epoch's share is read on across epochs rather than from its start each time, and the
    place in the stream follows from the labelled loader's ``[epoch, batches done]`` alone (:meth:`resume`).
    """

    def __init__(self, dataset: Sized, per_epoch: int, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, seed=seed)
        self.per_epoch = per_epoch
        self._resume_at: tuple[int, int] | None = None
        self._orders: dict[int, list[int]] = {}  # the shuffles of the passes being read

    def resume(self, epoch: int, samples_done: int) -> None:
        """Continue ``epoch`` after its first ``samples_done`` samples of this process."""
        self.set_epoch(epoch)
        self._resume_at = (epoch, samples_done)

    def __len__(self) -> int:
        return self.per_epoch

    def _order(self, pass_: int) -> list[int]:
        if pass_ not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_)
            self._orders = {pass_: torch.randperm(len(self.dataset), generator=generator).tolist()}
        return self._orders[pass_]

    def __iter__(self) -> Iterator[SampleKey]:
        skip = 0
        if self._resume_at is not None and self._resume_at[0] == self.epoch:
            skip = self._resume_at[1]
            self._resume_at = None
        keys = []
        for position in range(self.epoch * self.per_epoch + skip, (self.epoch + 1) * self.per_epoch):
            pass_, offset = divmod(position * self.num_replicas + self.rank, len(self.dataset))
            index = self._order(pass_)[offset]
            keys.append((index, sample_seed(self.seed + 1, pass_, index)))
        return iter(keys)
