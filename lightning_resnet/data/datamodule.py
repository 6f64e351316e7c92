"""``ImageFolderDataModule``: a folder of class sub-folders in, normalized batches on the device out.

The path of an image, in the order of this package's files: ``folders`` finds it, ``catalog``
checks and hashes it (once per folder), ``duplicates`` and ``splits`` put it on one side of the
split, ``decode`` and ``transforms`` turn it into a ``uint8`` crop in a loader worker,
``dataset`` and ``samplers`` batch it, and :meth:`ImageFolderDataModule.on_after_batch_transfer`
normalizes it on the device with the statistics of ``normalization``.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from ..errors import UserError, check
from .catalog import ImageRecord, image_records, warn_unreadable
from .dataset import ImageSamples, Sample, collate_readable
from .duplicates import DuplicateGroup, cached_duplicate_groups
from .folders import (
    DEMO_DATA,
    DEMO_DIR,
    FolderLayout,
    LayoutError,
    detect_layout,
    scan_image_folder,
    scan_split_part,
    scan_unlabelled,
    write_digits_demo,
)
from .normalization import Normalize, Stats, cached_mean_std, imagenet_stats
from .samplers import BalancedDraw, ResumableShuffle, evaluation_sampler
from ..stages import TEST, TRAIN, VAL
from .splits import fold_split, stratified_split
from .transforms import (
    AugmentPreset,
    CenterView,
    RandomResizedCropView,
    eval_view,
    resize_size,
    train_augmentation,
    train_view,
)


@runtime_checkable
class ImageData(Protocol):
    """What the model's callbacks and reports may read of the data module (see :func:`image_data`)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    batch_size: int
    predict_paths: list[str]
    resize_size: int

    @property
    def skipped_images(self) -> int: ...

    def split(self) -> tuple[list[Sample], list[Sample]]: ...

    def class_counts(self, samples: list[Sample]) -> list[int]: ...

    def split_rows(self) -> list[tuple[str, str, str]]: ...


SamplerKind = Literal["shuffle", "balanced"]
"""``shuffle``: every training image once per epoch; ``balanced``: images drawn with replacement, every
class equally often (``WeightedRandomSampler``)."""
IMBALANCE_WARNING_RATIO = 5.0
"""Start-up warns when the largest class of the training split has more than this many times the
images of the smallest."""


def image_data(trainer: Trainer) -> ImageData | None:
    """The trainer's data module when it is one of this project's kind, else None (plain dataloaders)."""
    datamodule = trainer.datamodule
    return datamodule if isinstance(datamodule, ImageData) else None


class ImageFolderDataModule(LightningDataModule):
    """Train / validation split of a folder of images, plus optional test and predict inputs.

    Args:
        data_dir: a folder with one sub-folder of images per class, split here; or a folder split
            already, with ``train/<class>/`` and ``val/`` (or ``valid/``, ``validation/``) and
            optionally ``test/``, used as it is. ``demo:digits`` writes and uses scikit-learn's
            digits under ``data/digits``.
        val_fraction: share of each class held out for validation (a stratified random split);
            a pre-split folder without ``val/`` splits its ``train/`` so.
        seed: seed of that split; the same seed gives the same split on every machine and process.
        num_folds: split into this many stratified folds instead (k-fold cross-validation; see
            ``python -m lightning_resnet cross_validate``); ``fold`` is held out for validation.
        fold: the fold held out, from 0 to ``num_folds - 1``.
        group_duplicates: look for exact and near-duplicate images (cached once per folder) and
            keep each group of them on one side of the split; duplicates shared between the
            parts of a pre-split folder are reported as leaks.
        sampler: ``shuffle`` (each training image once per epoch) or ``balanced`` (drawn with
            replacement so that every class comes equally often; also under DDP).
        test_dir: folder laid out like ``data_dir`` for ``test``; by default a pre-split folder's ``test/``.
        predict_dir: an image file or a folder of images for ``predict``.
        image_size: side of the square images the model sees.
        crop_fraction: evaluation resizes the shorter side to ``image_size / crop_fraction``, then
            center-crops ``image_size`` (0.875 is the ImageNet convention; 1.0 keeps the whole image).
        train_augment: the training augmentation preset: ``basic`` (evaluation's resize and crop),
            ``standard`` (random resized crop and horizontal flip), or ``standard`` followed by
            ``trivialaugment``, ``randaugment`` or ``autoaugment``.
        crop_scale: area range of the random resized crop (0.08-1 for ImageNet; narrower for small images).
        hflip: probability of a horizontal flip (0 for digits and text).
        normalize: ``imagenet`` mean/std, ``auto`` to measure the training split's once and cache it, or
            null (the default): the mean/std the pretrained weights were trained with when
            ``model.pretrained`` names them (``weights_normalization``), else ImageNet's.
        batch_size: images per batch and process.
        num_workers: loader processes of each training process; by default the CPU cores this
            machine gives the run, shared among its training processes, less one core for each
            of them (at least one worker).
        verify_images: at setup, leave out (and list) empty, truncated and undecodable files, reading
            only each file's header and last bytes (cached with the duplicate search). A file that
            fails later is skipped and counted.
        class_names: the classes in index order; read from ``data_dir`` when not given. The command
            line takes them from the checkpoint when one is given, so that indices keep their meaning.
        channels: image channels, 3 (RGB) or 1 (gray); the command line links it from
            ``model.backbone_options.in_chans``, so it is never set by hand there.
        weights_normalization: ``[mean, std]`` of the pretrained weights; the command line links it
            from ``model.pretrained``.
    """

    def __init__(
        self,
        data_dir: str = DEMO_DATA,
        val_fraction: float = 0.2,
        seed: int = 42,
        num_folds: int | None = None,
        fold: int = 0,
        group_duplicates: bool = True,
        sampler: SamplerKind = "shuffle",
        test_dir: str | None = None,
        predict_dir: str | None = None,
        image_size: int = 224,
        crop_fraction: float = 0.875,
        train_augment: AugmentPreset = "standard",
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        normalize: Normalize | None = None,
        batch_size: int = 32,
        num_workers: int | None = None,
        verify_images: bool = True,
        class_names: list[str] | None = None,
        channels: int = 3,
        weights_normalization: tuple[list[float], list[float]] | None = None,
    ) -> None:
        super().__init__()
        check(0.0 < val_fraction < 1.0,
              f"data.val_fraction must be between 0 and 1 (both excluded), got {val_fraction}")
        check(num_folds is None or num_folds >= 2, f"data.num_folds must be 2 or more, got {num_folds}")
        check(num_folds is not None or fold == 0, f"data.fold {fold} needs data.num_folds (the number of folds)")
        check(num_folds is None or 0 <= fold < num_folds,
              f"data.fold must be between 0 and data.num_folds - 1 ({(num_folds or 1) - 1}), got {fold}")
        check(0.0 < crop_fraction <= 1.0, f"data.crop_fraction must be in (0, 1], got {crop_fraction}")
        check(image_size >= 1, f"data.image_size must be a positive number of pixels, got {image_size}")
        check(batch_size >= 1, f"data.batch_size must be at least 1, got {batch_size}")
        check(num_workers is None or num_workers >= 0, f"data.num_workers must be 0 or more, got {num_workers}")
        check(len(crop_scale) == 2 and 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0,
              f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(crop_scale)}")
        check(0.0 <= hflip <= 1.0, f"data.hflip is a probability in [0, 1], got {hflip}")
        check(channels in (1, 3), f"model.backbone_options.in_chans must be 1 (gray) or 3 (RGB), got {channels}")
        self.save_hyperparameters(ignore=["class_names"])  # for the checkpoint and TensorBoard only: read below

        self.is_demo = data_dir == DEMO_DATA
        self.data_dir = DEMO_DIR if self.is_demo else Path(data_dir).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.num_folds = num_folds
        self.fold = fold
        self.group_duplicates = group_duplicates
        self.sampler = sampler
        self.test_dir = Path(test_dir).expanduser() if test_dir else None
        self.predict_dir = Path(predict_dir).expanduser() if predict_dir else None
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.train_augment = train_augment
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.normalize = normalize
        self.batch_size = batch_size
        self.num_workers_option = num_workers
        self.verify_images = verify_images
        self.channels = channels

        if normalize is None and weights_normalization is not None:
            self.mean, self.std = tuple(weights_normalization[0]), tuple(weights_normalization[1])
        else:
            self.mean, self.std = imagenet_stats(channels)
        self._class_names: list[str] | None = list(class_names) if class_names else None
        self._layout: FolderLayout | None = None
        # every image file of data_dir, listed once, and the part of a pre-split folder each is in
        self._files: list[Sample] | None = None
        self._parts: list[str | None] = []
        self._records: list[ImageRecord] | None = None  # of _files: the start-up check and hashes
        self._hashed = False  # whether _records hold hashes
        self._groups: list[DuplicateGroup] = []  # duplicates among _files
        self._split: tuple[list[int], list[int]] | None = None  # indices into _files
        self._announced = False
        self._measured: Stats | None = None  # the training split's statistics once read or measured
        self.train_set: ImageSamples | None = None
        self.val_set: ImageSamples | None = None
        self.test_set: ImageSamples | None = None
        self.predict_set: ImageSamples | None = None
        self.predict_paths: list[str] = []
        self._train_sampler: ResumableShuffle | BalancedDraw | None = None
        self._resume_at: tuple[int, int] | None = None  # (epoch, training batches done) of a checkpoint
        self._normalization_on: tuple[str, Tensor, Tensor] | None = None  # device, shift, scale

    @property
    def num_workers(self) -> int:
        """Loader processes per training process: ``num_workers``, or the default that shares the cores."""
        if self.num_workers_option is not None:
            return self.num_workers_option
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local_processes = self.trainer.num_devices if self.trainer is not None else 1
        return max(1, cores // local_processes - 1)

    # ----- files, classes and split -------------------------------------------------------------

    def _list_files(self) -> list[Sample]:
        """Every image file of ``data_dir`` and its class index: the folder is listed once (cheap, no file read)."""
        if self._files is None:
            if self.is_demo and not self.data_dir.exists():
                write_digits_demo(self.data_dir)
            self._layout = layout = detect_layout(self.data_dir)
            if not layout.presplit:
                self._class_names, self._files = scan_image_folder(self.data_dir, self._class_names)
                self._parts = [None] * len(self._files)
                return self._files
            check(self.num_folds is None, f"data.num_folds: {layout.describe()} is split already; k-fold "
                                          "needs one folder per class (merge train/ and val/ to cross-validate)")
            self._class_names, files = scan_image_folder(layout.train, self._class_names)
            parts: list[str | None] = [TRAIN] * len(files)
            for part, folder in ((VAL, layout.val), (TEST, layout.test)):
                if folder is not None:
                    more = scan_split_part(folder, self._class_names, layout.train)
                    files += more
                    parts += [part] * len(more)
            self._files, self._parts = files, parts
        return self._files

    @property
    def layout(self) -> FolderLayout:
        """How ``data_dir`` is laid out (the first read lists the folder)."""
        self._list_files()
        return self._layout

    @property
    def class_names(self) -> list[str]:
        """The classes in index order. Unless given, the first read lists ``data_dir`` (once)."""
        if self._class_names is None:
            self._list_files()
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """The number of classes; like :attr:`class_names`, the first read may list ``data_dir``."""
        return len(self.class_names)

    def examine(self, find_duplicates: bool | None = None) -> list[ImageRecord] | None:
        """The start-up check and, with ``find_duplicates`` (``group_duplicates`` by default), the hashes
        and duplicate groups of every listed file, from the cache where it has them; None when neither
        the check nor the hashes are asked for."""
        files = self._list_files()
        hashes = self.group_duplicates if find_duplicates is None else find_duplicates
        if not (self.verify_images or hashes):
            return None
        if self._records is None or (hashes and not self._hashed):
            paths = [path for path, _ in files]
            first = self._records is None
            self._records = image_records(self.data_dir, paths, with_hashes=hashes)
            self._hashed = hashes
            if self.verify_images and first:
                warn_unreadable(paths, self._records, self.data_dir)
            if hashes:
                self._groups = cached_duplicate_groups(self._records)
        return self._records

    @property
    def duplicates(self) -> list[DuplicateGroup]:
        """Groups of copies among the listed files (indices into :meth:`files`), once hashes were computed."""
        return self._groups

    def files(self) -> tuple[list[Sample], list[str | None]]:
        """Every image file of ``data_dir`` with its class, and its part of a pre-split folder (else None)."""
        return self._list_files(), list(self._parts)

    def _readable(self) -> list[bool]:
        records = self.examine()
        if records is None or not self.verify_images:
            return [True] * len(self._list_files())
        return [record.readable for record in records]

    def split_indices(self) -> tuple[list[int], list[int]]:
        """(train, validation) indices into the listed files (see :meth:`split`)."""
        if self._split is not None:
            return self._split
        files = self._list_files()
        readable = self._readable()
        layout = self._layout
        if layout.presplit and layout.val is not None:
            self._split = ([i for i, part in enumerate(self._parts) if part == TRAIN and readable[i]],
                           [i for i, part in enumerate(self._parts) if part == VAL and readable[i]])
            return self._split
        pool = [i for i, part in enumerate(self._parts) if part in (None, TRAIN) and readable[i]]
        position = {index: order for order, index in enumerate(pool)}
        groups = [[position[i] for i in group.members if i in position] for group in self._groups]
        groups = [group for group in groups if len(group) > 1] if self.group_duplicates else []
        targets = [files[i][1] for i in pool]
        if self.num_folds is not None:
            train, val = fold_split(targets, self.num_folds, self.fold, self.seed, groups)
        else:
            train, val = stratified_split(targets, self.val_fraction, self.seed, groups)
        if not train or not val:
            raise LayoutError(f"{self.data_dir} has {len(pool)} readable images: too few for a "
                              f"{self.val_fraction:.0%} validation split")
        self._split = [pool[i] for i in train], [pool[i] for i in val]
        return self._split

    def split(self) -> tuple[list[Sample], list[Sample]]:
        """The (train, validation) samples: a pre-split folder's own, else a stratified random split fixed
        by ``seed`` (or fold ``fold`` of ``num_folds``) that keeps duplicates together."""
        files = self._list_files()
        train, val = self.split_indices()
        return [files[i] for i in train], [files[i] for i in val]

    @property
    def has_test_set(self) -> bool:
        """Whether ``test`` has images to read: ``test_dir``, or a pre-split folder's ``test/``."""
        return self.test_dir is not None or self.layout.test is not None

    def test_samples(self) -> list[Sample]:
        """The labelled images of ``test``: ``test_dir``, else a pre-split folder's ``test/``."""
        if self.test_dir is not None:
            _, samples = scan_image_folder(self.test_dir, self.class_names)
            if self.verify_images:
                records = image_records(self.test_dir, [path for path, _ in samples], with_hashes=False)
                warn_unreadable([path for path, _ in samples], records, self.test_dir)
                samples = [sample for sample, record in zip(samples, records) if record.readable]
            return samples
        if self.layout.test is None:
            raise UserError("test needs data.test_dir, or a test/ folder beside train/ in data.data_dir: "
                            "a folder laid out like data_dir (<class name>/<images>)")
        readable = self._readable()
        return [sample for sample, part, ok in zip(self._files, self._parts, readable) if part == TEST and ok]

    def split_rows(self) -> list[tuple[str, str, str]]:
        """``(path, split, class)`` of every image the run uses: what ``split.csv`` holds."""
        names = self.class_names
        train, val = self.split()
        rows = [(path, TRAIN, names[target]) for path, target in train]
        rows += [(path, VAL, names[target]) for path, target in val]
        if self.has_test_set:
            rows += [(path, TEST, names[target]) for path, target in self.test_samples()]
        return rows

    def class_counts(self, samples: list[Sample]) -> list[int]:
        """Images of each class among ``samples``, in class index order."""
        counts = Counter(target for _, target in samples)
        return [counts[index] for index in range(self.num_classes)]

    def part_of_files(self) -> dict[int, str]:
        """The part (train, val, test) each listed file is in, by index; unreadable files are in none."""
        train, val = self.split_indices()
        part_of = {i: TEST for i, part in enumerate(self._parts) if part == TEST}
        return part_of | dict.fromkeys(train, TRAIN) | dict.fromkeys(val, VAL)

    def leaks(self) -> list[tuple[DuplicateGroup, list[str]]]:
        """Duplicate groups whose copies are in more than one part (train, val, test): each with those parts."""
        self.examine()
        part_of = self.part_of_files()
        found = []
        for group in self._groups:
            parts = sorted({part_of[i] for i in group.members if i in part_of})
            if len(parts) > 1:
                found.append((group, parts))
        return found

    def _announce(self, train: list[Sample], val: list[Sample]) -> None:
        """One line at start-up on the layout and split, and warnings on leaks and class imbalance."""
        if self._announced:
            return
        self._announced = True
        if self._layout.presplit and self._layout.val is not None:
            how = "its own split"
        elif self.num_folds is not None:
            how = f"stratified fold {self.fold} ({self.fold + 1} of {self.num_folds}, seed {self.seed})"
        else:
            how = f"stratified {1 - self.val_fraction:.0%}/{self.val_fraction:.0%} split (seed {self.seed})"
        grouped = sum(len(group.members) for group in self._groups)
        duplicates = (f"; {len(self._groups)} group(s) of duplicates ({grouped} images)"
                      + (" kept on one side" if self.group_duplicates and not self._layout.presplit else "")
                      if self._groups else "")
        rank_zero_info(f"data: {self._layout.describe()}, {self.num_classes} classes, {how}: "
                       f"{len(train)} training and {len(val)} validation images{duplicates}")
        leaks = self.leaks()
        if leaks:
            files = self._files
            examples = "; ".join(" = ".join(files[i][0] for i in group.members[:2]) for group, _ in leaks[:3])
            rank_zero_warn(f"{self.data_dir}: {len(leaks)} group(s) of duplicate images are in more than one of "
                           f"train/val/test, which inflates the held-out scores (e.g. {examples}); "
                           "see python -m lightning_resnet inspect")
        counts = self.class_counts(train)
        largest, smallest = max(range(len(counts)), key=counts.__getitem__), min(range(len(counts)),
                                                                                  key=counts.__getitem__)
        if self.sampler != "balanced" and counts[largest] > IMBALANCE_WARNING_RATIO * max(counts[smallest], 1):
            names = self.class_names
            rank_zero_warn(f"{self.data_dir}: the classes are imbalanced ({names[largest]}: {counts[largest]} "
                           f"training images, {names[smallest]}: {counts[smallest]}); consider "
                           "--model.class_weights balanced or --data.sampler balanced")

    @property
    def skipped_images(self) -> int:
        """Images that could not be decoded so far, in every split and loader worker."""
        sets = (self.train_set, self.val_set, self.test_set, self.predict_set)
        return sum(dataset.skipped.value for dataset in sets if dataset is not None)

    @property
    def resize_size(self) -> int:
        return resize_size(self.image_size, self.crop_fraction)

    def eval_view(self) -> CenterView:
        """How validation, test and predict read an image: resize, then center-crop ``image_size``."""
        return eval_view(self.image_size, self.crop_fraction, self.channels)

    def train_view(self) -> CenterView | RandomResizedCropView:
        """How training reads an image, before :func:`~lightning_resnet.data.transforms.train_augmentation`."""
        return train_view(self.train_augment, self.image_size, self.crop_fraction, self.crop_scale, self.channels)

    # ----- normalization -----------------------------------------------------------------------

    def training_stats(self) -> Stats:
        """The training split's mean and std (``normalize: auto``): from the cache, or measured and cached."""
        if self._measured is None:
            train, _ = self.split()
            self._measured = cached_mean_std(train, self.eval_view(), self.num_workers, self.image_size,
                                             self.crop_fraction)
        return self._measured

    # ----- Lightning hooks -----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Once per node: write the demo, check and hash the files and measure ``auto`` statistics into the
        caches, which the other processes then read."""
        if self.is_demo and not self.data_dir.exists():
            write_digits_demo(self.data_dir)
        stage = self.trainer.state.fn if self.trainer is not None else None
        if stage != "predict" and self.data_dir.exists():
            self.examine()
            if self.normalize == "auto":
                self.training_stats()

    def setup(self, stage: str) -> None:
        eval_crop = self.eval_view()
        if stage in ("fit", "validate"):
            train, val = self.split()
            self._announce(train, val)
            if self.normalize == "auto":
                self.mean, self.std = self.training_stats()
            self.train_set = ImageSamples(train, self.train_view(), train_augmentation(self.train_augment, self.hflip),
                                          replace_unreadable=True)
            self.val_set = ImageSamples(val, eval_crop)
        if stage == "test":
            self.test_set = ImageSamples(self.test_samples(), eval_crop)
        if stage == "predict":
            if self.predict_dir is None:
                raise UserError("predict needs data.predict_dir: an image file or a folder of images")
            self.predict_paths = scan_unlabelled(self.predict_dir)
            self.predict_set = ImageSamples([(path, path) for path in self.predict_paths], eval_crop)

    def _processes(self) -> tuple[int, int]:
        """(number of training processes, this one's rank): how the loaders share the images out."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    def _loader(self, dataset: ImageSamples, sampler: Sampler, persistent: bool = False, **options: Any) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=on_gpu,
            persistent_workers=persistent and workers > 0,
            collate_fn=collate_readable,
            # its own generator: creating an iterator then draws nothing from torch's global random
            # stream, which an exactly resumed run must find where the interrupted one left it
            generator=torch.Generator().manual_seed(self.seed),
            **options,
        )

    def train_dataloader(self) -> DataLoader:
        """A shuffle (or balanced draw) fixed by ``seed`` and the epoch, resumed mid-epoch from a checkpoint."""
        processes, rank = self._processes()
        if self.sampler == "balanced":
            targets = [target for _, target in self.train_set.samples]
            self._train_sampler = BalancedDraw(targets, num_replicas=processes, rank=rank, seed=self.seed)
        else:
            self._train_sampler = ResumableShuffle(self.train_set, num_replicas=processes, rank=rank, seed=self.seed)
        if self._resume_at is not None:
            self._resume_from(*self._resume_at)
        return self._loader(self.train_set, self._train_sampler, persistent=True,
                            drop_last=len(self.train_set) > self.batch_size * processes)

    def _resume_from(self, epoch: int, batches_done: int) -> None:
        self._train_sampler.resume(epoch, batches_done * self.batch_size)
        self._resume_at = None

    def _evaluation_loader(self, dataset: ImageSamples) -> DataLoader:
        return self._loader(dataset, evaluation_sampler(dataset, *self._processes()))

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        # Lightning shares predict sets out among processes without repeats by itself
        return self._loader(self.predict_set, SequentialSampler(self.predict_set))

    def on_after_batch_transfer(self, batch: list[Tensor] | None, dataloader_idx: int) -> list[Tensor] | None:
        """Turn the ``uint8`` images into normalized floats on the device (a list, so callbacks can replace them)."""
        if batch is None:
            return None
        images, targets = batch
        shift, scale = self._normalization(images.device)
        # one conversion and two in-place passes: 4x faster on the CPU than to_dtype + normalize
        return [images.float().sub_(shift).mul_(scale), targets]

    def _normalization(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``mean`` and ``1 / std`` in ``uint8`` units, as broadcastable tensors kept on ``device``."""
        key = f"{device}|{self.mean}|{self.std}"
        if self._normalization_on is None or self._normalization_on[0] != key:
            shift = torch.tensor(self.mean, device=device).view(1, -1, 1, 1) * 255
            scale = 1 / (torch.tensor(self.std, device=device).view(1, -1, 1, 1) * 255)
            self._normalization_on = (key, shift, scale)
        return self._normalization_on[1:]

    # ----- checkpoint state ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Normalization, classes and, during ``fit``, the place in the training epoch (for an exact resume)."""
        state = {"mean": list(self.mean), "std": list(self.std), "class_names": self._class_names}
        if self._train_sampler is not None and self.trainer is not None and self.trainer.state.fn == "fit":
            # Lightning's count of the epoch's completed batches is also where its loop resumes
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.completed
            state["train_position"] = [self._train_sampler.epoch, done]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.mean = tuple(state_dict["mean"])
        self.std = tuple(state_dict["std"])
        if "train_position" in state_dict:
            self._resume_at = tuple(state_dict["train_position"])
            if self._train_sampler is not None:  # the loader came first (some strategies restore late)
                self._resume_from(*self._resume_at)
        saved = state_dict.get("class_names")
        if saved is None:
            return
        if self._class_names is not None and list(saved) != self._class_names:
            raise UserError(f"the checkpoint's classes ({', '.join(saved)}) differ from the data module's "
                            f"({', '.join(self._class_names)}): use the data the model was trained on")
        self._class_names = list(saved)
