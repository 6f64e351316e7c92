"""Label errors found in the demo digits: flip a seeded 5 % of the labels, cross-validate, ``inspect --predictions``.

The digits are split once (stratified, seeded) into a clean test folder (20 %) and a training
folder (80 %) in which 5 % of the images are moved to another class's folder at random. Then the
workflow of README "Find problems in your data": ``cross_validate`` (5 folds of configs/demo.yaml),
``inspect --predictions``, and ``fit`` on the training folder before and after ``--data.exclude
label_issues.csv``, each tested on the clean test folder. Reports the precision and recall of
``label_issues.csv`` against the flipped images, the time of each step, and the two test accuracies.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, report, table

FLIPPED_SHARE = 0.05
TEST_SHARE = 0.2


def noisy_digits(work: Path, seed: int) -> tuple[Path, Path, set[str]]:
    """(training folder with flipped labels, clean test folder, the flipped images' paths in the training folder)."""
    from lightning_resnet.data import DIGITS_DIR, write_digits

    digits = Path(DIGITS_DIR)
    if not digits.is_dir():
        write_digits(digits)
    rng = np.random.default_rng(seed)
    classes = sorted(os.listdir(digits))
    train, test, flipped = work / "train", work / "test", set()
    files = [(name, image) for name in classes for image in sorted((digits / name).iterdir())]
    held_out = {index for name in classes
                for index in rng.permutation([i for i, (n, _) in enumerate(files) if n == name])
                [: round(TEST_SHARE * sum(n == name for n, _ in files))].tolist()}
    kept = [i for i in range(len(files)) if i not in held_out]
    to_flip = set(rng.choice(kept, size=round(FLIPPED_SHARE * len(kept)), replace=False).tolist())
    for index, (name, image) in enumerate(files):
        if index in held_out:
            target = test / name
        elif index in to_flip:
            target = train / str(rng.choice([other for other in classes if other != name]))
        else:
            target = train / name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(image, target / image.name)
        if index in to_flip:
            flipped.add(str((target / image.name).resolve()))
    return train, test, flipped


def timed(args: list[str]) -> tuple[object, float]:
    from lightning_resnet.cli import main as cli

    start = time.perf_counter()
    result = cli(args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=6, help="epochs of configs/demo.yaml (its own: 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test split and of the flips")
    parser.add_argument("--keep", type=Path, help="work in this new folder and keep it (the README's run)")
    args = parser.parse_args()
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as folder:
        work = args.keep.resolve() if args.keep else Path(folder)
        train, test, flipped = noisy_digits(work, args.seed)
        images = sum(1 for _ in train.rglob("*.png"))
        common = ["--config", "configs/demo.yaml", "--data.data_dir", str(train), "--trainer.max_epochs",
                  str(args.epochs), "--trainer.logger.init_args.save_dir", str(work / "logs"),
                  "--trainer.enable_progress_bar", "false"]
        _, cross_seconds = timed(["cross_validate", *common, "--data.num_folds", str(args.folds),
                                  "--trainer.enable_model_summary", "false"])
        _, inspect_seconds = timed(["inspect", *common, "--predictions", str(work / "logs/demo/crossval_0")])
        runs = sorted((work / "logs/demo").glob("version_*"), key=lambda path: path.stat().st_mtime)
        with open(runs[-1] / "label_issues.csv", newline="") as handle:
            suspected = {str(Path(row["path"]).resolve()) for row in csv.DictReader(handle)}
        found = len(suspected & flipped)
        accuracy = {}
        fit_seconds = {}
        for name, extra in (("as labelled", []), ("--data.exclude label_issues.csv",
                                                  ["--data.exclude", str(runs[-1] / "label_issues.csv")])):
            run, fit_seconds[name] = timed(["fit", *common, "--data.test_dir", str(test), *extra])
            accuracy[name] = float(run.trainer.callback_metrics["test/acc"])
    rows = [["label_issues.csv against the flipped images", f"precision {found / max(1, len(suspected)):.3f}",
             f"recall {found / len(flipped):.3f}", f"{len(suspected)} listed, {len(flipped)} flipped, {found} both"],
            ["cross_validate, 5 folds" if args.folds == 5 else f"cross_validate, {args.folds} folds",
             f"{cross_seconds:.0f} s", "", ""],
            ["inspect --predictions", f"{inspect_seconds:.0f} s", "", ""]]
    rows += [[f"fit {name}, test accuracy on the clean 20 %", f"{accuracy[name]:.4f}", f"{fit_seconds[name]:.0f} s",
              ""] for name in accuracy]
    report(f"Label errors in the demo digits ({FLIPPED_SHARE:.0%} flipped, seed {args.seed})",
           table(["what", "result", "", "counts"], rows)
           + f"\n\n{images} training images; configs/demo.yaml at {args.epochs} epochs for every fit.")


if __name__ == "__main__":
    main()
