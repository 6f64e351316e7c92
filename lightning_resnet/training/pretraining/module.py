"""Self-supervised pretraining: ``SelfSupervised``, a LightningModule that teaches a hand-written ResNet to give the
views of one image the same features, with one of :data:`~.methods.METHODS` (lightly's heads, losses and views):
``simclr`` pulls two views of an image together and pushes the other images of the batch away; ``byol`` needs no
negatives: an online network predicts a slowly moving average of itself; ``dino``: a student learns a moving-average
teacher's distribution of the global views from global and local ones. The backbone's weights, without a classifier,
are what ``fit --model.pretrained`` then loads (:meth:`SelfSupervised.backbone_weights`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from ...errors import UserError, check
from ...models import create_model
from ..metrics import TRAIN_LOSS
from ..optimization import Schedule, apply_lr_factors, build_scheduler, fused_when_left_open
from .method import TOP_LEVEL, Progress, ViewsOf, option_name
from .methods import METHODS

KNN_ACCURACY = "val/knn_acc"
"""The k-nearest-neighbour accuracy of the features on the labelled folder, logged every epoch."""


class SelfSupervised(LightningModule):
    """Pretrain a ResNet / ResNeXt backbone of :mod:`lightning_resnet.models` on unlabelled images.

    Args:
        backbone: architecture name, as for ``fit``.
        backbone_options: keyword options of the architecture (``{stem: cifar}`` for small images); ``fit`` must
            build the same network to load the weights.
        method: ``simclr``, ``byol`` or ``dino`` (:data:`~.methods.METHODS`); the views follow it.
        projection_dim: width of the projection (and, for BYOL, prediction) head's output; DINO's bottleneck.
        hidden_dim: width of the heads' hidden layers.
        temperature: SimCLR's NT-Xent temperature (0.5 unless given); DINO's student temperature (0.1).
        momentum: BYOL's and DINO's start value of the target network's moving average, which rises to 1 along a
            cosine (0.99 and 0.996 unless given).
        prediction_lr_factor: BYOL's prediction head's learning rate as a multiple of the rest's (1 unless given).
        method_options: the method's other options (DINO's ``output_dim``, ``teacher_temperature``, ...: see its
            file in ``training/pretraining/``).
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
        method: str = "simclr",
        projection_dim: int = 128,
        hidden_dim: int = 512,
        temperature: float | None = None,
        momentum: float | None = None,
        prediction_lr_factor: float | None = None,
        method_options: dict[str, Any] | None = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        knn_k: int = 20,
        knn_temperature: float = 0.1,
    ) -> None:
        super().__init__()
        check(method in METHODS, f"model.method {method}: expected one of {', '.join(METHODS)}")
        check(knn_k >= 1, f"model.knn_k must be at least 1, got {knn_k}")
        check(temperature is None or temperature > 0, f"model.temperature must be positive, got {temperature}")
        check(momentum is None or 0.0 <= momentum < 1.0, f"model.momentum must be in [0, 1), got {momentum}")
        check(prediction_lr_factor is None or prediction_lr_factor > 0,
              f"model.prediction_lr_factor must be positive, got {prediction_lr_factor}")
        kind = METHODS[method]
        given = {**{name: value for name, value in zip(TOP_LEVEL, (temperature, momentum, prediction_lr_factor))
                    if value is not None}, **(method_options or {})}
        foreign = [name for name in given if name not in kind.OPTIONS]
        check(not foreign, f"{option_name(foreign[0]) if foreign else ''} is not an option of {method}: its options "
                           f"are {', '.join(option_name(name) for name in kind.OPTIONS) or 'none'}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.model = create_model(backbone, features_only=True, **(backbone_options or {}))
        """The backbone being pretrained, without a classifier (DDP refuses parameters that no loss reaches)."""
        self.method = kind(self.model, self.model.num_features, projection_dim, hidden_dim,
                           {**kind.OPTIONS, **given})
        self.optimizer_factory = optimizer
        self._bank: list[tuple[Tensor, Tensor]] = []  # k-NN: (features, labels) of the labelled training images
        self._queries: list[tuple[Tensor, Tensor]] = []  # and of the validation images they classify

    @property
    def views(self) -> ViewsOf:
        """What the data module makes of each image: the method's views (the command line links them)."""
        return self.method.views

    def features(self, images: Tensor) -> Tensor:
        """The backbone's pooled features, what the classifier of ``fit`` will read."""
        return self.model.forward_features(images)

    def _progress(self) -> Progress:
        return Progress(self.global_step, int(self.trainer.estimated_stepping_batches), self.current_epoch)

    def training_step(self, batch: list, batch_idx: int) -> Tensor:
        views, _ = batch
        loss = self.method.loss(self.model, views, self._progress())
        self.log(TRAIN_LOSS, loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(views[0]))
        return loss

    def on_after_backward(self) -> None:
        self.method.after_backward(self._progress())

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
        groups = self.method.trained_groups()  # the backbone's rate is the groups' without a factor of their own
        rest = [p for p in self.model.parameters() if p.requires_grad]
        rest += [p for group in groups if "lr_factor" not in group for p in group["params"]]
        groups = [{"params": rest}, *(group for group in groups if "lr_factor" in group)]
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
        if not math.isfinite(trainer.num_training_batches):  # trainer.max_steps alone: an epoch's length is read
            trainer.fit_loop.setup_data()  # from the loader here (Lightning's own call), as fit's optimization does
        scheduler = build_scheduler(optimizer, self.hparams.lr_scheduler, int(total_steps),
                                    math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches),
                                    self.hparams.warmup_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def backbone_weights(self) -> dict[str, Tensor]:
        """The backbone's tensors without its classifier: ``fit --model.pretrained`` loads them strictly, with a
        new head."""
        return {key: tensor.detach().cpu().contiguous() for key, tensor in self.model.state_dict().items()}
