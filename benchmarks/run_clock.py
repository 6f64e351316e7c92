"""Callbacks the benchmarks add to the ``fit`` they time (``--trainer.callbacks run_clock.X``), as the top-level
module ``run_clock``: importable whichever checkout's ``benchmarks`` package comes first on the path. Each prints
one line, :data:`MARK` and a JSON object, at the end of the fit."""

import json
import time

from lightning.pytorch import Callback

MARK = "RUN_CLOCK "


class FirstStepClock(Callback):
    """The clock time (``time.time()``) of the first training step, and the last validation accuracy."""

    def __init__(self) -> None:
        self.first_step: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.first_step = self.first_step or time.time()

    def on_fit_end(self, trainer, pl_module) -> None:
        accuracy = float(trainer.callback_metrics.get("val/acc", float("nan")))
        print(MARK + json.dumps({"first_step": self.first_step, "accuracy": accuracy}), flush=True)


class EpochClock(Callback):
    """Seconds of each training epoch, from its start to the end of its validation."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # Lightning validates before this hook
        self.seconds.append(time.perf_counter() - self.started)

    def on_fit_end(self, trainer, pl_module) -> None:
        print(MARK + json.dumps({"epoch_seconds": self.seconds}), flush=True)
