"""Several labels per image on the composed digits (``configs/multilabel_demo.yaml``): mAP, exact-set accuracy and
macro F1 on a test part, with each label's threshold chosen by ``fit`` against one threshold of 0.5 for all, and
the wall time of ``fit``.

Each seed writes the demo's 2,000 images (:func:`~lightning_resnet.data.digit_sets.write_digit_sets`, that seed) and
500 more of another seed as the test part, into one labels file with a ``split`` column (the 2,000 split 80/20 at
random, the 500 ``test``); ``fit`` runs the demo recipe on it, ``predict`` reads the test images with the best
checkpoint, and the scores are scikit-learn's over its ``predictions.csv``.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, report, table
from lightning_resnet.bundle import read_bundle

TEST_IMAGES = 500


def labelled_set(work: Path, seed: int) -> tuple[Path, dict[str, set[str]]]:
    """The demo's images of ``seed`` (train/val) and ``TEST_IMAGES`` of another seed (test), in one labels file;
    the test images' label sets by path."""
    from lightning_resnet.data.digit_sets import LABELS_CSV, write_digit_sets

    write_digit_sets(work / "fit", seed=seed)
    write_digit_sets(work / "test", count=TEST_IMAGES, seed=1000 + seed)
    rng = random.Random(seed)
    rows, truth = [], {}
    for part in ("fit", "test"):
        with open(work / part / LABELS_CSV, newline="") as handle:
            for row in csv.DictReader(handle):
                path = f"{part}/{row['path']}"
                split = "test" if part == "test" else "val" if rng.random() < 0.2 else "train"
                rows.append((path, row["labels"], split))
                if part == "test":
                    truth[str(work / path)] = set(row["labels"].split())
    labels = work / "labels.csv"
    with open(labels, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "labels", "split"))
        writer.writerows(rows)
    return labels, truth


def scores(predictions: Path, truth: dict[str, set[str]], thresholds: np.ndarray) -> dict[str, float]:
    """mAP, and exact-set accuracy and macro F1 at ``thresholds`` and at 0.5, over the test images."""
    from sklearn.metrics import average_precision_score, f1_score

    with open(predictions, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["path"] in truth]
    names = [column.removeprefix("probability_") for column in rows[0] if column.startswith("probability_")]
    probabilities = np.array([[float(row[f"probability_{name}"]) for name in names] for row in rows])
    targets = np.array([[name in truth[row["path"]] for name in names] for row in rows])
    result = {"mAP": float(average_precision_score(targets, probabilities, average="macro"))}
    for rule, cut in (("chosen", thresholds), ("0.5", np.full(len(names), 0.5))):
        predicted = probabilities >= cut
        result[f"exact {rule}"] = float((predicted == targets).all(axis=1).mean())
        result[f"F1 {rule}"] = float(f1_score(targets, predicted, average="macro", zero_division=0))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="the recipe's unless given")
    options = parser.parse_args()
    import torch

    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    results: dict[str, list[float]] = {}
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        os.chdir(work)
        for seed in range(options.seeds):
            labels, truth = labelled_set(work / f"seed_{seed}", seed)
            epochs = [] if options.epochs is None else ["--trainer.max_epochs", str(options.epochs)]
            start = time.perf_counter()
            run = cli(["fit", "--config", str(ROOT / "configs/multilabel_demo.yaml"), "--data.labels", str(labels),
                       "--seed_everything", str(seed), "--test_after_fit", "false", *epochs,
                       "--trainer.enable_progress_bar", "false"])
            seconds.append(time.perf_counter() - start)
            best = best_checkpoint(run.trainer).path
            thresholds = torch.tensor(read_bundle(best).decision.label_thresholds)
            predicted = cli(["predict", "--ckpt_path", str(best), "--data.predict_dir", str(labels.parent / "test"),
                             "--trainer.enable_progress_bar", "false"])
            output = Path(predicted.trainer.logger.log_dir) / "predictions.csv"
            for name, value in scores(output, truth, thresholds.numpy()).items():
                results.setdefault(name, []).append(value)
            print(results, flush=True)
        os.chdir(ROOT)
    rows = [[name, " / ".join(f"{value:.4f}" for value in values), f"{statistics.mean(values):.4f}"]
            for name, values in results.items()]
    rows.append(["fit wall seconds", " / ".join(f"{value:.0f}" for value in seconds),
                 f"{statistics.mean(seconds):.0f}"])
    report(f"Several labels per image: the composed digits, {TEST_IMAGES} test images, {options.seeds} seed(s)",
           table(["measure", "per seed", "mean"], rows))


if __name__ == "__main__":
    main()
