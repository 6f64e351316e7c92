"""Images without labels: which images of a folder nobody labelled yet (:func:`not_labelled`), and the data of
self-supervised pretraining (``python -m lightning_resnet pretrain``): every image under a folder (flat, or class
folders whose names are ignored), each read as two random views of itself.

The views are the method's (lightly's crops, colour jitter, blur, solarization: two for SimCLR and BYOL, two global
and six local ones for DINO), applied to the decoded image with the image's own seed from the shuffle, so that an
interrupted run resumes to the same views; they go to the device as ``uint8`` and are normalized there, as
:class:`~.datamodule.ImageFolderDataModule`'s images are.
A labelled folder (``knn_dir``) gives the features a k-nearest-neighbour score every epoch: its training part is
the memory bank, its validation part the queries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from ..errors import check
from ..stages import VAL
from .dataset import ImageSamples
from .decode import load_image
from .geometry import Geometry
from .hashing import content_digest
from .listing import scan_unlabelled
from .loaders import TRAIN_POSITION, LoaderSettings, SampledLoader, evaluation_loader, processes_of, settings_for
from .named_sets import named_data_set
from .normalization import Normalization, chosen_normalization, imagenet_normalization
from .sources import SourceOptions, open_source
from .splits import SplitRule
from .transforms import eval_view


def not_labelled(candidates: list[str], labelled: list[str]) -> list[str]:
    """``candidates`` less the ``labelled`` files and their exact copies (the same bytes; only the files of a size
    some candidate has are read)."""
    labelled_paths = {Path(path).resolve() for path in labelled}
    candidates = [path for path in candidates if Path(path).resolve() not in labelled_paths]
    sizes = {Path(path).stat().st_size for path in candidates}
    digests = {content_digest(Path(path).read_bytes()) for path in labelled
               if Path(path).is_file() and Path(path).stat().st_size in sizes}
    return [path for path in candidates if not digests or content_digest(Path(path).read_bytes()) not in digests]


Views = Callable[[int, "Mapping[str, Any] | None"], Callable[[Any], list[Tensor]]]
"""A self-supervised method's views: from the image size and ``data.view_options``, the transform that makes the
views of one image (lightly's: a list of tensors, as many and of what sizes the method compares)."""


class ImageViews:
    """The views a method compares of a ``uint8`` image, each a ``uint8`` tensor (a list: any number, any sizes).

    lightly's blur and solarization draw from NumPy's random stream: it is seeded here from torch's, which the data
    set seeds per image, and restored after (an exact resume needs every draw fixed by the image's seed).
    """

    def __init__(self, transform: Callable[[Any], list[Tensor]]) -> None:
        self.transform = transform

    def __call__(self, image: Tensor) -> list[Tensor]:
        state = np.random.get_state()
        np.random.seed(int(torch.randint(2**31, ())))
        try:
            views = self.transform(TF.to_pil_image(image))
        finally:
            np.random.set_state(state)
        return [TF.to_dtype(view, torch.uint8, scale=True) for view in views]


class DecodedImage:
    """The whole image, its shorter side resized to ``size`` (the views crop from it)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, path: str) -> Tensor:
        return TF.resize(load_image(path, self.size), self.size, antialias=True)


class UnlabelledImages(LightningDataModule):
    """Every image under ``data_dir``, read as the views a method compares; the labelled ``knn_dir``'s images for
    the k-NN score.

    Args:
        data_dir: a folder of images, flat or in class folders (whose names are ignored), searched recursively;
            or a data set by name (``demo:digits``, ``cifar10``, ...: see ``data.data_dir`` of ``fit``).
        knn_dir: a labelled folder (one folder per class), split as ``fit`` splits it (``val_fraction``, ``seed``):
            every epoch, each validation image is classified by its nearest training images in feature space
            (``val/knn_acc``). Optional.
        views: the method's views (:data:`Views`); the command line links them from ``model.method``.
        view_options: keyword options of lightly's transform of the method, e.g. ``{min_scale: 0.2, cj_strength:
            0.5, gaussian_blur: 0.0}`` for small images.
        image_size: side of the square views (DINO's global views; its local ones are smaller).
        val_fraction: the part of ``knn_dir`` used as queries.
        seed: the seed of the shuffle, the views and ``knn_dir``'s split.
        normalize: ``imagenet`` (the default), or ``{mean: [...], std: [...]}``; fine-tune with the same.
        batch_size: images per batch and process (each gives the method's views).
        num_workers: loader processes per training process; by default the cores shared as ``fit`` shares them.
    """

    def __init__(
        self,
        data_dir: str = "data/unlabelled",
        knn_dir: str | None = None,
        views: Views | None = None,
        view_options: dict[str, Any] | None = None,
        image_size: int = 224,
        val_fraction: float = 0.2,
        seed: int = 42,
        normalize: Literal["imagenet"] | dict[str, list[float]] = "imagenet",
        batch_size: int = 64,
        num_workers: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["views"])  # the method's, which its options make again
        LoaderSettings(batch_size, num_workers or 0, seed)  # the loader options checked where they arrive
        check(image_size >= 8, f"data.image_size must be at least 8, got {image_size}")
        self.data_dir = data_dir
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers_option = num_workers
        self.normalization: Normalization = (chosen_normalization(normalize, 3, None) if isinstance(normalize, dict)
                                             else imagenet_normalization(3))
        check(views is not None, "data.views: the views of a self-supervised method are needed "
                                 "(pretrain links them from model.method)")
        self.views = ImageViews(views(image_size, view_options))
        self.decoded = DecodedImage(image_size)
        self.knn_source = (open_source(SourceOptions(knn_dir, SplitRule(val_fraction, seed)))
                           if knn_dir is not None else None)
        self.knn_view = eval_view(Geometry.of(image_size, "crop", 1.0), 3)
        self.train_set: ImageSamples | None = None
        self.knn_sets: tuple[ImageSamples, ImageSamples] | None = None
        self._train_loader: SampledLoader | None = None
        self._saved_position: dict[str, Any] | None = None  # a checkpoint's place in the epoch, until the loader is

    def image_paths(self) -> list[str]:
        """Every image file under ``data_dir`` (a data set by name is written on first use)."""
        named = named_data_set(self.data_dir)
        folder = named.written() if named is not None else Path(self.data_dir).expanduser()
        return scan_unlabelled(folder, option="data.data_dir")

    def prepare_data(self) -> None:
        self.image_paths()
        if self.knn_source is not None:
            self.knn_source.prepare()

    def setup(self, stage: str) -> None:
        paths = self.image_paths()
        check(len(paths) >= 2, f"data.data_dir {self.data_dir} holds {len(paths)} image: pretraining compares "
                               "images with each other and needs at least two")
        self.train_set = ImageSamples([(path, 0) for path in paths], self.decoded, self.views,
                                      replace_unreadable=True)
        if self.knn_source is not None:
            settings = self._loader_settings()
            bank = self.knn_source.training_set(self.knn_view, None, settings, self._processes()[0])
            self.knn_sets = (bank, self.knn_source.evaluation_set(VAL, self.knn_view))

    def _processes(self) -> tuple[int, int]:
        return processes_of(self.trainer)

    def _loader_settings(self) -> LoaderSettings:
        return settings_for(self.trainer, self.batch_size, self.num_workers_option, self.seed)

    def train_dataloader(self) -> DataLoader:
        """A shuffle fixed by ``seed`` and the epoch, resumed mid-epoch from a checkpoint."""
        self._train_loader = SampledLoader(self.train_set, self._loader_settings(), *self._processes())
        if self._saved_position is not None:
            self._train_loader.resume(self._saved_position)
            self._saved_position = None
        return self._train_loader.loader

    def val_dataloader(self) -> list[DataLoader]:
        """The k-NN bank, then its queries; none without ``knn_dir``."""
        if self.knn_sets is None:
            return []
        return [evaluation_loader(part, self._loader_settings(), *self._processes()) for part in self.knn_sets]

    def on_after_batch_transfer(self, batch: list | None, dataloader_idx: int) -> list | None:
        """The ``uint8`` views (a batch of each; or k-NN images) as normalized floats on the device."""
        if batch is None:
            return None
        images, targets = batch
        if isinstance(images, list):
            return [[self.normalization(view) for view in images], targets]
        return [self.normalization(images), targets]

    def state_dict(self) -> dict:
        """The normalization and, during ``fit``, the place in the training epoch (for an exact resume)."""
        state: dict[str, Any] = {"mean": list(self.normalization.mean), "std": list(self.normalization.std)}
        if self._train_loader is not None and self.trainer is not None and self.trainer.state.fn == "fit":
            done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
            state.update(self._train_loader.position(done, self.trainer.num_training_batches))
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        if TRAIN_POSITION not in state_dict:
            return
        if self._train_loader is not None:  # the loader came first (some strategies restore late)
            self._train_loader.resume(state_dict)
        else:
            self._saved_position = state_dict
