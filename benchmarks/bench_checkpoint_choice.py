"""Which checkpoint of a run on a small validation set tests best: Lightning's first epoch to reach the top
``val/acc``, ``AccuracyThenLossCheckpoint``'s tie-break by ``val/loss``, the lowest ``val/loss``, or the last epoch.

Each seed splits the demo digits as ``bench_few_labels.py`` does (10 % labelled: 36 validation images; 30 % test)
and runs its recipe once with every epoch's checkpoint kept (``--checkpoint.save_top_k -1``); each checkpoint is
tested on the test part, and each rule picks one from the validation scores the checkpoint carries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_few_labels import RECIPE, split_digits
from benchmarks.common import ROOT, report, table

RULES = {
    "first epoch to reach the top val/acc (Lightning's ModelCheckpoint)":
        lambda rows: max(rows, key=lambda row: (row["acc"], -row["epoch"])),
    "top val/acc, ties to the lower val/loss (AccuracyThenLossCheckpoint)":
        lambda rows: max(rows, key=lambda row: (row["acc"], -row["loss"])),
    "lowest val/loss": lambda rows: min(rows, key=lambda row: row["loss"]),
    "last epoch": lambda rows: max(rows, key=lambda row: row["epoch"]),
}


def epochs_tested(seed: int, work: Path) -> list[dict[str, float]]:
    """Every epoch's validation accuracy and loss and its checkpoint's test accuracy."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.data import DIGITS_DIR, write_digits
    from lightning_resnet.training.checkpoints import epoch_metrics

    if not (ROOT / DIGITS_DIR).is_dir():
        write_digits(ROOT / DIGITS_DIR)
    labelled, _, test, _ = split_digits(ROOT / DIGITS_DIR, work / f"seed_{seed}", seed)
    run = cli(["fit", *RECIPE, "--data.data_dir", str(labelled), "--test_after_fit", "false",
               "--checkpoint.save_top_k", "-1", "--checkpoint.filename", "epoch{epoch:02d}",
               "--trainer.logger.init_args.name", f"every_epoch_{seed}"])
    rows = []
    for checkpoint in sorted((Path(run.trainer.logger.log_dir) / "checkpoints").glob("epoch*.ckpt")):
        scores = epoch_metrics(checkpoint)
        tested = cli(["test", *RECIPE, "--data.data_dir", str(labelled), "--data.test_dir", str(test),
                      "--ckpt_path", str(checkpoint), "--trainer.logger.init_args.name", f"tested_{seed}"])
        rows.append({"epoch": int(checkpoint.stem[5:]), "acc": scores["val/acc"], "loss": scores["val/loss"],
                     "test": float(tested.trainer.callback_metrics["test/acc"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    options = parser.parse_args()
    picked: dict[str, list[float]] = {rule: [] for rule in RULES}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        for seed in range(options.seeds):
            rows = epochs_tested(seed, Path(work))
            for rule, choose in RULES.items():
                picked[rule].append(choose(rows)["test"])
        os.chdir(ROOT)
    report(f"Which checkpoint tests best: the demo digits at 10 % labels (36 validation images), {options.seeds} seeds",
           table(["rule", "test/acc of its checkpoint per seed", "mean"],
                 [[rule, " ".join(f"{value:.4f}" for value in values), f"{statistics.mean(values):.4f}"]
                  for rule, values in picked.items()]))


if __name__ == "__main__":
    main()
