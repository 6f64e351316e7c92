"""The training logic: ``ImageClassifier``, a LightningModule around a hand-written ResNet."""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, OneCycleLR, SequentialLR, StepLR
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from .models import create_model, load_pretrained

Schedule = Literal["constant", "cosine", "onecycle", "step"]


class NonFiniteLossError(FloatingPointError):
    """The training diverged: the loss or the weights are no longer finite numbers."""


def rng_states() -> dict[str, Any]:
    """The random generators' states, in types that ``torch.load(weights_only=True)`` reads back."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(tuple(tuple(part) if isinstance(part, list) else part for part in states["python"]))


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "precision": MulticlassPrecision(num_classes, average="macro"),
            "recall": MulticlassRecall(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
        compute_groups=False,  # each metric is logged on its own; shared states would be reset by the first
    )


class ImageClassifier(LightningModule):
    """Classify images with a ResNet / ResNeXt backbone from :mod:`lightning_resnet.models`.

    Args:
        backbone: architecture name, one of ``lightning_resnet.models.list_models()``.
        num_classes: classifier outputs; linked from the data module on the command line.
        backbone_options: keyword options of the architecture, e.g. ``{stem: cifar, drop_path_rate: 0.1}``.
        pretrained: weights file (``.pth``, ``.safetensors`` or a ``.ckpt`` of this project) loaded
            when training starts; a classifier of another size is replaced by a new one.
        freeze_backbone: train only the classifier (the backbone's BatchNorm statistics stay fixed).
        unfreeze_at_epoch: with ``freeze_backbone``, train the whole network from this epoch on.
        label_smoothing: cross-entropy label smoothing; targets may also be class probabilities.
        optimizer: optimizer class and arguments; biases and norm weights get no weight decay.
        lr_scheduler: per-step schedule over the whole run: ``constant``, ``cosine`` (to zero),
            ``onecycle`` (rising for ``warmup_epochs``, or a quarter of the run) or ``step``.
        warmup_epochs: linear warm-up from 1 % of the learning rate before the schedule.
        step_epochs: for ``step``, epochs between decays by ``step_gamma``.
        step_gamma: for ``step``, the decay factor.
        channels_last: run the backbone in channels-last memory format (faster with tensor cores).
        compile: compile the backbone with ``torch.compile``.
        class_names: names of the classes in index order; linked from the data module and saved
            in checkpoints so that prediction needs no training folder.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int = 1000,
        backbone_options: dict[str, Any] | None = None,
        pretrained: str | None = None,
        freeze_backbone: bool = False,
        unfreeze_at_epoch: int | None = None,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        step_epochs: int = 30,
        step_gamma: float = 0.1,
        channels_last: bool = False,
        compile: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names given for num_classes={num_classes}")
        self.save_hyperparameters(ignore=["optimizer"])
        self.model = create_model(backbone, num_classes=num_classes, **(backbone_options or {}))
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if freeze_backbone:
            self.model.freeze_backbone()
        self.optimizer_factory = optimizer
        self.class_names = list(class_names) if class_names else [str(index) for index in range(num_classes)]
        self.train_metrics = classification_metrics(num_classes, "train/")
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")
        self._pending_loss: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return self.hparams.num_classes

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.pretrained:
            load_pretrained(self.model, self.hparams.pretrained)

    def configure_model(self) -> None:
        if self.hparams.compile:
            self.model.compile()

    def forward(self, images: Tensor) -> Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy against class indices or, as Mixup/CutMix make them, class probabilities."""
        return F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)

    def _check_loss(self, loss: Tensor | None) -> None:
        if loss is not None:
            self._stop_if_not_finite(not torch.isfinite(loss).item(), f"the training loss is {loss.item()}")

    def on_train_epoch_end(self) -> None:
        self._check_loss(self._pending_loss)
        self._pending_loss = None
        if self.train_metrics["acc"].update_called:
            # computed once per epoch: logging the metric objects at every step costs ~2 % of a CPU step
            self.log_dict(self.train_metrics.compute())
            self.train_metrics.reset()
        skipped = getattr(self.trainer.datamodule, "skipped_images", None)
        if skipped is not None:
            self.log("data/skipped_images", float(skipped), reduce_fx="sum", sync_dist=True)

    def _stop_if_not_finite(self, broken: bool, what: str) -> None:
        """Raise on every process as soon as one of them sees a non-finite number."""
        if self.trainer.strategy.reduce_boolean_decision(broken, all=False):
            folder = getattr(self.trainer.checkpoint_callback, "dirpath", None) or self.trainer.default_root_dir
            raise NonFiniteLossError(
                f"{what if broken else 'a non-finite loss on another process'} at epoch {self.current_epoch}, "
                f"step {self.global_step}: training stopped. The last good checkpoints are kept in {folder}. "
                "Try a lower learning rate, a warm-up, gradient clipping (--trainer.gradient_clip_val 1.0) "
                "or bf16 instead of 16-bit precision."
            )

    def on_validation_epoch_start(self) -> None:
        if self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            broken = not torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all().item()
            self._stop_if_not_finite(broken, "the weights hold NaN or infinite values")

    def on_train_epoch_start(self) -> None:
        epoch = self.hparams.unfreeze_at_epoch
        if epoch is not None and self.current_epoch >= epoch and self.model.backbone_frozen:
            self.model.unfreeze_backbone()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch
        logits = self(images)
        loss = self.loss(logits, targets)
        # the previous step's loss: checking it does not make the GPU wait for this step
        self._check_loss(self._pending_loss)
        self._pending_loss = loss.detach()
        hard_targets = targets.argmax(dim=1) if targets.ndim == 2 else targets
        self.train_metrics.update(logits, hard_targets)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor] | None, stage: str, metrics: MetricCollection) -> Tensor | None:
        if batch is None:  # every image of the batch was unreadable
            return None
        images, targets = batch
        logits = self(images)
        self.log(f"{stage}/loss", self.loss(logits, targets), on_epoch=True, sync_dist=True, prog_bar=True)
        metrics.update(logits, targets)
        for name, metric in metrics.items():
            self.log(name, metric, on_epoch=True, prog_bar=name.endswith("/acc"))
        return logits

    def validation_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> Tensor | None:
        """Returns the logits, for callbacks such as :class:`~lightning_resnet.reports.EvaluationReport`."""
        return self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> Tensor | None:
        return self._evaluate(batch, "test", self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Any] | None, batch_idx: int) -> dict[str, Tensor] | None:
        if batch is None:
            return None
        probabilities = self(batch[0]).softmax(dim=1)
        return {"probabilities": probabilities, "predictions": probabilities.argmax(dim=1)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_names"] = self.class_names
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the classes; when resuming ``fit``, continue the random streams where they stopped."""
        if "rng_states" in checkpoint and self._trainer is not None and self.trainer.state.fn == "fit":
            set_rng_states(checkpoint["rng_states"])
        names = checkpoint.get("class_names")
        if names is not None:
            if len(names) != self.num_classes:
                raise ValueError(
                    f"the checkpoint has {len(names)} classes, the model {self.num_classes}: "
                    "train a new model or point data_dir at the data it was trained on"
                )
            self.class_names = list(names)

    def configure_optimizers(self) -> dict[str, Any]:
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        optimizer = self.optimizer_factory([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches))
        warmup = min(total_steps - 1, round(self.hparams.warmup_epochs * steps_per_epoch))
        schedule = self.hparams.lr_scheduler
        if schedule == "onecycle":
            peak = [group["lr"] for group in optimizer.param_groups]
            rising = warmup / total_steps if warmup > 0 else 0.25
            scheduler = OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=rising)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        if schedule == "cosine":
            main = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
        elif schedule == "step":
            step_size = self.hparams.step_epochs * steps_per_epoch
            main = StepLR(optimizer, step_size=step_size, gamma=self.hparams.step_gamma)
        else:
            main = LinearLR(optimizer, start_factor=1.0, end_factor=1.0, total_iters=1)
        scheduler = main
        if warmup > 0:
            ramp = LinearLR(optimizer, start_factor=0.01, end_factor=1.0, total_iters=warmup)
            scheduler = SequentialLR(optimizer, [ramp, main], milestones=[warmup])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
