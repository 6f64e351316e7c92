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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import Tensor, nn

from ..data import ConvertedSource, ImageSamples, datamodule_of
from ..data.cache import cache_dir
from ..data.features import CachedFeatures, Stamp, save_features, stamp
from ..errors import UserError, check
from ..runtimes import TorchPredictor, predict_images
from .batch_augmentation import MixupCutmix, RandomErasing


def cache_file(network: nn.Module, view: Any, normalization: Any) -> Path:
    """Where the features of ``network``'s backbone (every tensor but the classifier's), read through ``view`` and
    ``normalization``, are kept: the three hashed."""
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        if not name.startswith("fc."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digest.update(repr((type(view).__name__, view.settings, tuple(normalization.mean),
                        tuple(normalization.std))).encode())
    return cache_dir() / "features" / f"{digest.hexdigest()[:24]}.pt"


def cached_features(network: nn.Module, view: Any, normalization: Any, paths: Sequence[str]) -> Tensor | None:
    """The features of ``paths`` from the cache when it has every one of them as the files are now, else None."""
    file = cache_file(network, view, normalization)
    if not file.is_file():
        return None
    try:
        saved = CachedFeatures(file)
    except (OSError, RuntimeError, KeyError, EOFError):
        return None
    rows = [saved.row_of.get(path) for path in paths]
    if any(row is None or saved.stamps[row] != stamp(path) for row, path in zip(rows, paths)):
        return None
    return saved.features[rows]


def _compute(pl_module: LightningModule, paths: list[str], view: Any, workers: int, batch_size: int) -> Tensor:
    """The pooled features of ``paths`` under the model in training, through the one loop of a trained model."""
    network = pl_module.model
    was_training = network.training
    predictor = TorchPredictor(pl_module.bundle(), network=network).to(pl_module.device)
    try:
        seen = predict_images(predictor, ImageSamples([(path, row) for row, path in enumerate(paths)], view),
                              batch_size, workers, features=True)
    finally:
        network.train(was_training)
    check(len(seen.keys) == len(paths), "model.cache_features: an image could not be read; run with "
                                        "data.verify_images true to leave such files out")
    features = torch.empty((len(paths), seen.features.shape[1]))
    features[list(seen.keys)] = seen.features
    return features


class FrozenFeatures(Callback):
    """Computes (or reads from the cache) the frozen backbone's features of the training and validation images at
    the start of ``fit``, and has both sets read them while the backbone is frozen."""

    def __init__(self, unfreeze_at_epoch: int | None = None) -> None:
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.file: Path | None = None  # the run's feature cache, once filled

    def frozen_at(self, epoch: int) -> bool:
        return self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        data = datamodule_of(trainer)
        if data is None:
            raise UserError("model.cache_features needs this project's data module (data.data_dir)")
        check(not isinstance(data.source, ConvertedSource), "model.cache_features reads an image folder; "
              f"data.data_dir {data.data_dir} is a converted data set: name the folder it was converted from")
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
        file = cache_file(pl_module.model, data.views.evaluation, data.normalization)
        if trainer.local_rank == 0:
            self._fill(file, paths, pl_module, data)
        trainer.strategy.barrier("feature cache")
        self.file = file
        self._read_features(trainer, self.frozen_at(trainer.current_epoch))

    def _fill(self, file: Path, paths: list[str], pl_module: LightningModule, data: Any) -> None:
        known: dict[str, tuple[Stamp, Tensor]] = {}
        if file.is_file():
            try:
                saved = CachedFeatures(file)
                known = {path: (s, saved.features[row]) for row, (path, s) in enumerate(zip(saved.paths,
                                                                                            saved.stamps))}
            except (OSError, RuntimeError, KeyError, EOFError):
                known = {}  # a damaged cache is computed again
        stamps = {path: stamp(path) for path in paths}
        missing = [path for path in paths if path not in known or known[path][0] != stamps[path]]
        if missing:
            computed = _compute(pl_module, missing, data.views.evaluation, data.num_workers, 2 * data.batch_size)
            known.update({path: (stamps[path], row) for path, row in zip(missing, computed)})
        rank_zero_info(f"feature cache: {len(paths) - len(missing)} of {len(paths)} images' features from the cache, "
                       f"{len(missing)} computed ({file})")
        if missing or not file.is_file():
            save_features(file, known)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_features(trainer, self.frozen_at(trainer.current_epoch))  # a resumed run's epoch, restored now

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_features(trainer, self.frozen_at(trainer.current_epoch))

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":
            self._read_features(trainer, self.frozen_at(trainer.current_epoch))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_features(trainer, False)  # what comes after fit (calibration, test) reads images

    def _read_features(self, trainer: Trainer, on: bool) -> None:
        data = datamodule_of(trainer)
        for dataset in (data.train_set, data.val_set):
            dataset.read_features(self.file if on else None)
