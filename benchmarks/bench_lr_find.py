"""Does ``lr_find``'s suggestion train, on small and large folders alike?

Folders of the demo digits of three sizes (20, 60 and all of each class's images), the demo recipe
(``configs/demo.yaml``) at batch 16, and the whole demo at the recipe's batch of 64. On each: Lightning's finder
once, then every candidate rule's rate from that one curve, then 3 epochs of ``fit`` at each distinct rate and at
the recipe's own 2e-3 (its tuned rate): the validation accuracy each reaches. The rules, all on Lightning's
recorded (smoothed) losses after the first :data:`~lightning_resnet.training.lr_finder.WARM_UP_POINTS`:

- ``valley, middle``: the middle of the span of the longest run of falling losses (the rule before this
  benchmark);
- ``valley, fastai``: fastai's ``valley``: the run's length counted in points, its start put that many points
  before its end, and the rate half-way from there (a noisy curve's run skips points, so its start is later);
- ``steepest``: Lightning's default (the steepest fall of the loss);
- ``steepest within the valley``: the steepest fall between the longest fall's first and last point;
- ``lowest loss / 10``: a tenth of the rate at the lowest loss (an old rule of thumb; the index is the lowest's,
  the rate divided by 10 below).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, report, table

CASES = {  # folder: (images of each class, batch size)
    "200 images (20 a class), batch 16": (20, 16),
    "600 images (60 a class), batch 16": (60, 16),
    "1,797 images (all), batch 16": (None, 16),
    "1,797 images (all), batch 64 (the recipe's)": (None, 64),
}
RECIPE_RATE = 2e-3


def subset(source: Path, target: Path, per_class: int | None) -> Path:
    for folder in sorted(path for path in source.iterdir() if path.is_dir()):
        (target / folder.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.glob("*.png"))[:per_class]:
            shutil.copy(image, target / folder.name / image.name)
    return target


def finder_curve(folder: Path, batch: int, logs: str) -> tuple[list[float], list[float]]:
    """Lightning's finder on the demo recipe: its rates and recorded losses."""
    from lightning.pytorch.tuner import Tuner

    from lightning_resnet.cli.app import ResNetCLI, cli_options

    built = ResNetCLI(args=["--config", "configs/demo.yaml", "--data.data_dir", str(folder),
                            "--data.batch_size", str(batch), "--trainer.logger.init_args.save_dir", logs,
                            "--trainer.enable_progress_bar", "false"],
                      run=False, **cli_options())
    finder = Tuner(built.trainer).lr_find(built.model, datamodule=built.datamodule, min_lr=1e-7, max_lr=1.0,
                                          num_training=100, update_attr=False)
    return list(finder.results["lr"]), list(finder.results["loss"])


def accuracy_at(folder: Path, batch: int, rate: float, logs: str) -> float:
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    run = cli(["fit", "--config", "configs/demo.yaml", "--data.data_dir", str(folder), "--data.batch_size", str(batch),
               "--model.optimizer.init_args.lr", str(rate), "--trainer.max_epochs", "3", "--model.calibrate", "false",
               "--trainer.logger.init_args.save_dir", logs, "--trainer.enable_progress_bar", "false",
               "--test_after_fit", "false"])
    return best_checkpoint(run.trainer).score


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    os.chdir(ROOT)
    from lightning_resnet.data import DIGITS_DIR, write_digits
    from lightning_resnet.training import lr_finder

    if not DIGITS_DIR.is_dir():
        write_digits(DIGITS_DIR)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for label, (per_class, batch) in CASES.items():
            folder = Path(work) / f"digits_{per_class}"
            if not folder.is_dir():
                subset(DIGITS_DIR, folder, per_class)
            rates, losses = finder_curve(folder, batch, str(Path(work) / "logs"))
            rules = {name: rates[index] / (10 if name == "lowest loss / 10" else 1)
                     for name, index in lr_finder.candidate_rules(losses).items() if index is not None}
            rules["the recipe's rate"] = RECIPE_RATE
            reached = {}
            for name, rate in rules.items():
                key = f"{rate:.3g}"
                if key not in reached:
                    reached[key] = accuracy_at(folder, batch, rate, str(Path(work) / "logs"))
                rows.append([label, name, key, f"{reached[key]:.4f}"])
                print(rows[-1], flush=True)
            rows.append([label, "how sure (printed by lr_find)", lr_finder.describe_fall(rates, losses), ""])
    report("lr_find: the suggested rate against the demo recipe's own, 3 epochs on each folder",
           table(["folder", "rule", "learning rate", "val/acc after 3 epochs"], rows))


if __name__ == "__main__":
    main()
