"""What the ResNet paper's CIFAR-10 recipe costs here: writing CIFAR-10 by name from its archive, and one epoch of
``fit --config configs/resnet56_cifar10.yaml`` (45,000 training images at batch 128, then the 5,000 validation
images) for each depth.

The machine has no network, so the archive is a stand-in of CIFAR-10's size and layout (50,000 + 10,000 generated
32-px images in its pickled batches) laid in the cache where the download puts it, with torchvision told its
checksums; the pipeline from there (torchvision's reader, the PNG folder, the start-up check, the loader, the
network) is the one a real run takes. Accuracy is not measured: that needs the real images and 182 epochs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pytest
from lightning.pytorch import Callback

from benchmarks.common import ROOT, report, table


class EpochClock(Callback):
    """The wall seconds of the first training epoch and of its validation."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.marks.setdefault("train_start", time.perf_counter())

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.marks.setdefault("val_start", time.perf_counter())

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.marks.setdefault("val_end", time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 32, 44, 56, 110])
    parser.add_argument("--bf16_depths", type=int, nargs="*", default=[56],
                        help="depths also timed with --trainer.precision bf16-mixed")
    options = parser.parse_args()

    from lightning_resnet.cli import main as cli
    from tests.conftest import place_tiny_cifar10

    work = Path(tempfile.mkdtemp(prefix="paper_epoch_"))
    os.chdir(work)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    patches = pytest.MonkeyPatch()
    place_tiny_cifar10(patches, train_per_class=5000, test_per_class=1000)

    from lightning_resnet.data import ImageFolderDataModule

    started = time.perf_counter()
    data = ImageFolderDataModule(data_dir="cifar10", image_size=32, val_fraction=0.1)
    data.source.named.written()
    written = time.perf_counter() - started
    started = time.perf_counter()
    data.prepare_data()  # the start-up check and hashes of the 50,000 training images, cached for later runs
    checked = time.perf_counter() - started

    rows = []
    runs = [(depth, "32-true") for depth in options.depths] + [(depth, "bf16-mixed") for depth in options.bf16_depths]
    for depth, precision in runs:
        started = time.perf_counter()
        result = cli(["fit", "--config", str(ROOT / "configs/resnet56_cifar10.yaml"),
                      "--model.backbone", f"resnet{depth}", "--trainer.max_epochs", "1",
                      "--trainer.precision", precision, "--trainer.enable_progress_bar", "false",
                      "--trainer.callbacks+", "benchmarks.bench_paper_epoch.EpochClock",
                      "--trainer.logger.init_args.name", f"resnet{depth}_{precision}"])
        total = time.perf_counter() - started
        marks = next(callback for callback in result.trainer.callbacks if type(callback).__name__ == "EpochClock").marks
        train = marks["val_start"] - marks["train_start"]
        rows.append([f"ResNet-{depth}", precision, f"{train:.0f}", f"{marks['val_end'] - marks['val_start']:.0f}",
                     f"{total:.0f}", f"{45000 / train:.0f}"])

    os.chdir(ROOT)
    report("The ResNet paper's CIFAR-10 recipe on this machine: one epoch of each depth",
           f"CIFAR-10 by name from its archive (a stand-in of its size): folder written in {written:.0f} s, "
           f"start-up check of the training images {checked:.0f} s (both once)\n\n"
           + table(["network", "precision", "training epoch (s)", "validation (s)", "fit, 1 epoch (s)",
                    "training images/s"], rows))


if __name__ == "__main__":
    main()
