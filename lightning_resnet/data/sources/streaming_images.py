"""One part of a converted data set as LitData's ``StreamingDataset``, its samples this project's crops. A module of
its own: imported when a run reads a converted data set (it imports LitData), and where a loader worker, started
from a fork server (:mod:`..workers`), finds its data set's class when it unpickles it."""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from ..dataset import count_unreadable, seeded
from ..decode import DECODE_ERRORS
from ..samplers import sample_seed
from .base import Augmentation, View
from .converted_manifest import use_litdata

use_litdata()
from litdata import StreamingDataset  # noqa: E402  (after use_litdata)

SampleTarget = Literal["label", "path"]
"""What a sample read from a converted part comes with: its class index, or its path (out-of-fold predictions)."""


class StreamingImages(StreamingDataset):
    """One part of a converted data set, each sample decoded and cropped by this project's ``view``.

    Streamed (iterated by LitData's loader), training samples are shuffled by LitData, and with ``drop_last``
    the last uneven items are left out (so that every process takes the same number of batches); each
    sample's augmentation is seeded by ``(seed, epoch, index)``, as in :class:`~..samplers.ResumableShuffle`,
    so a resumed epoch repeats it. :meth:`read` reads one sample by index instead.
    """

    def __init__(self, part: str, view: View, augmentation: Augmentation, seed: int, shuffle: bool,
                 drop_last: bool, skipped: Any, target: SampleTarget, batch_decode: int | str = "auto") -> None:
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
