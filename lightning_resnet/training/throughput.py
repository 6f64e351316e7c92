"""Training throughput, in images per second over all processes, shown beside the loss in the progress bar."""

from __future__ import annotations

import time

from lightning.fabric.utilities.throughput import Throughput
from lightning.pytorch import Callback, LightningModule, Trainer

from .metrics import IMAGES_PER_SEC


class ThroughputDisplay(Callback):
    """Logs ``train/images_per_sec`` at each step, averaged over the last ``window`` steps (Lightning's meter).

    It appears in the progress bar, as timm's and torchvision's training scripts print it, and in
    TensorBoard. On a GPU the steps are timed as the host issues them, without synchronizing:
    over a window of steps the two agree, and the training does not wait for the meter.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.meter: Throughput | None = None
        self.started = 0.0
        self.batches = 0
        self.samples = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch gets no on_train_epoch_start for it

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        steps = trainer.num_training_batches
        window = max(2, min(self.window, steps if isinstance(steps, int) else self.window))  # short epochs too
        self.meter = Throughput(window_size=window, world_size=trainer.world_size)
        self.started, self.batches, self.samples = time.perf_counter(), 0, 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx) -> None:
        self.batches += 1
        self.samples += len(batch[0])
        self.meter.update(time=time.perf_counter() - self.started, batches=self.batches, samples=self.samples)
        rates = self.meter.compute()  # the meter names the all-process rate only with several processes
        rate = rates.get("samples_per_sec", rates.get("device/samples_per_sec"))
        if rate is not None:  # once the window is full
            pl_module.log(IMAGES_PER_SEC, rate, on_step=True, on_epoch=False, prog_bar=True)
