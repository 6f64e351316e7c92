"""Steady-state throughput of ``trainer.fit`` (the command line, as a user runs it) against a plain loop.

Both train the demo's ResNet-18 (CIFAR stem, 16 px digits, batch 64, AdamW) from the same
data loader. The plain loop is the seeds' loop: forward, loss, backward, step, and accuracy
and loss bookkeeping with ``.item()``. The fit runs the command line with all its callbacks,
TensorBoard logging and metrics, validation off; the first steps are left out of both.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.nn.functional as F

from benchmarks.common import StepTimes, interleaved, median, report, steady_throughput, table
from lightning_resnet.cli import main as cli
from lightning_resnet.data import ImageFolderDataModule
from lightning_resnet.models import create_model

DEMO = ["--config", "configs/demo.yaml", "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
STEPS_PER_EPOCH = 12


def plain_loop(epochs: int, skip: int) -> float:
    torch.manual_seed(0)
    data = ImageFolderDataModule(image_size=16, crop_fraction=1.0, train_augment="standard", crop_scale=(0.5, 1.0),
                                 hflip=0.0, normalize="auto", batch_size=64)
    data.prepare_data()
    data.setup("fit")
    model = create_model("resnet18", num_classes=data.num_classes, stem="cifar").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.002, weight_decay=0.05)
    mean = torch.tensor(data.normalization.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.normalization.std).view(1, 3, 1, 1)
    loader = data.train_dataloader()
    times, sizes = [], []
    for _ in range(epochs):
        correct = seen = 0
        running_loss = 0.0
        for step, (images, targets) in enumerate(loader):
            if step == STEPS_PER_EPOCH:
                break
            images = (images.float() / 255 - mean) / std
            optimizer.zero_grad()
            logits = model(images)
            loss = F.cross_entropy(logits, targets)
            loss.backward()
            optimizer.step()
            running_loss += loss.item() * len(targets)
            correct += (logits.argmax(1) == targets).sum().item()
            seen += len(targets)
            times.append(time.perf_counter())
            sizes.append(len(targets))
    return steady_throughput(times, sizes, skip)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip", type=int, default=4, help="steps left out at the start of each run")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def fit() -> float:
        with tempfile.TemporaryDirectory() as logs:
            run = cli(["fit", *DEMO, "--trainer.max_epochs", str(args.epochs),
                       "--trainer.limit_train_batches", str(STEPS_PER_EPOCH),
                       "--trainer.logger.init_args.save_dir", logs,
                       "--trainer.callbacks+=benchmarks.common.StepTimes"])
            timer = next(callback for callback in run.trainer.callbacks if isinstance(callback, StepTimes))
            return steady_throughput(timer.times, timer.batch_sizes, args.skip)

    throughput = interleaved({"plain loop": lambda: plain_loop(args.epochs, args.skip), "trainer.fit": fit},
                             args.rounds)
    ratio = median([ours / plain for ours, plain in zip(throughput["trainer.fit"], throughput["plain loop"])])
    rows = [[name, f"{median(values):.1f}", " ".join(f"{v:.1f}" for v in values)]
            for name, values in throughput.items()]
    rows.append(["**ratio fit / plain**", f"**{ratio:.3f}**", ""])
    report(f"Loop: training images/s of the median step, demo model and data, {args.epochs} epochs of "
           f"{STEPS_PER_EPOCH} steps per run",
           table(["loop", "median img/s", "each round"], rows))


if __name__ == "__main__":
    main()
