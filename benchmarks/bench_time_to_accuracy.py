"""Time to accuracy: wall time for ``configs/demo.yaml`` to reach 97 % validation accuracy."""

from __future__ import annotations

import time

PROCESS_START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402

from lightning.pytorch import Callback  # noqa: E402

from benchmarks.common import ROOT, report, table  # noqa: E402


class TimeToAccuracy(Callback):
    """Records, after each validation, the time since training started and the accuracy; stops at the target."""

    def __init__(self, target: float = 0.97) -> None:
        self.target = target
        self.start = 0.0
        self.epochs: list[tuple[int, float, float]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            accuracy = float(trainer.callback_metrics["val/acc"])
            self.epochs.append((trainer.current_epoch, time.perf_counter() - self.start, accuracy))
            trainer.should_stop = trainer.should_stop or accuracy >= self.target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", type=float, default=0.97)
    args = parser.parse_args()
    os.chdir(ROOT)
    from lightning_resnet.cli import main as cli

    with tempfile.TemporaryDirectory() as logs:
        run = cli(["fit", "--config", "configs/demo.yaml", "--trainer.logger.init_args.save_dir", logs,
                   "--trainer.enable_progress_bar", "false",
                   "--trainer.callbacks+=benchmarks.bench_time_to_accuracy.TimeToAccuracy",
                   f"--trainer.callbacks.target={args.target}"])
    total = time.perf_counter() - PROCESS_START
    # the CLI built the callback from this file imported as a module, not from ``__main__``
    recorder = next(callback for callback in run.trainer.callbacks if type(callback).__name__ == "TimeToAccuracy")
    before_training = recorder.start - PROCESS_START
    reached = next(((epoch, seconds) for epoch, seconds, accuracy in recorder.epochs if accuracy >= args.target), None)
    rows = [[str(epoch + 1), f"{seconds:.1f}", f"{accuracy:.4f}"] for epoch, seconds, accuracy in recorder.epochs]
    summary = (f"reached {args.target:.0%} after epoch {reached[0] + 1} of 6, {reached[1]:.1f} s of training "
               "(stopped there)"
               if reached else f"did not reach {args.target:.0%}")
    report("Time to accuracy: configs/demo.yaml",
           table(["epoch", "training seconds", "val/acc"], rows)
           + f"\n\n{summary}; whole run {total:.1f} s from the script's start, of which {before_training:.1f} s "
        "before the first training step (imports, data, model).")


if __name__ == "__main__":
    main()
