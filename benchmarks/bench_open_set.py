"""Open-set rejection measured on held-out classes: train on some digits of the demo, then ask the model about
the validation images of its own classes and about every image of the digits it never saw.

For each score a model could reject by, the AUROC of known against unknown images (1.0: every
unknown image scores below every known one), and at the threshold ``fit``'s rule gives it (the one
that keeps 95 % of the correctly classified validation images) the share of unknown images it
flags and the share of known ones it flags too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from benchmarks.common import ROOT, report, table
from lightning_resnet.tasks.energy import KEEP_CORRECT

SPLITS = {"0-5 known, 6-9 unknown": ("0", "1", "2", "3", "4", "5"),
          "4-9 known, 0-3 unknown": ("4", "5", "6", "7", "8", "9")}


def known_folder(digits: Path, known: tuple[str, ...], target: Path) -> Path:
    for name in known:
        (target / name).mkdir(parents=True)
        for image in sorted((digits / name).iterdir()):
            (target / name / image.name).symlink_to(image.resolve())
    return target


def scores(checkpoint: Path, paths: list[str]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Per image, each score a model could reject by; and the predicted class names."""
    from lightning_resnet.bundle import read_bundle
    from lightning_resnet.runtimes import TorchPredictor

    model = TorchPredictor(read_bundle(checkpoint))
    temperature = model.bundle.decision.temperature
    with torch.inference_mode():
        probabilities, scaled, _ = model.shipped(torch.stack([model.view(path) for path in paths]))
    predicted = [model.class_names[index] for index in probabilities.argmax(dim=1).tolist()]
    return {"max softmax (calibrated), float32 as stored": probabilities.max(dim=1).values.double(),
            "max softmax (calibrated), float64": scaled.double().softmax(dim=1).max(dim=1).values,
            "negative energy, T·logsumexp(z/T)": temperature * torch.logsumexp(scaled.double(), dim=1),
            "max logit": temperature * scaled.double().max(dim=1).values}, predicted


def measure(name: str, known: tuple[str, ...], work: Path, epochs: int) -> tuple[list[list[str]], str]:
    from lightning_resnet.cli import main as cli
    from lightning_resnet.data import DIGITS_DIR, read_split_csv, write_digits
    from lightning_resnet.training.checkpoints import best_checkpoint_of_run

    digits = Path(DIGITS_DIR)
    if not digits.is_dir():
        write_digits(digits)
    folder = known_folder(digits, known, work / "known")
    run = cli(["fit", "--config", "configs/demo.yaml", "--data.data_dir", str(folder), "--trainer.max_epochs",
               str(epochs), "--trainer.logger.init_args.save_dir", str(work / "logs"),
               "--trainer.enable_progress_bar", "false"])
    folder_of_run = Path(run.trainer.log_dir)
    checkpoint = best_checkpoint_of_run(folder_of_run).path
    val = [row for row in read_split_csv(folder_of_run / "split.csv") if row["split"] == "val"]
    unknown = sorted(str(path) for digit in sorted(set(os.listdir(digits)) - set(known))
                     for path in (digits / digit).iterdir())
    (known_scores, predicted), (unknown_scores, _) = scores(checkpoint, [row["path"] for row in val]), \
        scores(checkpoint, unknown)
    correct = torch.tensor([guess == row["class"] for guess, row in zip(predicted, val)])
    rows = []
    for score, known_values in known_scores.items():
        labels = [1] * len(val) + [0] * len(unknown)
        auroc = roc_auc_score(labels, torch.cat([known_values, unknown_scores[score]]).tolist())
        threshold = torch.quantile(known_values[correct], 1 - KEEP_CORRECT, interpolation="lower")
        rows.append([name, score, f"{auroc:.3f}", f"{float((unknown_scores[score] < threshold).double().mean()):.1%}",
                     f"{float((known_values < threshold).double().mean()):.1%}"])
    from lightning_resnet.bundle import read_bundle

    stored = read_bundle(checkpoint).decision.reject_below
    accuracy = float(correct.double().mean())
    return rows, (f"{name}: {len(val)} known validation images (accuracy {accuracy:.4f}), {len(unknown)} unknown; "
                  f"the threshold fit stored: {stored:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of configs/demo.yaml (its own: 6)")
    args = parser.parse_args()
    os.chdir(ROOT)
    rows, lines = [], []
    for name, known in SPLITS.items():
        with tempfile.TemporaryDirectory() as work:
            split_rows, line = measure(name, known, Path(work), args.epochs)
        rows += split_rows
        lines.append(line)
    report("Open-set rejection on held-out digits (configs/demo.yaml)",
           table(["known / unknown", "score", "AUROC known vs unknown", "unknown flagged", "known flagged"], rows)
           + f"\n\nEach threshold keeps {KEEP_CORRECT:.0%} of the correctly classified validation images, the rule "
           "fit applies.\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
