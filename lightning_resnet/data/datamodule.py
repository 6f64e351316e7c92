"""``ImageFolderDataModule``: the data options of a run, Lightning's hooks, and the normalization on the device.

What holds the images is a source (:mod:`.sources`: a folder, a converted data set), which lists, checks
and splits them; ``transforms`` turns each into a ``uint8`` crop in a loader worker, ``loaders`` batches them,
and :meth:`ImageFolderDataModule.on_after_batch_transfer` normalizes them on the device (``normalization``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import check
from ..stages import TEST, VAL
from ..tasks import Task, TaskName, task_of
from .dataset import ImageSamples
from .digits import DIGITS_DATA
from .geometry import Geometry, ResizeMode
from .listing import scan_unlabelled
from .loaders import (
    LoaderSettings,
    TrainingLoader,
    evaluation_loader,
    prediction_loader,
    processes_of,
    settings_for,
    training_batches_done,
)
from .normalization import Normalization, Normalize, check_normalize, chosen_normalization, unlike_the_weights
from .previous_run import PreviousRun, RehearsalChoice, rehearsal_images
from .sources import ImageSource, SamplerKind, SourceOptions, open_source
from .transforms import AugmentPreset, Views
from .unlabelled_pool import UnlabelledImages


def datamodule_of(trainer: Trainer) -> ImageFolderDataModule | None:
    """The trainer's data module when it is this project's, else None (plain dataloaders)."""
    datamodule = trainer.datamodule
    return datamodule if isinstance(datamodule, ImageFolderDataModule) else None


class ImageFolderDataModule(LightningDataModule):
    """Train / validation split of a folder of images, plus optional test and predict inputs.

    Args:
        data_dir: a folder with one sub-folder of images per class, split here; or split already (``train/<class>/``,
            ``val/``, optionally ``test/``); ``demo:digits`` or another data set by name (``cifar10``, ...); or a
            data set ``convert`` wrote (LitData's format; a folder or a bucket URL), with its own split and classes.
        val_fraction: share of each class held out for validation (a stratified random split; of ``train/``
            in a pre-split folder without ``val/``).
        seed: seed of that split, the same on every machine and process.
        num_folds: split into this many stratified folds instead (k-fold cross-validation, ``cross_validate``);
            ``fold`` is held out. A data set converted with ``num_folds`` needs the same number here.
        fold: the fold held out, from 0 to ``num_folds - 1``.
        exclude: a CSV file with a ``path`` column (as ``inspect --predictions`` writes): those images are left out
            of training and validation (``split.csv``: ``excluded``).
        relabel: a CSV file with ``path`` and ``label`` columns: those images are trained and validated as ``label``.
        group_duplicates: keep each group of exact and near copies (cached) on one side of the split; copies
            shared by the parts of a pre-split folder are reported as leaks.
        sampler: ``shuffle`` (each training image once an epoch) or ``balanced`` (every class equally often; DDP too).
        test_dir: folder laid out like ``data_dir`` for ``test``; by default a pre-split folder's ``test/``.
        predict_dir: an image file or a folder of images for ``predict``.
        image_size: the size of the images the model sees: one side (a square) or ``[height, width]``.
        crop_fraction: ``crop``: the share of the resized image the centre crop keeps (0.875, ImageNet's; 1.0: all).
        resize: how an image of another shape is fitted to ``image_size`` (:mod:`.geometry`): ``crop`` (its centre),
            ``squish`` or ``pad`` (letterboxed); by default ``pad`` for label sets, ``crop`` for one class per image.
        pad_fill: ``pad``: the level (0-255) of the letterbox's bars.
        train_augment: the training augmentation (:data:`.transforms.AugmentPreset`): ``basic``, ``pad_crop`` (the
            ResNet paper's CIFAR one), ``standard``, or it then ``trivialaugment``, ``randaugment`` or ``autoaugment``.
        crop_scale: area range of the random resized crop (0.08-1 for ImageNet; narrower for small images).
        hflip: probability of a horizontal flip (0 for digits and text).
        normalize: ``imagenet``, ``auto`` (the training split's, measured once, cached), ``{mean: [...], std: [...]}``
            (per channel, in [0, 1] units), or null (the default): ``model.pretrained``'s weights', else ImageNet's.
        batch_size: images per batch and process.
        num_workers: loader processes of each training process; by default the run's cores shared among its
            training processes, less one for each (at least one).
        verify_images: at setup, leave out (and list) empty, truncated and undecodable files (each file's header
            and last bytes read, cached). A file that fails later is skipped and counted.
        class_names: the classes in index order; read from ``data_dir`` when not given (a checkpoint gives its own).
        channels: image channels, 3 (RGB) or 1 (gray); linked from ``model.backbone_options.in_chans``.
        weights_normalization: ``[mean, std]`` of the pretrained weights; linked from ``model.pretrained``.
        weighted_loss: whether the model weighs its loss by class (from ``model.class_weights``: no imbalance hint).
        extra_labels: a ``pseudo_labels.csv`` (``pseudo_label``): its images join the training part (as ``pseudo``).
        labels: a CSV file listing the images instead of class folders: ``path`` (relative to ``data_dir``, by
            default the file's folder), ``labels`` (the class, or labels separated by spaces), optionally ``split``.
        multilabel: whether the images of ``labels`` have label sets (a sigmoid per label); by default, if a row has.
        unlabelled_dir: a folder of images without labels (flat, or class folders whose names are ignored) that
            ``fit`` trains on beside the labelled ones, as ``model.semi_supervised`` says (:mod:`.unlabelled_pool`).
        unlabelled_ratio: unlabelled images per labelled image in a training batch (FixMatch's 7).
        rehearsal: with ``model.extend``, up to this many training images of each old class, from the old run's
            ``split.csv``, join the training part (``split.csv``: ``rehearsal``); 0: none (the old model's answers
            alone keep the old classes).
        rehearsal_choice: which of a class's images: ``random`` or ``closest_to_mean`` (of the old model's
            features); measured in benchmarks/README.md, "Adding classes".
        extends: the checkpoint of the model an extended run grows; linked from ``model.extend``.
    """

    def __init__(
        self,
        data_dir: str = DIGITS_DATA,
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
        image_size: int | list[int] = 224,
        crop_fraction: float = 0.875,
        resize: ResizeMode | None = None,
        pad_fill: int = 0,
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
        extra_labels: str | None = None,
        labels: str | None = None,
        multilabel: bool | None = None,
        unlabelled_dir: str | None = None,
        unlabelled_ratio: int = 7,
        rehearsal: int = 0,
        rehearsal_choice: RehearsalChoice = "random",
        extends: str | None = None,
    ) -> None:
        super().__init__()
        check(rehearsal >= 0, f"data.rehearsal must be 0 or more images per old class, got {rehearsal}")
        check(extends is None or num_folds is None, "model.extend trains one model on the split of its folder: it "
                                                   "does not go with data.num_folds (cross_validate)")
        check(rehearsal == 0 or extends is not None,
              "data.rehearsal keeps images of the classes of the model extended: it needs model.extend")
        self.save_hyperparameters(ignore=["class_names"])  # for the checkpoint and TensorBoard only: read below
        LoaderSettings(batch_size, num_workers or 0, seed)  # the loader options checked where they arrive
        check_normalize(normalize, channels)
        self.source: ImageSource = open_source(SourceOptions.from_data_options({**self.hparams,
                                                                                 "class_names": class_names}))
        """What holds the images: a folder, a labels file or a converted data set (:func:`~.sources.open_source`)."""
        self.data_dir = self.source.location
        self.multilabel = multilabel
        self.seed = seed
        self.predict_dir = predict_dir
        self.train_augment = train_augment
        self.normalize = normalize
        self.batch_size = batch_size
        self.num_workers_option = num_workers
        self.channels = channels
        self.geometry = Geometry.of(image_size, resize or self.task_kind.default_resize, crop_fraction, pad_fill)
        """The input size and how an image is fitted to it (a trained model keeps it); :attr:`views` read by it."""
        self.views = Views.of(self.geometry, channels, train_augment, crop_scale, hflip)
        self.rehearsal = rehearsal
        self.rehearsal_choice = rehearsal_choice
        check(extends is None or self.task_kind.extension_refused is None, str(self.task_kind.extension_refused))
        self.unlabelled = UnlabelledImages(unlabelled_dir, unlabelled_ratio) if unlabelled_dir is not None else None
        self.weights_normalization = (Normalization(tuple(weights_normalization[0]), tuple(weights_normalization[1]))
                                      if weights_normalization is not None else None)
        self._saved_normalization: Normalization | None = None  # a checkpoint's, which wins over every other
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.predict_set: ImageSamples | None = None
        self.predict_paths: list[str] = []
        self._train_loader: TrainingLoader | None = None
        self._saved_position: dict[str, Any] | None = None  # a checkpoint's place in the epoch, until the loader is

    @property
    def num_workers(self) -> int:
        """Loader processes per training process: ``num_workers``, or the default that shares the cores."""
        return self._loader_settings().num_workers

    @property
    def class_names(self) -> list[str]:
        """The classes in index order: the given ones, else the source's (a folder is listed on the first read)."""
        return list(self.source.class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def task(self) -> TaskName:
        """The name of :attr:`task_kind`, which the command line links to the model."""
        return self.task_kind.name

    @property
    def task_kind(self) -> Task:
        """The task the images make: label sets (``multilabel`` given, else as the labels file says) or one class."""
        return task_of(self.multilabel) if self.multilabel is not None else self.source.task

    @property
    def previous_run(self) -> PreviousRun | None:
        """The run of the model this run extends (``model.extend``), or None."""
        return self.source.previous

    def rehearse(self, features: Tensor | None = None) -> int:
        """Add ``rehearsal`` images of each old class to the training part, chosen by ``rehearsal_choice`` (by the
        old model's ``features`` of the previous run's training images, for ``closest_to_mean``); how many."""
        previous = self.previous_run
        if previous is None or not self.rehearsal:
            return 0
        added = self.source.rehearse(rehearsal_images(previous, self.rehearsal, self.rehearsal_choice, self.seed,
                                                      features))
        if self.train_set is not None:
            self.train_set = self._training_set()
        return added

    def use_normalization(self, normalization: Normalization) -> None:
        """Normalize as a trained model did (an extended model's), whatever ``normalize`` says."""
        self._saved_normalization = normalization

    def training_class_counts(self) -> list[int]:
        """Images of each class in the training split (what ``model.class_weights: balanced`` weighs by)."""
        return self.source.training_class_counts()

    def options(self) -> dict[str, Any]:
        """The data options as the run was given them, as plain data: what a trained model's provenance keeps, from
        which :meth:`~.sources.SourceOptions.from_data_options` opens the same images, split the same way."""
        return {key: value for key, value in self.hparams.items() if not key.startswith("_")}

    @property
    def skipped_images(self) -> int:
        """Images that could not be decoded so far, in every split and loader worker."""
        sets = (self.train_set, self.val_set, self.test_set, self.predict_set)
        return sum(dataset.skipped.value for dataset in sets if dataset is not None)

    @property
    def normalization(self) -> Normalization:
        """The mean and std the images are normalized with: a checkpoint's, else the training split's
        (``normalize: auto``), else the pretrained weights' (``normalize`` null), else ImageNet's."""
        if self._saved_normalization is not None:
            return self._saved_normalization
        if self.normalize == "auto":
            return self.source.measured_normalization(self.views.evaluation, self.num_workers)
        return chosen_normalization(self.normalize, self.channels, self.weights_normalization)

    # ----- Lightning hooks -----------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Once per node: check, hash and split the images and measure ``auto`` statistics into the caches, which
        the other processes then read."""
        if self.trainer is not None and self.trainer.state.fn == "predict":
            return
        self.source.prepare()
        if self.normalize == "auto" and self._saved_normalization is None:
            self.source.measured_normalization(self.views.evaluation, self.num_workers)
        if self.unlabelled is not None and self.trainer is not None and self.trainer.state.fn == "fit":
            self.unlabelled.prepare()

    def setup(self, stage: str) -> None:
        unlike = unlike_the_weights(self.normalize, self.normalization, self.weights_normalization)
        for note in (unlike, self.geometry.cropping_note(self.source.image_sizes())) if stage == "fit" else ():
            if note:
                rank_zero_warn(note)
        if stage in ("fit", "validate"):
            self.train_set = self._training_set()
            self.val_set = self.source.evaluation_set(VAL, self.views.evaluation)
            if self.unlabelled is not None and stage == "fit":
                self.unlabelled.setup(self.source, self.views)
        elif stage == "test":
            self.test_set = self.source.evaluation_set(TEST, self.views.evaluation)
        elif stage == "predict":
            check(self.predict_dir is not None, "predict needs data.predict_dir: an image file or a folder of images")
            self.predict_paths = scan_unlabelled(Path(self.predict_dir).expanduser())
            self.predict_set = ImageSamples([(path, path) for path in self.predict_paths], self.views.evaluation)

    def _training_set(self) -> Dataset:
        return self.source.training_set(self.views.training, self.views.augmentation, self._loader_settings(),
                                        processes_of(self.trainer)[0])

    def _loader_settings(self) -> LoaderSettings:
        return settings_for(self.trainer, self.batch_size, self.num_workers_option, self.seed)

    def train_dataloader(self) -> DataLoader:
        """A shuffle (or balanced draw) fixed by ``seed`` and the epoch, resumed mid-epoch from a checkpoint."""
        settings, processes = self._loader_settings(), processes_of(self.trainer)
        self._train_loader = self.source.training_loader(self.train_set, settings, *processes,
                                                         partial(training_batches_done, self.trainer))
        if self.unlabelled is not None:
            self._train_loader = self.unlabelled.beside(self._train_loader, settings, *processes)
        if self._saved_position is not None:
            self._train_loader.resume(self._saved_position)
            self._saved_position = None
        return self._train_loader.loader

    def val_dataloader(self) -> DataLoader:
        return evaluation_loader(self.val_set, self._loader_settings(), *processes_of(self.trainer))

    def test_dataloader(self) -> DataLoader:
        return evaluation_loader(self.test_set, self._loader_settings(), *processes_of(self.trainer))

    def predict_dataloader(self) -> DataLoader:
        return prediction_loader(self.predict_set, self._loader_settings())

    def on_after_batch_transfer(self, batch: list[Tensor] | None, dataloader_idx: int) -> list[Tensor] | None:
        """Turn the ``uint8`` images into normalized floats on the device (a list, so callbacks can replace them);
        a batch of cached backbone features (rows, not images) is passed on as it is."""
        if batch is None:
            return None
        if isinstance(batch, Tensor):  # images alone: the example input of the layer table at the start of fit
            return self.normalization(batch)
        if isinstance(batch[0], list):  # labelled, then unlabelled images (data.unlabelled_dir)
            (images, targets), ((weak, strong), _) = batch
            return [self.normalization(images), targets, [self.normalization(weak), self.normalization(strong)]]
        images, targets = batch
        return [images if images.ndim == 2 else self.normalization(images), targets]

    # ----- checkpoint state ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Normalization, classes and, during ``fit``, the place in the training epoch (for an exact resume)."""
        normalization = self.normalization
        known = self.source.known_class_names()
        state = {"mean": list(normalization.mean), "std": list(normalization.std),
                 "class_names": list(known) if known else None}
        done = training_batches_done(self.trainer)
        if self._train_loader is not None and done is not None:
            # where Lightning's loop resumes: after the batches whose step ran (the next epoch's start after all)
            state.update(self._train_loader.position(done, self.trainer.num_training_batches))
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._saved_normalization = Normalization(tuple(state_dict["mean"]), tuple(state_dict["std"]))
        if self._train_loader is not None:  # the loader came first (some strategies restore late)
            self._train_loader.resume(state_dict)
        else:
            self._saved_position = state_dict
        if state_dict.get("class_names") is not None:
            self.source.use_class_names(tuple(state_dict["class_names"]))
