"""Features computed once for a frozen backbone (``model.cache_features``): the frozen epochs train the head on them.

While the backbone is frozen and the training view is deterministic (``data.train_augment: basic``),
an image's pooled features are the same in every epoch, in every fold of ``cross_validate`` and in
every trial of ``sweep``; only the head learns. At the start of ``fit`` the backbone (in eval mode)
reads every training and validation image once, and the features go to
``$XDG_CACHE_HOME/lightning_resnet/features/<key>.pt``, keyed by the backbone's weights, the view
(size, crop, channels) and the normalization, with each file's size and modification time: a later
run, fold or trial computes only the images it has not seen. During the frozen epochs the training
and validation sets read the features instead of the files, and the model runs its head on them;
from ``unfreeze_at_epoch`` on they read images again.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from ..data import ImageSamples, collate_readable, datamodule_of
from ..data.cache import cache_dir
from ..errors import UserError, check
from .batch_augmentation import MixupCutmix, RandomErasing

Stamp = tuple[int, int]
"""A file's size and modification time (ns): a changed file is read again."""


def stamp(path: str) -> Stamp:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


class CachedFeatures:
    """The pooled features of a set of image files, a row per path."""

    def __init__(self, paths: list[str], features: Tensor) -> None:
        self.row_of = {path: row for row, path in enumerate(paths)}
        self.features = features

    def __call__(self, path: str) -> Tensor:
        return self.features[self.row_of[path]]


def cache_key(pl_module: LightningModule, view: Any, normalization: Any) -> str:
    """The backbone's weights (every tensor but the classifier's), the view and the normalization, hashed."""
    digest = hashlib.sha256()
    for name, tensor in pl_module.model.state_dict().items():
        if not name.startswith("fc."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(repr((type(view).__name__, vars(view).get("resize_size"), view.channels, str(view.transform),
                        normalization.mean, normalization.std)).encode())
    return digest.hexdigest()[:24]


def _compute(pl_module: LightningModule, paths: list[str], view: Any, normalization: Any, workers: int,
             batch_size: int) -> Tensor:
    dataset = ImageSamples([(path, row) for row, path in enumerate(paths)], view)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_readable)
    network = pl_module.model
    was_training = network.training
    network.eval()
    features: Tensor | None = None
    try:
        with torch.inference_mode():
            for batch in loader:
                check(batch is not None, "model.cache_features: an image could not be read; run with "
                                         "data.verify_images true to leave such files out")
                images, rows = batch
                pooled = network.forward_features(normalization(images.to(pl_module.device))).float().cpu()
                if features is None:
                    features = torch.empty((len(paths), pooled.shape[1]))
                features[rows] = pooled
    finally:
        network.train(was_training)
    return features


class FrozenFeatures(Callback):
    """Computes (or reads from the cache) the frozen backbone's features of the training and validation images at
    the start of ``fit``, and has both sets read them while the backbone is frozen."""

    def __init__(self, unfreeze_at_epoch: int | None = None) -> None:
        self.unfreeze_at_epoch = unfreeze_at_epoch

    def frozen_at(self, epoch: int) -> bool:
        return self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        data = datamodule_of(trainer)
        if data is None:
            raise UserError("model.cache_features needs this project's data module (data.data_dir)")
        check(data.train_augment == "basic",
              f"model.cache_features needs data.train_augment basic, got {data.train_augment}: a random crop, "
              "flip or policy gives other features every epoch, so there is nothing to compute once")
        mixing = [type(c).__name__ for c in trainer.callbacks if isinstance(c, (MixupCutmix, RandomErasing))]
        check(not mixing, f"model.cache_features: {', '.join(mixing)} changes the images of every batch, so the "
                          "features cannot be computed once; leave one of them out")
        check(not (pl_module.hparams.backbone_options or {}).get("drop_path_rate"),
              "model.cache_features: stochastic depth (backbone_options.drop_path_rate) drops blocks of the frozen "
              "backbone at random; set it to 0 or leave cache_features out")

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        data = datamodule_of(trainer)
        paths = sorted({path for path, _ in data.train_set.samples + data.val_set.samples})
        key = cache_key(pl_module, data.eval_view, data.normalization)
        file = cache_dir() / "features" / f"{key}.pt"
        if trainer.local_rank == 0:
            self._fill(file, paths, pl_module, data)
        trainer.strategy.barrier("feature cache")
        saved = torch.load(file, weights_only=True)
        position = {path: row for row, path in enumerate(saved["paths"])}
        features = CachedFeatures(paths, saved["features"][[position[path] for path in paths]])
        for dataset in (data.train_set, data.val_set):
            dataset.features = features
        self._read_features(trainer, self.frozen_at(trainer.current_epoch))

    def _fill(self, file: Path, paths: list[str], pl_module: LightningModule, data: Any) -> None:
        known: dict[str, tuple[Stamp, Tensor]] = {}
        if file.is_file():
            try:
                saved = torch.load(file, weights_only=True)
                known = {path: (tuple(s), row) for path, s, row in zip(saved["paths"], saved["stamps"],
                                                                         saved["features"])}
            except (OSError, RuntimeError, KeyError, EOFError):
                known = {}  # a damaged cache is computed again
        stamps = {path: stamp(path) for path in paths}
        missing = [path for path in paths if path not in known or known[path][0] != stamps[path]]
        if missing:
            computed = _compute(pl_module, missing, data.eval_view, data.normalization, data.num_workers,
                                2 * data.batch_size)
            known.update({path: (stamps[path], row) for path, row in zip(missing, computed)})
        rank_zero_info(f"feature cache: {len(paths) - len(missing)} of {len(paths)} images' features from the cache, "
                       f"{len(missing)} computed ({file})")
        if missing or not file.is_file():
            every = sorted(known)
            file.parent.mkdir(parents=True, exist_ok=True)
            partial = file.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"paths": every, "stamps": [list(known[p][0]) for p in every],
                        "features": torch.stack([known[p][1] for p in every])}, partial)
            partial.replace(file)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_features(trainer, self.frozen_at(trainer.current_epoch))  # a resumed run's epoch, restored now

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_features(trainer, self.frozen_at(trainer.current_epoch))

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._read_features(trainer, self.frozen_at(trainer.current_epoch))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_features(trainer, False)  # what comes after fit (calibration, test) reads images

    @staticmethod
    def _read_features(trainer: Trainer, on: bool) -> None:
        data = datamodule_of(trainer)
        for dataset in (data.train_set, data.val_set):
            dataset.reading_features.value = int(on)
