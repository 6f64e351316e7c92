"""``cross_validate`` of a frozen pretrained backbone with and without ``--model.cache_features``.

The demo digits, a ResNet-50 whose weights come from a file (``--model.pretrained``; random
weights here, since the benchmark must run offline: the time is the same), frozen for every
epoch, ``train_augment: basic``, 3 folds of 3 epochs. Without the cache every epoch of every fold
runs the backbone over its training and validation images; with it, the first fold runs it once
over the folder and the others read the cache. Each variant is a whole ``cross_validate`` process
with an empty cache, alternating, so start-up and every fold's fixed costs count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, interleaved, median, report, table


def cross_validate(work: Path, weights: Path, size: int, folds: int, epochs: int, cached: bool, name: str) -> float:
    cache = work / f"cache-{name}-{time.monotonic_ns()}"  # empty: the first fold computes, the others read
    command = [sys.executable, "-m", "lightning_resnet", "cross_validate", "--config", "configs/demo.yaml",
               "--model.backbone", "resnet50", "--model.backbone_options", "{stem: imagenet}",
               "--model.pretrained", str(weights),
               "--model.freeze_backbone", "true", "--model.cache_features", str(cached).lower(),
               "--data.image_size", str(size), "--data.train_augment", "basic", "--data.normalize", "imagenet",
               "--data.num_folds", str(folds), "--trainer.max_epochs", str(epochs),
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
               "--trainer.logger.init_args.save_dir", str(work / "logs"),
               "--trainer.logger.init_args.name", name]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "XDG_CACHE_HOME": str(cache), "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image size of the ResNet-50")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating pairs of whole runs")
    args = parser.parse_args()
    from lightning_resnet.models import create_model

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        weights = work / "resnet50.pth"
        torch.save(create_model("resnet50", num_classes=1000).state_dict(), weights)
        seconds = interleaved({
            name: (lambda name=name, cached=cached: cross_validate(work, weights, args.size, args.folds, args.epochs,
                                                                   cached, name))
            for name, cached in (("images", False), ("cached", True))}, args.rounds)
    images, cached = median(seconds["images"]), median(seconds["cached"])
    report(f"cross_validate of a frozen ResNet-50 ({args.folds} folds x {args.epochs} epochs, {args.size} px digits)",
           table(["model.cache_features", "seconds (whole process)", "speed-up"],
                 [["false (the backbone runs every epoch)", f"{images:.1f}", "1.00x"],
                  ["true (once, shared by the folds)", f"{cached:.1f}", f"{images / cached:.2f}x"]])
           + f"\n\nMedian of {args.rounds} alternating pair(s); runs: images {seconds['images']}, "
             f"cached {seconds['cached']}.")


if __name__ == "__main__":
    main()
