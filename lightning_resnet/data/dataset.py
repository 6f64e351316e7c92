"""The dataset of ``(path, target)`` samples read through a view, and the collate that drops unreadable ones."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from .decode import DECODE_ERRORS, decode_problem
from .features import CachedFeatures
from .workers import worker_processes

LabelSet = tuple[int, ...]
"""The labels of an image of a multi-label set (one with several labels per image): their indices, in order."""
Target = int | LabelSet
Sample = tuple[str, Target]
"""An image file and its class index, or its label set in a multi-label set."""


def multi_hot(labels: LabelSet, num_labels: int) -> Tensor:
    """The float vector of ``num_labels`` that is 1 at each of ``labels``: a multi-label target as the loss takes it."""
    vector = torch.zeros(num_labels)
    vector[list(labels)] = 1.0
    return vector


def label_counts(targets: Iterable[Target], num_labels: int) -> list[int]:
    """Images of each class (or with each label, for label sets), in index order."""
    counts = [0] * num_labels
    for target in targets:
        for index in (target,) if isinstance(target, int) else target:
            counts[index] += 1
    return counts


def target_names(target: Target, class_names: Sequence[str]) -> str:
    """A target as ``split.csv`` and the messages write it: its class name, or its label names separated by spaces."""
    return class_names[target] if isinstance(target, int) else " ".join(class_names[index] for index in target)


class ImageSamples(Dataset):
    """``(path, target)`` pairs read as ``(uint8 tensor, target)`` by ``view``, then ``augmentation``.

    The target is the class index of labelled images and the path of images to predict. A key is
    an index, or an ``(index, seed)`` pair from :class:`~lightning_resnet.data.samplers.ResumableShuffle`
    whose seed fixes the sample's random augmentation. An image that cannot be decoded is counted
    in ``skipped`` (shared by the loader's worker processes) and warned about; then, with
    ``replace_unreadable`` (training), another random sample takes its place so that batches keep
    their size, and otherwise the sample is ``None``
    and :func:`collate_readable` leaves it out of the batch. With ``num_labels`` (a multi-label set), a label set
    is read as its multi-hot vector. While ``features_file`` names a feature cache
    (shared with the loader's workers, which may have started before it was written), a sample is its
    image's cached backbone features instead (``model.cache_features``, :mod:`.features`).
    """

    def __init__(self, samples: Sequence[tuple[str, Target | str]], view: Callable[[str], Tensor],
                 augmentation: Callable[[Tensor], Tensor] | None = None, replace_unreadable: bool = False,
                 num_labels: int | None = None):
        self.samples = list(samples)
        self.num_labels = num_labels
        self.view = view
        self.augmentation = augmentation
        self.replace_unreadable = replace_unreadable
        self.skipped = worker_processes().Value("i", 0)
        self.features_file = worker_processes().Array("c", 4096)  # empty: read images
        self._features: CachedFeatures | None = None  # this process's copy of that file, loaded on first use

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, int | str] | None:
        return self._sample(key, self.features_file.value)

    def __getitems__(self, keys: list[int | tuple[int, int]]) -> list[tuple[Tensor, int | str] | None]:
        """A batch's samples, with the feature cache looked up once: a batch is all features or all images, even
        when the cache is switched on while a worker reads it (Lightning starts the training loader early)."""
        features_file = self.features_file.value
        return [self._sample(key, features_file) for key in keys]

    def _sample(self, key: int | tuple[int, int], features_file: bytes) -> tuple[Tensor, int | str] | None:
        index, seed = key if isinstance(key, tuple) else (key, None)
        if features_file:
            path, target = self.samples[index]
            return self.cached_features(features_file)(path), self.target(target)
        with seeded(seed):
            for _ in range(10):
                path, target = self.samples[index]
                try:
                    image = self.view(path)
                    return (self.augmentation(image) if self.augmentation else image), self.target(target)
                except DECODE_ERRORS as error:
                    count_unreadable(self.skipped, path, error)
                    if not self.replace_unreadable:
                        return None
                    index = random.randrange(len(self.samples)) if seed is None else int(torch.randint(len(self), ()))
        raise RuntimeError(f"10 unreadable images in a row, the last {path}: is the data folder readable?")

    def target(self, target: Target | str) -> Target | str | Tensor:
        """What a sample carries: a label set's multi-hot vector, anything else as it is."""
        return multi_hot(target, self.num_labels) if isinstance(target, tuple) else target

    def read_features(self, file: Path | None) -> None:
        """Read the samples from the feature cache ``file`` from now on, in every worker; images again for None."""
        self.features_file.value = str(file).encode() if file is not None else b""

    def cached_features(self, features_file: bytes) -> CachedFeatures:
        file = Path(features_file.decode())
        if self._features is None or self._features.file != file:
            self._features = CachedFeatures(file)
        return self._features


def count_unreadable(skipped: Synchronized, path: str, error: BaseException) -> None:
    """Count an image that could not be decoded, in a counter the loader's workers share, and warn about it."""
    with skipped.get_lock():
        skipped.value += 1
    warnings.warn(f"skipped unreadable image {path}: {decode_problem(error)}", stacklevel=3)


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's CPU random stream started at ``seed``, then restore it (nothing for None)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU stream only: torch.manual_seed also queues CUDA seeding
        yield


def collate_readable(batch: list[tuple[Tensor, int | str] | None]) -> list | None:
    """``default_collate`` of the samples that could be read; None when none could."""
    readable = [sample for sample in batch if sample is not None]
    return default_collate(readable) if readable else None
