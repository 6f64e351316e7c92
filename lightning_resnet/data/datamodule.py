"""``ImageFolderDataModule``: a folder of class sub-folders in, normalized batches on the device out.

The path of an image, in the order of this package's files: ``folders`` lists it, ``catalog``
checks and hashes it (once per folder, ``cache``), ``duplicates`` and ``splits`` put it on one side
of the split, all of it gathered once in an immutable ``index``; ``decode`` and ``transforms``
turn it into a ``uint8`` crop in a loader worker, ``dataset`` and ``samplers`` batch it, and
:meth:`ImageFolderDataModule.on_after_batch_transfer` normalizes it on the device
(``normalization``). This module holds the Lightning hooks. (It is over 300 lines because the class
docstring is the ``data`` section of ``--help``, and its options are checked where they arrive.)
"""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, SequentialSampler

from ..errors import UserError, check
from ..stages import TEST, TRAIN, VAL
from .corrections import EXCLUDED, Corrections, read_corrections
from .dataset import ImageSamples, Sample, collate_readable
from .demo import DEMO_DATA, DEMO_DIR, write_digits_demo
from .folders import FolderLayout, scan_unlabelled
from .index import FolderIndex, FolderListing, SplitRule, announce, index_folder, list_folder, list_test_folder
from .normalization import Normalization, Normalize, cached_mean_std, imagenet_normalization
from .samplers import BalancedDraw, ResumableShuffle, evaluation_sampler
from .streaming import (
    ConvertedData,
    IndexedImages,
    indexed_images,
    is_converted,
    read_converted,
    read_split_rows,
    streamed_images,
    streaming_loader,
)
from .transforms import (
    AugmentPreset,
    CenterView,
    RandomResizedCropView,
    eval_view,
    resize_size,
    train_augmentation,
    train_view,
)

SamplerKind = Literal["shuffle", "balanced"]
"""``shuffle``: every training image once per epoch; ``balanced``: images drawn with replacement, every
class equally often (``WeightedRandomSampler``)."""


def leave_signals_to_the_main_process(worker_id: int) -> None:
    """Loader workers ignore Ctrl-C and SIGTERM sent to the whole process group (a terminal, a cluster
    scheduler): the main process finishes its step, saves and stops them; a worker that died first
    would end the run in a traceback with nothing saved."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check_converted_folds(converted: ConvertedData, num_folds: int | None) -> None:
    """``data.num_folds`` is the number of folds ``converted`` was converted in (none for one split)."""
    folds = converted.num_folds
    if folds is None:
        check(num_folds is None, f"data.num_folds {num_folds}: {converted.root} was converted as one split; "
              f"convert the folder in folds (convert --data.num_folds {num_folds}) or give the folder itself")
    else:
        check(num_folds == folds, f"data.num_folds: {converted.root} was converted in {folds} folds; give "
              f"--data.num_folds {folds} and --data.fold 0 to {folds - 1} (cross_validate runs them all)")


def datamodule_of(trainer: Trainer) -> ImageFolderDataModule | None:
    """The trainer's data module when it is this project's, else None (plain dataloaders)."""
    datamodule = trainer.datamodule
    return datamodule if isinstance(datamodule, ImageFolderDataModule) else None


class ImageFolderDataModule(LightningDataModule):
    """Train / validation split of a folder of images, plus optional test and predict inputs.

    Args:
        data_dir: a folder with one sub-folder of images per class, split here; or a folder split
            already, with ``train/<class>/`` and ``val/`` (or ``valid/``, ``validation/``) and
            optionally ``test/``, used as it is. ``demo:digits`` writes and uses scikit-learn's
            digits under ``data/digits``. Or a data set written by ``python -m lightning_resnet convert``
            (LitData's streaming format), a folder or a bucket URL (``s3://``, ``gs://``, ``azure://``):
            its split (or folds), classes and measured normalization are the conversion's.
        val_fraction: share of each class held out for validation (a stratified random split);
            a pre-split folder without ``val/`` splits its ``train/`` so.
        seed: seed of that split; the same seed gives the same split on every machine and process.
        num_folds: split into this many stratified folds instead (k-fold cross-validation; see
            ``python -m lightning_resnet cross_validate``); ``fold`` is held out for validation. A data set
            converted with ``num_folds`` needs the same number here.
        fold: the fold held out, from 0 to ``num_folds - 1``.
        exclude: a CSV file with a ``path`` column (an edited ``label_issues.csv`` or ``outliers.csv`` of
            ``inspect --predictions``): those images are left out of training and validation, and listed
            in ``split.csv`` as ``excluded``.
        relabel: a CSV file with ``path`` and ``label`` columns: those images are trained and validated
            under the class ``label`` names instead of their folder's.
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
        normalize: ``imagenet`` mean/std, ``auto`` to measure the training split's once and cache it,
            ``{mean: [...], std: [...]}`` given by hand (one value per channel, in [0, 1] units, as timm's
            ``--mean``/``--std``), or null (the default): the mean/std the pretrained weights were
            trained with when ``model.pretrained`` names them (``weights_normalization``), else ImageNet's.
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
        weighted_loss: whether the model weighs its loss by class (``model.class_weights``); the command
            line links it, so that the start-up's imbalance hint does not suggest what is already done.
    """

    def __init__(
        self,
        data_dir: str = DEMO_DATA,
        val_fraction: float = 0.2,
        seed: int = 42,
        num_folds: int | None = None,
        fold: int = 0,
        exclude: str | None = None,
        relabel: str | None = None,
        group_duplicates: bool = True,
        sampler: SamplerKind = "shuffle",
        test_dir: str | None = None,
        predict_dir: str | None = None,
        image_size: int = 224,
        crop_fraction: float = 0.875,
        train_augment: AugmentPreset = "standard",
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        normalize: Normalize | dict[str, list[float]] | None = None,
        batch_size: int = 32,
        num_workers: int | None = None,
        verify_images: bool = True,
        class_names: list[str] | None = None,
        channels: int = 3,
        weights_normalization: tuple[list[float], list[float]] | None = None,
        weighted_loss: bool = False,
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
        check(not isinstance(normalize, dict) or (
            set(normalize) == {"mean", "std"} and len(normalize["mean"]) == len(normalize["std"]) == channels
            and min(normalize["std"]) > 0),
            f"data.normalize must be imagenet, auto or {{mean: [...], std: [...]}} with {channels} value(s) each "
            f"and every std positive, got {normalize}")
        check(channels in (1, 3),
              f"data.channels (model.backbone_options.in_chans) must be 1 (gray) or 3 (RGB), got {channels}")
        self.save_hyperparameters(ignore=["class_names"])  # for the checkpoint and TensorBoard only: read below

        self.is_demo = data_dir == DEMO_DATA
        self.data_dir = DEMO_DIR if self.is_demo else Path(data_dir).expanduser()
        self.converted: ConvertedData | None = read_converted(data_dir) if is_converted(data_dir) else None
        """The manifest of a converted data set (LitData), which is then read instead of a folder."""
        if self.converted is not None:
            check(sampler == "shuffle", f"data.sampler {sampler} draws from a folder's images; a converted data "
                  "set streams LitData's shuffle: use model.class_weights: balanced (the loss weighed by class)")
            check_converted_folds(self.converted, num_folds)
            check(exclude is None and relabel is None, "data.exclude and data.relabel apply to an image folder: "
                  "give them to convert, which leaves those images out or relabels them")
        self.split_rule = SplitRule(val_fraction, seed, num_folds, fold, group_duplicates)
        self.corrections: Corrections = read_corrections(exclude, relabel, self.data_dir)
        self.seed = seed
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
        self.eval_view: CenterView = eval_view(image_size, crop_fraction, channels)
        """How validation, test and predict read an image: resize, then center-crop ``image_size``."""
        self.train_view: CenterView | RandomResizedCropView = train_view(train_augment, image_size, crop_fraction,
                                                                         self.crop_scale, channels)
        """How training reads an image, before :func:`~.transforms.train_augmentation`."""
        self.weights_normalization = (Normalization(tuple(weights_normalization[0]), tuple(weights_normalization[1]))
                                      if weights_normalization is not None else None)
        self.given_class_names = tuple(class_names) if class_names else None
        self.weighted_loss = weighted_loss

        self._listing: FolderListing | None = None  # the folder listed, once
        self._index: FolderIndex | None = None  # ... then checked, hashed and split, once
        self._measured: Normalization | None = None  # normalize: auto, once measured or read from the cache
        self._saved_normalization: Normalization | None = None  # a checkpoint's, which wins over every other
        self.train_set: ImageSamples | None = None
        self.val_set: ImageSamples | None = None
        self.test_set: ImageSamples | None = None
        self.predict_set: ImageSamples | None = None
        self.predict_paths: list[str] = []
        self._train_sampler: ResumableShuffle | BalancedDraw | None = None
        self._resume_at: tuple[int, int] | None = None  # (epoch, training batches done) of a checkpoint
        self._streaming_loader_state: dict | None = None  # the same for a converted data set: LitData's loader's
        self._train_loader: DataLoader | None = None

    @property
    def num_folds(self) -> int | None:
        return self.split_rule.num_folds

    @property
    def fold(self) -> int:
        return self.split_rule.fold

    @property
    def streams_training(self) -> bool:
        """Whether training streams a converted ``train`` part (LitData's shuffle and loader); a converted fold
        trains on the other folds' parts read by index, in the folder's shuffle."""
        return self.converted is not None and self.converted.num_folds is None

    @property
    def num_workers(self) -> int:
        """Loader processes per training process: ``num_workers``, or the default that shares the cores."""
        if self.num_workers_option is not None:
            return self.num_workers_option
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        local_processes = self.trainer.num_devices if self.trainer is not None else 1
        return max(1, cores // local_processes - 1)

    # ----- the folder: listed, then indexed ------------------------------------------------------

    def listing(self) -> FolderListing:
        """Every image file of ``data_dir`` with its class and part: the folder is listed once (no file read)."""
        if self._listing is None:
            if self.is_demo and not self.data_dir.exists():
                write_digits_demo(self.data_dir)
            self._listing = list_folder(self.data_dir, self.given_class_names)
        return self._listing

    def index(self, find_duplicates: bool | None = None) -> FolderIndex:
        """The folder checked, hashed (``find_duplicates``, ``group_duplicates`` by default) and split: from the
        index already made when it answers the question, else made (from the caches) and announced."""
        hashes = self.split_rule.group_duplicates if find_duplicates is None else find_duplicates
        if self._index is None or (hashes and not self._index.hashed):
            self._index = index_folder(self.listing(), self.split_rule, self.verify_images, hashes, self.corrections)
            announce(self._index, self.split_rule, balanced=self.sampler == "balanced" or self.weighted_loss)
        return self._index

    @property
    def layout(self) -> FolderLayout:
        return self.listing().layout

    @property
    def class_names(self) -> list[str]:
        """The classes in index order: the given ones, else the first read lists ``data_dir`` (once)."""
        if self.given_class_names:
            return list(self.given_class_names)
        return list(self.converted.class_names if self.converted else self.listing().class_names)

    @property
    def num_classes(self) -> int:
        """The number of classes; like :attr:`class_names`, the first read may list ``data_dir``."""
        return len(self.class_names)

    def split(self) -> tuple[list[Sample], list[Sample]]:
        """The (train, validation) samples: a pre-split folder's own, else a stratified random split fixed
        by ``seed`` (or fold ``fold`` of ``num_folds``) that keeps duplicates together."""
        index = self.index()
        return index.samples(index.train), index.samples(index.val)

    def fold_samples(self) -> list[list[Sample]]:
        """The images each fold of ``num_folds`` validates (what ``convert`` writes as ``fold_0``, ``fold_1``, ...)."""
        check(self.num_folds is not None, "fold_samples needs data.num_folds")
        index = self.index()
        return [index.samples(fold) for fold in index.folds]

    def training_class_counts(self) -> list[int]:
        """Images of each class in the training split (what ``model.class_weights: balanced`` weighs by)."""
        if self.converted is not None:
            return self.converted.class_counts_of(self.converted.training_parts(self.fold))
        index = self.index()
        return index.class_counts(index.train)

    @property
    def has_test_set(self) -> bool:
        """Whether ``test`` has images to read: ``test_dir``, or a pre-split folder's ``test/``."""
        if self.converted is not None:
            return self.test_dir is not None or self.converted.has(TEST)
        return self.test_dir is not None or self.layout.test is not None

    def test_samples(self) -> list[Sample]:
        """The labelled images of ``test``: ``test_dir``, else a pre-split folder's ``test/``."""
        if self.test_dir is not None:
            return list_test_folder(self.test_dir, self.class_names, self.verify_images)
        if self.layout.test is None:
            raise UserError("test needs data.test_dir, or a test/ folder beside train/ in data.data_dir: "
                            "a folder laid out like data_dir (<class name>/<images>)")
        index = self.index()
        return index.samples(index.test)

    def split_rows(self) -> list[tuple[str, str, str]]:
        """``(path, split, class)`` of every image the run uses: what ``split.csv`` holds."""
        if self.converted is not None:
            return read_split_rows(self.converted, self.fold)
        names = self.class_names
        train, val = self.split()
        rows = [(path, TRAIN, names[target]) for path, target in train]
        rows += [(path, VAL, names[target]) for path, target in val]
        if self.has_test_set:
            rows += [(path, TEST, names[target]) for path, target in self.test_samples()]
        index = self.index()
        rows += [(path, EXCLUDED, names[target]) for path, target in index.samples(index.excluded)]
        return rows

    @property
    def skipped_images(self) -> int:
        """Images that could not be decoded so far, in every split and loader worker."""
        sets = (self.train_set, self.val_set, self.test_set, self.predict_set)
        return sum(dataset.skipped.value for dataset in sets if dataset is not None)

    @property
    def resize_size(self) -> int:
        return resize_size(self.image_size, self.crop_fraction)

    # ----- normalization -----------------------------------------------------------------------

    @property
    def normalization(self) -> Normalization:
        """The mean and std the images are normalized with: a checkpoint's, else the training split's
        (``normalize: auto``), else the pretrained weights' (``normalize`` null), else ImageNet's."""
        if self._saved_normalization is not None:
            return self._saved_normalization
        if self.normalize == "auto" and self.converted is not None:
            measured = self.converted.normalizations
            check(bool(measured),
                  f"data.normalize auto: {self.converted.root} was converted without measuring its training split; "
                  "convert with --data.normalize auto, or give data.normalize")
            return measured[self.fold]  # one per fold, or the one split's (fold 0)
        if self.normalize == "auto":
            return self.measured_normalization()
        if isinstance(self.normalize, dict):
            return Normalization(tuple(self.normalize["mean"]), tuple(self.normalize["std"]))
        if self.normalize is None and self.weights_normalization is not None:
            return self.weights_normalization
        return imagenet_normalization(self.channels)

    def measured_normalization(self, samples: list[Sample] | None = None) -> Normalization:
        """The mean and std of ``samples``, by default the training split's (``normalize: auto``), as evaluation
        sees them: from the cache, or measured and cached."""
        if samples is not None:
            return Normalization(*cached_mean_std(samples, self.eval_view, self.num_workers, self.image_size,
                                                  self.crop_fraction, self.channels))
        if self._measured is None:
            self._measured = self.measured_normalization(self.split()[0])
        return self._measured

    # ----- Lightning hooks -----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Once per node: write the demo, check and hash the files and measure ``auto`` statistics into the
        caches, which the other processes then read."""
        if self.is_demo and not self.data_dir.exists():
            write_digits_demo(self.data_dir)
        stage = self.trainer.state.fn if self.trainer is not None else None
        if stage != "predict" and self.converted is not None:
            rank_zero_info(self.converted.describe(self.fold))
        elif stage != "predict" and self.data_dir.exists():
            self.index()
            if self.normalize == "auto" and self._saved_normalization is None:
                self.measured_normalization()

    def setup(self, stage: str) -> None:
        eval_crop = self.eval_view
        if self.converted is not None and stage in ("fit", "validate", "test"):
            self._setup_streaming(stage)
        elif stage in ("fit", "validate"):
            train, val = self.split()
            self.train_set = ImageSamples(train, self.train_view, train_augmentation(self.train_augment, self.hflip),
                                          replace_unreadable=True)
            self.val_set = ImageSamples(val, eval_crop)
        elif stage == "test":
            self.test_set = ImageSamples(self.test_samples(), eval_crop)
        if stage == "predict":
            if self.predict_dir is None:
                raise UserError("predict needs data.predict_dir: an image file or a folder of images")
            self.predict_paths = scan_unlabelled(self.predict_dir)
            self.predict_set = ImageSamples([(path, path) for path in self.predict_paths], eval_crop)

    def _setup_streaming(self, stage: str) -> None:
        """The parts of a converted data set, created here, where the process group of DDP exists (LitData
        shares the chunks out among the processes it finds when the data set is created)."""
        converted = self.converted
        if stage in ("fit", "validate"):
            augmentation = train_augmentation(self.train_augment, self.hflip)
            if self.streams_training:
                processes, _ = self._processes()
                # uneven batches across processes would hang DDP (LitData #233); BatchNorm cannot train on one image
                drop_last = processes > 1 or converted.size(TRAIN) % self.batch_size == 1
                self.train_set = streamed_images(converted, self.train_view, augmentation, self.seed, drop_last)
            else:
                self.train_set = indexed_images(converted, converted.training_parts(self.fold), self.train_view,
                                                augmentation)
            self.val_set = indexed_images(converted, [converted.validation_part(self.fold)], self.eval_view)
        if stage == "test":
            if self.test_dir is not None:
                self.test_set = ImageSamples(self.test_samples(), self.eval_view)
            else:
                check(converted.has(TEST), f"test needs data.test_dir: {converted.root} has no test part")
                self.test_set = indexed_images(converted, [TEST], self.eval_view)

    def _processes(self) -> tuple[int, int]:
        """(number of training processes, this one's rank): how the loaders share the images out."""
        if self.trainer is None:
            return 1, 0
        return self.trainer.world_size, self.trainer.global_rank

    @property
    def _on_gpu(self) -> bool:
        return self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"

    def _loader(self, dataset: ImageSamples, sampler: Sampler, persistent: bool = False, **options: Any) -> DataLoader:
        workers = self.num_workers
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self._on_gpu,
            persistent_workers=persistent and workers > 0,
            collate_fn=collate_readable,
            # its own generator: creating an iterator then draws nothing from torch's global random
            # stream, which an exactly resumed run must find where the interrupted one left it
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=leave_signals_to_the_main_process,
            **options,
        )

    def _streaming_train_loader(self) -> DataLoader:
        """LitData's loader over the training part (it shares the chunks out among processes and workers)."""
        return streaming_loader(self.train_set, self.batch_size, self.num_workers, collate_readable,
                                self._training_batches_done,
                                pin_memory=self._on_gpu, worker_init_fn=leave_signals_to_the_main_process,
                                generator=torch.Generator().manual_seed(self.seed))

    def _training_batches_done(self) -> int | None:
        """Training batches whose optimizer step ran in this epoch (where Lightning's loop resumes; a save inside
        ``on_train_batch_end`` comes before its batch counts as completed); None outside ``fit``."""
        if self.trainer is None or self.trainer.state.fn != "fit":
            return None
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        """A shuffle (or balanced draw) fixed by ``seed`` and the epoch, resumed mid-epoch from a checkpoint."""
        if self.streams_training:
            self._train_loader = self._streaming_train_loader()
            if self._streaming_loader_state is not None:
                self._resume_streaming()
            return self._train_loader
        processes, rank = self._processes()
        if self.sampler == "balanced":
            targets = [target for _, target in self.train_set.samples]
            self._train_sampler = BalancedDraw(targets, num_replicas=processes, rank=rank, seed=self.seed)
        else:
            self._train_sampler = ResumableShuffle(self.train_set, num_replicas=processes, rank=rank, seed=self.seed)
        if self._resume_at is not None:
            self._resume_from(*self._resume_at)
        # every process gets ceil(images / processes) (DDP's sampler pads); only a last batch of one image is
        # dropped, which BatchNorm cannot train on
        per_process = math.ceil(len(self.train_set) / processes)
        return self._loader(self.train_set, self._train_sampler, persistent=True,
                            drop_last=per_process % self.batch_size == 1)

    def _resume_from(self, epoch: int, batches_done: int) -> None:
        self._train_sampler.resume(epoch, batches_done * self.batch_size)
        self._resume_at = None

    def _resume_streaming(self) -> None:
        # Lightning restores a loader's state only when it builds the loader after the checkpoint is read, and
        # it builds it before, to count the steps of a learning-rate schedule: the state travels here instead
        self._train_loader.load_state_dict(self._streaming_loader_state)
        self._streaming_loader_state = None

    def _evaluation_loader(self, dataset: ImageSamples | IndexedImages) -> DataLoader:
        return self._loader(dataset, evaluation_sampler(dataset, *self._processes()))

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        # Lightning shares predict sets out among processes without repeats by itself
        return self._loader(self.predict_set, SequentialSampler(self.predict_set))

    def on_after_batch_transfer(self, batch: list[Tensor] | None, dataloader_idx: int) -> list[Tensor] | None:
        """Turn the ``uint8`` images into normalized floats on the device (a list, so callbacks can replace them);
        a batch of cached backbone features (rows, not images) is passed on as it is."""
        if batch is None:
            return None
        images, targets = batch
        return [images if images.ndim == 2 else self.normalization(images), targets]

    # ----- checkpoint state ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Normalization, classes and, during ``fit``, the place in the training epoch (for an exact resume)."""
        normalization = self.normalization
        state = {"mean": list(normalization.mean), "std": list(normalization.std),
                 "class_names": self.class_names if self.given_class_names or self._listing else None}
        if self._train_sampler is not None and self.trainer is not None and self.trainer.state.fn == "fit":
            # Where Lightning's loop resumes: after every batch whose optimizer step ran (processed; a save
            # inside on_train_batch_end comes before the batch counts as completed), and at the next
            # epoch's start once the epoch's batches are all done
            done = self._training_batches_done()
            epoch = self._train_sampler.epoch
            if done >= self.trainer.num_training_batches:
                epoch, done = epoch + 1, 0
            state["train_position"] = [epoch, done]
        if self._train_loader is not None and self._training_batches_done() is not None:
            state["streaming_position"] = self._train_loader.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._saved_normalization = Normalization(tuple(state_dict["mean"]), tuple(state_dict["std"]))
        if "train_position" in state_dict:
            self._resume_at = tuple(state_dict["train_position"])
            if self._train_sampler is not None:  # the loader came first (some strategies restore late)
                self._resume_from(*self._resume_at)
        if "streaming_position" in state_dict:
            self._streaming_loader_state = state_dict["streaming_position"]
            if self._train_loader is not None:
                self._resume_streaming()
        saved = state_dict.get("class_names")
        if saved is None:
            return
        known = self.given_class_names or (self.converted.class_names if self.converted
                                           else self._listing.class_names if self._listing else None)
        if known is not None and list(saved) != list(known):
            raise UserError(f"the checkpoint's classes ({', '.join(saved)}) differ from the data module's "
                            f"({', '.join(known)}): use the data the model was trained on")
        self.given_class_names = tuple(saved)
