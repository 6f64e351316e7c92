"""Batch augmentation as Lightning callbacks: switched on in YAML, no change to the model.

Both work on the normalized batch on the device, in ``on_train_batch_start``, replacing the
entries of the batch list in place, so that later callbacks and ``training_step`` see the
augmented batch. Validation, test and predict batches are never touched. List
``RandomErasing`` before ``MixupCutmix`` to erase each image before the images are mixed,
the order of timm's recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor

from ..data import datamodule_of
from ..errors import UserError

if TYPE_CHECKING:  # timm is imported by the runs that use these callbacks only: 1 s of every start-up otherwise
    from timm.data import Mixup
    from timm.data.random_erasing import RandomErasing as TimmRandomErasing


class MixupCutmix(Callback):
    """Mixup and CutMix of training batches (timm's ``Mixup``), with soft targets for the loss.

    Args:
        mixup_alpha: Beta-distribution alpha of Mixup; 0 turns Mixup off.
        cutmix_alpha: Beta-distribution alpha of CutMix; 0 turns CutMix off.
        prob: probability that a batch is mixed at all.
        switch_prob: with both on, the probability of CutMix rather than Mixup.
        label_smoothing: smoothing of the mixed targets.
        off_epoch: from this epoch on, batches are no longer mixed (targets stay smoothed).
        mode: ``batch`` (one mixing for the whole batch), ``pair`` or ``elem`` (per sample).

    Targets become class probabilities (rows sum to 1). Training accuracy is then measured
    against each sample's dominant class. A multi-label model's multi-hot targets are mixed as they are, each
    label smoothed towards 0.5.
    """

    def __init__(
        self,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        off_epoch: int | None = None,
        mode: Literal["batch", "pair", "elem"] = "batch",
    ) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise UserError("MixupCutmix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.options = dict(
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=prob,
            switch_prob=switch_prob,
            label_smoothing=label_smoothing,
            mode=mode,
        )
        self.off_epoch = off_epoch
        self.mixup: Mixup | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        data = datamodule_of(trainer)
        if data is not None and data.batch_size % 2:
            raise UserError(f"MixupCutmix mixes pairs of images: data.batch_size must be even, got {data.batch_size}")
        from timm.data import Mixup

        task = getattr(pl_module, "task", None)
        self.mixup = Mixup(num_classes=pl_module.num_classes, multi_label=bool(task and task.multi_hot_targets),
                           **self.options)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        images, targets = _images_and_targets(batch)
        mixed_already = targets.ndim != 1 and not self.mixup.multi_label  # class indices become probabilities
        if mixed_already or len(targets) % 2:
            return  # or an epoch's odd last batch, which mixes no pair
        self.mixup.mixup_enabled = self.off_epoch is None or trainer.current_epoch < self.off_epoch
        batch[0], batch[1] = self.mixup(images, targets)


class RandomErasing(Callback):
    """Random Erasing (Zhong et al., 2017) of training images, on the device (timm's batch implementation).

    Args:
        probability: chance that an image gets erased.
        scale: range of the erased area as a fraction of the image.
        ratio: range of the aspect ratio of an erased rectangle.
        mode: fill of the rectangles: ``const`` (zero, that is the mean colour after normalization),
            ``rand`` (one random normal colour per rectangle) or ``pixel`` (random normal per pixel).
        max_count: up to this many rectangles per image (their areas split the drawn area).
    """

    def __init__(
        self,
        probability: float = 0.25,
        scale: tuple[float, float] = (0.02, 1 / 3),
        ratio: tuple[float, float] = (0.3, 3.3),
        mode: Literal["const", "rand", "pixel"] = "pixel",
        max_count: int = 1,
    ) -> None:
        self.options = dict(
            probability=probability,
            min_area=scale[0],
            max_area=scale[1],
            min_aspect=ratio[0],
            max_aspect=ratio[1],
            mode=mode,
            max_count=max_count,
        )

        self.eraser: TimmRandomErasing | None = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from timm.data.random_erasing import RandomErasing as TimmRandomErasing

        self.eraser = TimmRandomErasing(device=pl_module.device, **self.options)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        images, _ = _images_and_targets(batch)
        batch[0] = self.eraser(images)


def _images_and_targets(batch: Any) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, list) or len(batch) < 2:  # [images, targets, unlabelled views] in semi-supervised fit
        raise TypeError(f"batch augmentation needs the batch as a list [images, targets], got {type(batch).__name__}")
    return batch[0], batch[1]
