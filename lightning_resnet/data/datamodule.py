"""``ImageFolderDataModule``: the data options of a run, Lightning's hooks, and the normalization on the device.

What holds the images is a source (:mod:`.sources`: a folder, a converted data set), which lists, checks
and splits them; ``transforms`` turns each into a ``uint8`` crop in a loader worker, ``loaders`` batches them,
and :meth:`ImageFolderDataModule.on_after_batch_transfer` normalizes them on the device (``normalization``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
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
)
from .normalization import Normalization, Normalize, check_normalize, chosen_normalization, unlike_the_weights
from .sources import ImageSource, SamplerKind, SourceOptions, open_source
from .transforms import AugmentPreset, Views


def datamodule_of(trainer: Trainer) -> ImageFolderDataModule | None:
    """The trainer's data module when it is this project's, else None (plain dataloaders)."""
    datamodule = trainer.datamodule
    return datamodule if isinstance(datamodule, ImageFolderDataModule) else None


class ImageFolderDataModule(LightningDataModule):
    """Train / validation split of a folder of images, plus optional test and predict inputs.

    Args:
        data_dir: a folder with one sub-folder of images per class, split here; or a folder split already, with
            ``train/<class>/`` and ``val/`` (or ``valid/``, ``validation/``) and optionally ``test/``, used as it
            is; ``demo:digits`` (scikit-learn's digits, written to ``data/digits``) or another data set by name
            (``cifar10``, ...); or a data set ``convert`` wrote (LitData's format), a folder or a bucket URL
            (``s3://``, ``gs://``, ``azure://``): its split (or folds), classes and normalization are its own.
        val_fraction: share of each class held out for validation (a stratified random split);
            a pre-split folder without ``val/`` splits its ``train/`` so.
        seed: seed of that split; the same seed gives the same split on every machine and process.
        num_folds: split into this many stratified folds instead (k-fold cross-validation, ``cross_validate``);
            ``fold`` is held out. A data set converted with ``num_folds`` needs the same number here.
        fold: the fold held out, from 0 to ``num_folds - 1``.
        exclude: a CSV file with a ``path`` column (an edited ``label_issues.csv`` or ``outliers.csv`` of ``inspect
            --predictions``): those images are left out of training and validation (``split.csv``: ``excluded``).
        relabel: a CSV file with ``path`` and ``label`` columns: those images are trained and validated as ``label``.
        group_duplicates: keep each group of exact and near copies (found once per folder, cached) on one side of
            the split; copies shared between the parts of a pre-split folder are reported as leaks.
        sampler: ``shuffle`` (each training image once an epoch) or ``balanced`` (every class equally often; DDP too).
        test_dir: folder laid out like ``data_dir`` for ``test``; by default a pre-split folder's ``test/``.
        predict_dir: an image file or a folder of images for ``predict``.
        image_size: the size of the images the model sees: one side (a square) or ``[height, width]``.
        crop_fraction: ``crop``: the share of the resized image the centre crop keeps (0.875, ImageNet's; 1.0 keeps
            the shorter side whole).
        resize: how an image of another shape is fitted to ``image_size`` (:mod:`.geometry`): ``crop`` (its centre),
            ``squish`` or ``pad`` (letterboxed); by default ``pad`` for label sets, ``crop`` for one class per image.
        pad_fill: ``pad``: the level (0-255) of the letterbox's bars.
        train_augment: the training augmentation preset: ``basic`` (evaluation's view), ``pad_crop`` (that view padded
            by an eighth of its side, cut again at random, and flipped: the ResNet paper's CIFAR augmentation),
            ``standard`` (random resized crop, flip), or it then ``trivialaugment``, ``randaugment``, ``autoaugment``.
        crop_scale: area range of the random resized crop (0.08-1 for ImageNet; narrower for small images).
        hflip: probability of a horizontal flip (0 for digits and text).
        normalize: ``imagenet``, ``auto`` (the training split's, measured once and cached), ``{mean: [...], std:
            [...]}`` by hand (per channel, in [0, 1] units, as timm's ``--mean``/``--std``), or null (the default): the
            pretrained weights' (``weights_normalization``) when ``model.pretrained`` names them, else ImageNet's.
        batch_size: images per batch and process.
        num_workers: loader processes of each training process; by default the cores this machine gives the
            run, shared among its training processes, less one for each of them (at least one worker).
        verify_images: at setup, leave out (and list) empty, truncated and undecodable files, reading only each
            file's header and last bytes (cached). A file that fails later is skipped and counted.
        class_names: the classes in index order; read from ``data_dir`` when not given (a checkpoint gives its own).
        channels: image channels, 3 (RGB) or 1 (gray); linked from ``model.backbone_options.in_chans``.
        weights_normalization: ``[mean, std]`` of the pretrained weights; linked from ``model.pretrained``.
        weighted_loss: whether the model weighs its loss by class (linked from ``model.class_weights``; read by the
            start-up's imbalance hint, which then does not suggest it).
        extra_labels: a ``pseudo_labels.csv`` (``pseudo_label``): its images, from outside ``data_dir``, join the
            training part only; ``split.csv`` lists them as ``pseudo``.
        labels: a CSV file listing the images instead of class folders: a ``path`` column (relative to ``data_dir``,
            by default the file's folder), a ``labels`` column (the class, or the labels separated by spaces), and
            optionally a ``split`` column (``train``, ``val``, ``test``) for a set split already.
        multilabel: whether each image of ``labels`` has a set of labels (multi-label classification: a sigmoid
            per label); by default, when some row has two labels or more. The command line links it to the model.
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
    ) -> None:
        super().__init__()
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

    def setup(self, stage: str) -> None:
        unlike = unlike_the_weights(self.normalize, self.normalization, self.weights_normalization)
        if stage == "fit" and unlike:
            rank_zero_warn(unlike)
        if stage == "fit" and (cropping := self.geometry.cropping_note(self.source.image_sizes())):
            rank_zero_warn(cropping)
        if stage in ("fit", "validate"):
            self.train_set = self.source.training_set(self.views.training, self.views.augmentation,
                                                      self._loader_settings(), processes_of(self.trainer)[0])
            self.val_set = self.source.evaluation_set(VAL, self.views.evaluation)
        elif stage == "test":
            self.test_set = self.source.evaluation_set(TEST, self.views.evaluation)
        elif stage == "predict":
            if self.predict_dir is None:
                raise UserError("predict needs data.predict_dir: an image file or a folder of images")
            self.predict_paths = scan_unlabelled(Path(self.predict_dir).expanduser())
            self.predict_set = ImageSamples([(path, path) for path in self.predict_paths], self.views.evaluation)

    def _loader_settings(self) -> LoaderSettings:
        return settings_for(self.trainer, self.batch_size, self.num_workers_option, self.seed)

    def _training_batches_done(self) -> int | None:
        """Training batches whose optimizer step ran in this epoch (where Lightning's loop resumes; a save inside
        ``on_train_batch_end`` comes before its batch counts as completed); None outside ``fit``."""
        if self.trainer is None or self.trainer.state.fn != "fit":
            return None
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        """A shuffle (or balanced draw) fixed by ``seed`` and the epoch, resumed mid-epoch from a checkpoint."""
        self._train_loader = self.source.training_loader(self.train_set, self._loader_settings(),
                                                         *processes_of(self.trainer), self._training_batches_done)
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
        images, targets = batch
        return [images if images.ndim == 2 else self.normalization(images), targets]

    # ----- checkpoint state ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Normalization, classes and, during ``fit``, the place in the training epoch (for an exact resume)."""
        normalization = self.normalization
        known = self.source.known_class_names()
        state = {"mean": list(normalization.mean), "std": list(normalization.std),
                 "class_names": list(known) if known else None}
        done = self._training_batches_done()
        if self._train_loader is not None and done is not None:
            # Where Lightning's loop resumes: after every batch whose optimizer step ran, and at the next
            # epoch's start once the epoch's batches are all done
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
