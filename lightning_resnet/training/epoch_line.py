"""One line per epoch on standard output, for a run nobody watches on a terminal (``make train > log``, a job
scheduler, a notebook's captured cell): the progress bar writes carriage returns there, and Python's output to a
file waits in its buffer, so a long run said nothing until it ended."""

from __future__ import annotations

import sys
import time
from typing import Literal

from lightning.pytorch import Callback, LightningModule, Trainer


class EpochLine(Callback):
    """``epoch 3/20 (41.2 s): train/loss 0.8123, val/acc 0.7500, val/loss 0.7012, ...`` at the end of each epoch,
    flushed at once.

    Args:
        when: ``auto`` when there is no progress bar on a terminal (standard output is a file or a pipe, or
            ``trainer.enable_progress_bar false``), ``always`` or ``never``.
    """

    def __init__(self, when: Literal["auto", "always", "never"] = "auto") -> None:
        self.when = when
        self.started = 0.0

    def _says(self, trainer: Trainer) -> bool:
        if self.when == "auto":
            return trainer.progress_bar_callback is None or not sys.stdout.isatty()
        return self.when == "always"

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.started = time.perf_counter()  # a run resumed mid-epoch gets no on_train_epoch_start for it

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not (trainer.is_global_zero and self._says(trainer)):
            return
        metrics = trainer.callback_metrics
        shown = {"train/loss": metrics.get("train/loss_epoch", metrics.get("train/loss"))}
        shown |= {name: value for name, value in sorted(metrics.items()) if name.startswith("val/")}
        scores = ", ".join(f"{name} {float(value):.4f}" for name, value in shown.items()
                           if value is not None and value.numel() == 1)
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} "
              f"({time.perf_counter() - self.started:.1f} s): {scores}", flush=True)
