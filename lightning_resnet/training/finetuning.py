"""Fine-tuning a pretrained backbone: the head alone first, then the whole network from an epoch on."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.optim import Optimizer


class BackboneFreeze(BaseFinetuning):
    """Freezes ``pl_module.model``'s backbone, and unfreezes it at ``unfreeze_at_epoch`` (never when None).

    Lightning's convention for freeze/unfreeze, with this project's rule for BatchNorm: a frozen
    backbone's BatchNorm layers stay in eval mode, so its running statistics are the pretrained
    ones (``ResNet.freeze_backbone``), where ``BaseFinetuning.freeze`` would switch them to batch
    statistics. Every parameter is in the optimizer from the start (see
    :func:`~.optimization.parameter_groups`), so unfreezing adds no parameter group, and the
    callback keeps no optimizer state of its own: ``BaseFinetuning``'s would put back the
    learning rates of the epoch's start over those of a checkpoint saved mid-epoch.
    """

    def __init__(self, unfreeze_at_epoch: int | None = None) -> None:
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass

    def frozen_at(self, epoch: int) -> bool:
        return self.unfreeze_at_epoch is None or epoch < self.unfreeze_at_epoch

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        pl_module.model.freeze_backbone()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a run resumed in the middle of an epoch gets no on_train_epoch_start for that epoch
        self.finetune_function(pl_module, trainer.current_epoch, None)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer | None) -> None:
        frozen = self.frozen_at(epoch)
        if frozen and not pl_module.model.backbone_frozen:
            pl_module.model.freeze_backbone()
        elif not frozen and pl_module.model.backbone_frozen:
            pl_module.model.unfreeze_backbone()
            rank_zero_info(f"epoch {epoch}: the backbone is unfrozen; the whole network trains from here on")
