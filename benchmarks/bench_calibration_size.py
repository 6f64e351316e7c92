"""How many validation images temperature scaling needs before its temperature can be trusted.

Two demo models (``configs/demo.yaml``, 3 epochs, not calibrated): one on the digits as they are, one with 30 %
of the training and validation labels moved to another class at random (an over-confident model, the case
calibration is for). For each validation size n, 200 draws: fit the temperature on n of the model's validation
images, as ``fit`` does, and measure the negative log-likelihood on the validation images not drawn, with that
temperature and with none. A temperature that makes the held-out NLL worse than none is a wrong one.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import ROOT, report, table

SIZES = (8, 16, 24, 32, 48, 64, 96, 128, 192)
DRAWS = 200


def noisy_copy(source: Path, target: Path, share: float, seed: int = 0) -> Path:
    """The digits with ``share`` of the images filed under another class at random."""
    rng = random.Random(seed)
    classes = sorted(path.name for path in source.iterdir() if path.is_dir())
    for name in classes:
        (target / name).mkdir(parents=True, exist_ok=True)
    for image in sorted(source.rglob("*.png")):
        label = image.parent.name
        if rng.random() < share:
            label = rng.choice([name for name in classes if name != image.parent.name])
        shutil.copy(image, target / label / image.name)
    return target


def validation_logits(data_dir: Path, logs: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Train the demo recipe on ``data_dir``; the logits and labels of its validation split (temperature 1)."""
    from lightning_resnet.bundle import read_bundle
    from lightning_resnet.cli import main as cli
    from lightning_resnet.data import read_split_csv
    from lightning_resnet.runtimes import TorchPredictor
    from lightning_resnet.training.checkpoints import best_checkpoint

    run = cli(["fit", "--config", "configs/demo.yaml", "--data.data_dir", str(data_dir), "--trainer.max_epochs", "3",
               "--model.calibrate", "false", "--trainer.logger.init_args.save_dir", logs,
               "--trainer.enable_progress_bar", "false", "--test_after_fit", "false"])
    best = best_checkpoint(run.trainer).path
    model = TorchPredictor(read_bundle(best))
    rows = [row for row in read_split_csv(best.parent.parent / "split.csv") if row["split"] == "val"]
    logits = model.run(torch.stack([model.view(row["path"]) for row in rows])).logits
    names = model.class_names
    return logits.double(), torch.tensor([names.index(row["class"]) for row in rows])


def held_out_harm(logits: torch.Tensor, targets: torch.Tensor, size: int, seed: int) -> tuple[float, float, float]:
    """Over the draws: the share whose fitted temperature worsened the held-out NLL, the median change of the held-out
    NLL, and the share at the end of the searched range."""
    from lightning_resnet.tasks.temperature import fit_temperature, mean_nll

    generator = torch.Generator().manual_seed(seed)
    worse, changes, at_bound = 0, [], 0
    for _ in range(DRAWS):
        order = torch.randperm(len(targets), generator=generator)
        fit_on, held_out = order[:size], order[size:]
        temperature = fit_temperature(logits[fit_on], targets[fit_on])
        before = mean_nll(logits[held_out], targets[held_out], 1.0)
        after = mean_nll(logits[held_out], targets[held_out], temperature)
        worse += after > before
        changes.append(after - before)
        at_bound += not (1 / 20 * 1.01 < temperature < 20 / 1.01)
    return worse / DRAWS, float(np.median(changes)), at_bound / DRAWS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--noise", type=float, default=0.3)
    args = parser.parse_args()
    os.chdir(ROOT)
    from lightning_resnet.data import DIGITS_DIR, write_digits

    if not DIGITS_DIR.is_dir():
        write_digits(DIGITS_DIR)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        noisy = noisy_copy(DIGITS_DIR, Path(work) / "noisy", args.noise)
        for label, folder in (("digits", DIGITS_DIR), (f"digits, {args.noise:.0%} labels wrong", noisy)):
            logits, targets = validation_logits(folder, str(Path(work) / "logs"))
            for size in SIZES:
                worse, change, bound = held_out_harm(logits, targets, size, seed=size)
                rows.append([label, str(size), f"{worse:.0%}", f"{change:+.4f}", f"{bound:.0%}"])
                print(rows[-1], flush=True)
    report("Calibration: the temperature fitted on n validation images, measured on the others "
           f"({DRAWS} draws per n)",
           table(["model", "n", "held-out NLL worse than T = 1", "median change of the held-out NLL",
                  "temperature at the searched range's end"], rows))


if __name__ == "__main__":
    main()
