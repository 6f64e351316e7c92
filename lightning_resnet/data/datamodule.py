"""``ImageFolderDataModule``: a folder of class sub-folders in, normalized batches on the device out.

The path of an image, in the order of this package's files: ``folders`` finds and checks it,
``decode`` and ``transforms`` turn it into a ``uint8`` crop in a loader worker, ``dataset``
batches it, and :meth:`ImageFolderDataModule.on_after_batch_transfer` normalizes it on the
device with the statistics of ``normalization``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, SequentialSampler, random_split

from ..errors import UserError, check
from .dataset import ImageSamples, Sample, collate_readable
from .folders import (
    DEMO_DATA,
    DEMO_DIR,
    LayoutError,
    scan_image_folder,
    scan_unlabelled,
    without_unreadable,
    write_digits_demo,
)
from .normalization import Normalize, Stats, cached_mean_std, imagenet_stats
from .samplers import ResumableShuffle, evaluation_sampler
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

    @property
    def skipped_images(self) -> int: ...


def image_data(trainer: Trainer) -> ImageData | None:
    """The trainer's data module when it is one of this project's kind, else None (plain dataloaders)."""
    datamodule = trainer.datamodule
    return datamodule if isinstance(datamodule, ImageData) else None


class ImageFolderDataModule(LightningDataModule):
    """Train / validation split of a folder of class sub-folders, plus optional test and predict inputs.

    Args:
        data_dir: folder with one sub-folder of images per class; ``demo:digits`` writes and uses
            scikit-learn's digits under ``data/digits``.
        val_fraction: share of ``data_dir`` held out for validation by a random split.
        seed: seed of that split; the same seed gives the same split on every machine and process.
        test_dir: optional folder laid out like ``data_dir`` for ``test``.
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
            only each file's header and last bytes. A file that fails later is skipped and counted.
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
        self._samples: list[Sample] | None = None  # every readable image of data_dir, after the first scan
        self._measured: Stats | None = None  # the training split's statistics once read or measured
        self.train_set: ImageSamples | None = None
        self.val_set: ImageSamples | None = None
        self.test_set: ImageSamples | None = None
        self.predict_set: ImageSamples | None = None
        self.predict_paths: list[str] = []
        self._train_sampler: ResumableShuffle | None = None
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

    # ----- classes and split -------------------------------------------------------------------

    def _scan(self) -> list[Sample]:
        """Every readable image of ``data_dir`` with its class index; the folder is read and checked once."""
        if self._samples is None:
            if self.is_demo and not self.data_dir.exists():
                write_digits_demo(self.data_dir)
            self._class_names, samples = scan_image_folder(self.data_dir, self._class_names)
            self._samples = without_unreadable(samples, self.data_dir) if self.verify_images else samples
        return self._samples

    @property
    def class_names(self) -> list[str]:
        """The classes in index order. Unless given, the first read scans and checks ``data_dir`` (once)."""
        if self._class_names is None:
            self._scan()
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """The number of classes; like :attr:`class_names`, the first read may scan ``data_dir``."""
        return len(self.class_names)

    def split(self) -> tuple[list[Sample], list[Sample]]:
        """The (train, validation) samples: a random split fixed by ``seed``."""
        samples = self._scan()
        generator = torch.Generator().manual_seed(self.seed)
        train, val = random_split(range(len(samples)), [1 - self.val_fraction, self.val_fraction], generator)
        if len(train) == 0 or len(val) == 0:
            raise LayoutError(
                f"{self.data_dir} has {len(samples)} images: too few for a {self.val_fraction:.0%} validation split"
            )
        return [samples[i] for i in train.indices], [samples[i] for i in val.indices]

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
        """Once per node: write the demo, and measure ``auto`` statistics into the cache for every process."""
        if self.is_demo and not self.data_dir.exists():
            write_digits_demo(self.data_dir)
        if self.normalize == "auto" and self.data_dir.exists():
            self.training_stats()

    def setup(self, stage: str) -> None:
        eval_crop = self.eval_view()
        if stage in ("fit", "validate"):
            train, val = self.split()
            if self.normalize == "auto":
                self.mean, self.std = self.training_stats()
            self.train_set = ImageSamples(train, self.train_view(), train_augmentation(self.train_augment, self.hflip),
                                          replace_unreadable=True)
            self.val_set = ImageSamples(val, eval_crop)
        if stage == "test":
            if self.test_dir is None:
                raise UserError("test needs data.test_dir: a folder laid out like data_dir (<class name>/<images>)")
            _, samples = scan_image_folder(self.test_dir, self.class_names)
            if self.verify_images:
                samples = without_unreadable(samples, self.test_dir)
            self.test_set = ImageSamples(samples, eval_crop)
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
        """A shuffle fixed by ``seed`` and the epoch, which Lightning resumes mid-epoch from a checkpoint."""
        processes, rank = self._processes()
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
