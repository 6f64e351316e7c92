"""Self-supervised pretraining: ``SelfSupervised``, a LightningModule that teaches a hand-written ResNet to give two
views of one image the same features, with lightly's heads and losses (``python -m lightning_resnet pretrain``).

``simclr`` pulls the two views of an image together and pushes the other images of the batch away (NT-Xent);
``byol`` needs no negatives: an online network predicts a slowly moving average of itself. The backbone's weights,
without a classifier, are what ``fit --model.pretrained`` then loads (:meth:`SelfSupervised.backbone_weights`).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from ..errors import UserError, check
from ..models import create_model
from .metrics import TRAIN_LOSS
from .optimization import Schedule, apply_lr_factors, build_scheduler, fused_when_left_open

Method = Literal["simclr", "byol"]

KNN_ACCURACY = "val/knn_acc"
"""The k-nearest-neighbour accuracy of the features on the labelled folder, logged every epoch."""


class SelfSupervised(LightningModule):
    """Pretrain a ResNet / ResNeXt backbone of :mod:`lightning_resnet.models` on unlabelled images.

    Args:
        backbone: architecture name, as for ``fit``.
        backbone_options: keyword options of the architecture (``{stem: cifar}`` for small images); ``fit`` must
            build the same network to load the weights.
        method: ``simclr`` or ``byol``; the views follow it (the command line links ``data.views``).
        projection_dim: width of the projection (and, for BYOL, prediction) head's output.
        hidden_dim: width of the heads' hidden layer.
        temperature: SimCLR's NT-Xent temperature.
        momentum: BYOL's start value of the target network's moving average, which rises to 1 along a cosine.
        prediction_lr_factor: BYOL's prediction head's learning rate as a multiple of the rest's (a head that
            keeps up with the moving target holds the features apart; ``configs/pretrain_demo_byol.yaml``).
        optimizer: optimizer class and arguments (biases and norm weights included, as lightly's examples do).
        lr_scheduler: per-step schedule over the run, as for ``fit``.
        warmup_epochs: linear warm-up from 1 % of the learning rate before the schedule.
        knn_k: neighbours that vote in the k-NN score of ``data.knn_dir``.
        knn_temperature: how sharply nearer neighbours outvote farther ones (lightly's ``knn_t``).
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        backbone_options: dict[str, Any] | None = None,
        method: Method = "simclr",
        projection_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float = 0.5,
        momentum: float = 0.99,
        prediction_lr_factor: float = 1.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        knn_k: int = 20,
        knn_temperature: float = 0.1,
    ) -> None:
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        check(temperature > 0, f"model.temperature must be positive, got {temperature}")
        check(0.0 <= momentum < 1.0, f"model.momentum must be in [0, 1), got {momentum}")
        check(prediction_lr_factor > 0, f"model.prediction_lr_factor must be positive, got {prediction_lr_factor}")
        check(knn_k >= 1, f"model.knn_k must be at least 1, got {knn_k}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.model = create_model(backbone, features_only=True, **(backbone_options or {}))
        """The backbone being pretrained, without a classifier (DDP refuses parameters that no loss reaches)."""
        width = self.model.num_features
        self.optimizer_factory = optimizer
        if method == "simclr":
            self.projection: nn.Module = SimCLRProjectionHead(width, hidden_dim, projection_dim)
            self.criterion: nn.Module = NTXentLoss(temperature, gather_distributed=True)
            self.prediction: nn.Module | None = None
            self.target_model: nn.Module | None = None
            self.target_projection: nn.Module | None = None
        else:
            self.projection = BYOLProjectionHead(width, hidden_dim, projection_dim)
            self.prediction = BYOLPredictionHead(projection_dim, hidden_dim, projection_dim)
            self.criterion = NegativeCosineSimilarity()
            self.target_model = copy.deepcopy(self.model)
            self.target_projection = copy.deepcopy(self.projection)
            deactivate_requires_grad(self.target_model)
            deactivate_requires_grad(self.target_projection)
        self._bank: list[tuple[Tensor, Tensor]] = []  # k-NN: (features, labels) of the labelled training images
        self._queries: list[tuple[Tensor, Tensor]] = []  # and of the validation images they classify

    def features(self, images: Tensor) -> Tensor:
        """The backbone's pooled features, what the classifier of ``fit`` will read."""
        return self.model.forward_features(images)

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        views, _ = batch
        first, second = views[:, 0], views[:, 1]
        if self.hparams.method == "simclr":
            loss = self.criterion(self.projection(self.features(first)), self.projection(self.features(second)))
        else:
            loss = self._byol_loss(first, second)
        self.log(TRAIN_LOSS, loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(views))
        return loss

    def _byol_loss(self, first: Tensor, second: Tensor) -> Tensor:
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        momentum = cosine_schedule(self.global_step, max(1, int(self.trainer.estimated_stepping_batches)),
                                   self.hparams.momentum, 1.0)
        update_momentum(self.model, self.target_model, momentum)
        update_momentum(self.projection, self.target_projection, momentum)
        predicted = [self.prediction(self.projection(self.features(view))) for view in (first, second)]
        with torch.no_grad():
            targets = [self.target_projection(self.target_model.forward_features(view)).detach()
                       for view in (first, second)]
        return 0.5 * (self.criterion(predicted[0], targets[1]) + self.criterion(predicted[1], targets[0]))

    # ----- the k-NN score of data.knn_dir ------------------------------------------------------------

    def validation_step(self, batch: list[Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        images, labels = batch
        features = F.normalize(self.features(images), dim=1)
        (self._bank if dataloader_idx == 0 else self._queries).append((features, labels))

    def on_validation_epoch_end(self) -> None:
        from lightly.utils.benchmarking import knn_predict

        if not self._bank or not self._queries:
            self._bank, self._queries = [], []
            return
        bank, bank_labels = self._gathered(self._bank)
        queries, labels = self._gathered(self._queries)
        self._bank, self._queries = [], []
        classes = int(max(bank_labels.max(), labels.max())) + 1
        predicted = knn_predict(queries, bank.T, bank_labels, classes, min(self.hparams.knn_k, len(bank)),
                                self.hparams.knn_temperature)[:, 0]
        self.log(KNN_ACCURACY, (predicted == labels).float().mean(), prog_bar=True)

    def _gathered(self, parts: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        """Every process's features and labels (each process saw its share of the images)."""
        features = torch.cat([features for features, _ in parts])
        labels = torch.cat([labels for _, labels in parts])
        if self.trainer.world_size > 1:
            features, labels = self.all_gather(features).flatten(0, 1), self.all_gather(labels).flatten(0, 1)
        return features, labels

    # ----- optimization and the weights it leaves ------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        predicting = {id(parameter) for parameter in self.prediction.parameters()} if self.prediction else set()
        trained = [parameter for parameter in self.parameters() if parameter.requires_grad]
        groups = [{"params": [p for p in trained if id(p) not in predicting]},
                  {"params": [p for p in trained if id(p) in predicting],
                   "lr_factor": self.hparams.prediction_lr_factor}]
        try:
            optimizer = fused_when_left_open(apply_lr_factors(self.optimizer_factory(
                [group for group in groups if group["params"]])))
        except (ValueError, TypeError) as error:
            raise UserError(f"model.optimizer: {error}") from None
        trainer = self.trainer
        total_steps = trainer.estimated_stepping_batches
        check(math.isfinite(total_steps) and total_steps > 0,
              f"trainer.limit_train_batches {trainer.limit_train_batches} and trainer.max_epochs "
              f"{trainer.max_epochs} leave no training step")
        scheduler = build_scheduler(optimizer, self.hparams.lr_scheduler, int(total_steps),
                                    math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches),
                                    self.hparams.warmup_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def backbone_weights(self) -> dict[str, Tensor]:
        """The backbone's tensors without its classifier: ``fit --model.pretrained`` loads them strictly, with a
        new head."""
        return {key: tensor.detach().cpu().contiguous() for key, tensor in self.model.state_dict().items()}
