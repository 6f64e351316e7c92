"""The callback ``bench_peer.py`` adds to the ``fit`` it times, as the top-level module ``first_step_clock``
(importable whichever checkout's ``benchmarks`` package comes first on the path)."""

import json
import time

from lightning.pytorch import Callback


class FirstStepClock(Callback):
    """Prints, for ``bench_peer.py``, the clock time of the first training step and the last validation accuracy."""

    def __init__(self) -> None:
        self.first_step: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.first_step = self.first_step or time.time()

    def on_fit_end(self, trainer, pl_module) -> None:
        accuracy = float(trainer.callback_metrics.get("val/acc", float("nan")))
        print("BENCH_PEER " + json.dumps({"first_step": self.first_step, "accuracy": accuracy}), flush=True)
