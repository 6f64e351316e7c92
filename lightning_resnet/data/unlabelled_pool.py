"""The unlabelled images of semi-supervised ``fit`` (``data.unlabelled_dir``; the loss they feed is in
:mod:`lightning_resnet.training.semi_supervised`).

Which images of the folder join training (:func:`unlabelled_pool`): every image file under it, flat or in class
folders whose names are ignored, less the unreadable ones (named in a warning), the labelled training images it
also holds (an image is used once, with its label) and the exact and near copies of validation and test images
(trained on, they would leak the held-out images into training; named in a warning). Each is read as a weak and a
strong view (:class:`WeakAndStrong`), ``ratio`` times the labelled batch, from a stream that goes on across the
labelled images' epochs (:class:`~.samplers.UnlabelledStream`): its place follows from the labelled loader's, so
the two loaders resume together from one position in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor
from torchvision.transforms import v2

from ..errors import check
from ..stages import TEST, TRAIN, VAL
from .dataset import ImageSamples
from .duplicates import cached_copies_between
from .extra_labels import PSEUDO
from .image_records import image_records, warn_unreadable
from .listing import scan_unlabelled
from .loaders import TRAIN_POSITION, LoaderSettings, TrainingLoader
from .samplers import UnlabelledStream
from .sources import ImageSource
from .transforms import Views

UNLABELLED = -1
"""The target an unlabelled image carries, which nothing reads: its loss comes from the model's own predictions."""


@dataclass(frozen=True)
class UnlabelledPool:
    """The images of ``data.unlabelled_dir`` that training reads, and what was left out and why."""

    folder: Path
    paths: tuple[str, ...]
    unreadable: int
    labelled: int
    """Labelled training images the folder holds too (the same file or the same bytes): trained on with their label."""
    copies: tuple[tuple[str, str], ...]
    """``(unlabelled image, the validation or test image it is an exact or near copy of)``, left out."""

    def describe(self) -> str:
        left_out = [f"{count} {why}" for count, why in ((self.unreadable, "unreadable"),
                                                         (self.labelled, "labelled already"),
                                                         (len(self.copies), "copies of validation or test images"))
                    if count]
        return (f"data: {len(self.paths):,} unlabelled images in {self.folder}"
                + (f" (left out: {', '.join(left_out)})" if left_out else ""))


def unlabelled_pool(root: Path, paths: list[str], source: ImageSource) -> UnlabelledPool:
    """The images of ``paths`` (the files under ``root``) that semi-supervised training may read beside
    ``source``'s labelled split."""
    records = image_records(root, paths, with_hashes=True)
    warn_unreadable(paths, records, root)
    readable = [index for index, record in enumerate(records) if record.readable]
    rows = source.split_rows()
    labelled = [path for path, part, _ in rows if part in (TRAIN, PSEUDO) and Path(path).is_file()]
    held_out = [path for path, part, _ in rows if part in (VAL, TEST) and Path(path).is_file()]
    labelled_digests = {record.digest for record in image_records(root, labelled, with_hashes=True)}
    is_labelled = {index for index in readable if records[index].digest in labelled_digests}  # the file or a copy
    candidates = [index for index in readable if index not in is_labelled]
    copied = cached_copies_between(image_records(root, held_out, with_hashes=True), [records[i] for i in candidates])
    copies = tuple(sorted((paths[candidates[at]], held_out[original]) for at, original in copied.items()))
    if copies:
        named = "; ".join(f"{copy} (a copy of {original})" for copy, original in copies[:10])
        rank_zero_warn(f"data.unlabelled_dir {root}: left out {len(copies)} image(s) that copy validation or test "
                       f"images, which training must not see: {named}"
                       + (f"; and {len(copies) - 10} more" if len(copies) > 10 else ""))
    kept = tuple(paths[at] for position, at in enumerate(candidates) if position not in copied)
    check(len(kept) > 0, f"data.unlabelled_dir {root}: none of its {len(paths)} image files is left to train on "
                         "(each is unreadable, labelled already or a copy of a validation or test image)")
    return UnlabelledPool(root, kept, len(paths) - len(readable), len(is_labelled), copies)


class WeakAndStrong:
    """An unlabelled image's two views, ``uint8``: the weak one is the run's training augmentation; the strong one
    that augmentation drawn again, then RandAugment (two operations at magnitude 10) and a Cutout (torchvision's
    RandomErasing of a gray square of up to a quarter of the image), as FixMatch makes them."""

    def __init__(self, weak: v2.Transform | None) -> None:
        self.weak = weak
        self.strong = v2.Compose([v2.RandAugment(num_ops=2, magnitude=10),
                                  v2.RandomErasing(p=1.0, scale=(0.02, 0.25), ratio=(1.0, 1.0), value=127)])

    def __call__(self, image: Tensor) -> list[Tensor]:
        weak = self.weak(image) if self.weak is not None else image
        strong = self.weak(image) if self.weak is not None else image
        return [weak, self.strong(strong)]


class UnlabelledImages:
    """``data.unlabelled_dir`` in the data module: the pool, its data set, and its loader beside the labelled one.

    Args:
        folder: the folder of unlabelled images.
        ratio: unlabelled images per labelled image in a batch (FixMatch's mu: 7).
    """

    def __init__(self, folder: str, ratio: int) -> None:
        check(ratio >= 1, f"data.unlabelled_ratio must be a whole number of at least 1 (unlabelled images per "
                          f"labelled image in a batch), got {ratio}")
        self.folder = Path(folder).expanduser()
        self.paths = scan_unlabelled(self.folder, option="data.unlabelled_dir")  # a missing folder: one line now
        self.ratio = ratio
        self.pool: UnlabelledPool | None = None
        self.dataset: ImageSamples | None = None

    def prepare(self) -> None:
        """Once per node: the folder's files checked and hashed into the cache, which the other processes read."""
        image_records(self.folder, self.paths, with_hashes=True)

    def setup(self, source: ImageSource, views: Views) -> None:
        self.pool = unlabelled_pool(self.folder, self.paths, source)
        rank_zero_info(self.pool.describe())
        self.dataset = ImageSamples([(path, UNLABELLED) for path in self.pool.paths], views.training,
                                    WeakAndStrong(views.augmentation), replace_unreadable=True)

    def beside(self, labelled: TrainingLoader, settings: LoaderSettings, processes: int, rank: int) -> TrainingLoader:
        """The labelled training loader with this one beside it: ``ratio`` times its batch size, as many batches an
        epoch (Lightning's ``min_size``), a batch ``[labelled batch, [[weak views, strong views], targets]]``."""
        return LoadersTogether(labelled, self.dataset, replace(settings, batch_size=settings.batch_size * self.ratio),
                               processes, rank)


class LoadersTogether:
    """The labelled and the unlabelled training loaders as one (:class:`~.loaders.TrainingLoader`): the labelled
    loader's place is the checkpoint's; the unlabelled stream's follows from it."""

    def __init__(self, labelled: TrainingLoader, dataset: ImageSamples, settings: LoaderSettings, processes: int,
                 rank: int) -> None:
        self.labelled = labelled
        self.batch_size = settings.batch_size
        self.sampler = UnlabelledStream(dataset, len(labelled.loader) * self.batch_size, processes, rank, settings.seed)
        unlabelled = settings.loader(dataset, self.sampler, persistent=True)
        self.loader = CombinedLoader([labelled.loader, unlabelled], mode="min_size")

    def position(self, batches_done: int, batches_in_epoch: int) -> dict[str, Any]:
        return self.labelled.position(batches_done, batches_in_epoch)

    def resume(self, state: dict[str, Any]) -> None:
        self.labelled.resume(state)
        if TRAIN_POSITION in state:
            epoch, batches_done = state[TRAIN_POSITION]
            self.sampler.resume(epoch, batches_done * self.batch_size)
