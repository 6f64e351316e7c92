"""Callbacks the benchmarks add to the ``fit`` they time (``--trainer.callbacks run_clock.X``), as the top-level
module ``run_clock``: importable whichever checkout's ``benchmarks`` package comes first on the path. Each prints
one line, :data:`MARK` and a JSON object, at the end of the fit."""

import json
import time

from lightning.pytorch import Callback

MARK = "RUN_CLOCK "


class FirstStepClock(Callback):
    """The clock time (``time.time()``) of the first training step, the last validation accuracy, and where the
    fit's time went: the seconds of its training steps, of its validations, and between an epoch's last step and
    the next one's first (validation excluded: checkpoints, reports, the loader's restart); and the clock time of
    the last step's end (what follows it runs to the process's exit: the last validation and checkpoint,
    calibration, the end-of-fit reports)."""

    def __init__(self) -> None:
        self.first_step: float | None = None
        self.epoch_first_step = 0.0
        self.last_step_end = 0.0
        self.validation_started = 0.0
        self.validations: list[float] = []
        self.seconds = {"training steps": 0.0, "between epochs": 0.0}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.time()
        self.first_step = self.first_step or now
        if batch_idx == 0:
            if self.last_step_end:  # the previous epoch's end, less its validation
                self.seconds["between epochs"] += now - self.last_step_end - (self.validations or [0.0])[-1]
            self.epoch_first_step = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.last_step_end = time.time()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.validation_started = time.time()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validations.append(time.time() - self.validation_started)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # Lightning validates before this hook
        self.seconds["training steps"] += self.last_step_end - self.epoch_first_step

    def on_fit_end(self, trainer, pl_module) -> None:
        accuracy = float(trainer.callback_metrics.get("val/acc", float("nan")))
        seconds = {**self.seconds, "validation": sum(self.validations)}
        print(MARK + json.dumps({"first_step": self.first_step, "accuracy": accuracy, "seconds": seconds,
                                 "last_step_end": self.last_step_end,
                                 "last_validation": (self.validations or [0.0])[-1]}), flush=True)


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
