"""Stopping a run whose loss or weights stop being finite numbers, before a checkpoint is written from them."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor


class NonFiniteLossError(FloatingPointError):
    """The training diverged: the loss or the weights are no longer finite numbers."""


class DivergenceGuard(Callback):
    """Checks each training loss one step late, and the weights before each validation.

    One step late: reading the loss as a Python number makes the GPU wait for the step that
    computed it, so each step checks the previous one's, and the last step of an epoch its own
    too (so that no check is left for the end of the epoch, where processes must make the same
    collective calls in the same order). Every process takes part in each check, and all of
    them stop when one sees a non-finite number. The weights are checked before validation, so
    that no checkpoint is written from them.
    """

    def __init__(self) -> None:
        self.pending: Tensor | None = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        last_of_epoch = trainer.is_last_batch or batch_idx + 1 >= trainer.num_training_batches
        self.after_training_step(pl_module, loss, last_of_epoch)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self.before_validation(pl_module)

    def after_training_step(self, module: LightningModule, loss: Tensor, last_of_epoch: bool) -> None:
        previous, self.pending = self.pending, loss.detach()
        if previous is not None:
            self._stop_if(module, not torch.isfinite(previous).item(), f"the training loss is {previous.item()}")
        if last_of_epoch:
            current, self.pending = self.pending, None
            self._stop_if(module, not torch.isfinite(current).item(), f"the training loss is {current.item()}")

    def before_validation(self, module: LightningModule) -> None:
        broken = not torch.stack([torch.isfinite(p).all() for p in module.parameters()]).all().item()
        self._stop_if(module, broken, "the weights hold NaN or infinite values")

    @staticmethod
    def _stop_if(module: LightningModule, broken: bool, what: str) -> None:
        trainer = module.trainer
        if trainer.strategy.reduce_boolean_decision(broken, all=False):
            folder = getattr(trainer.checkpoint_callback, "dirpath", None)
            kept = (f"The last good checkpoints are kept in {folder}." if folder and any(Path(folder).glob("*.ckpt"))
                    else "No checkpoint had been written yet.")
            raise NonFiniteLossError(
                f"{what if broken else 'a non-finite loss on another process'} at epoch {module.current_epoch}, "
                f"step {module.global_step}: training stopped. {kept} "
                "Try a lower learning rate, a warm-up, gradient clipping (--trainer.gradient_clip_val 1.0) "
                "or bf16 instead of 16-bit precision."
            )
