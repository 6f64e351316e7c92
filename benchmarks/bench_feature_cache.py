"""A frozen pretrained backbone with and without ``--model.cache_features``: ``cross_validate``, and the seeds'
birds recipe.

The demo digits, a ResNet-50 whose weights come from a file (``--model.pretrained``; random
weights here, since the benchmark must run offline: the time is the same), frozen for every
epoch, ``train_augment: basic``, 3 folds of 3 epochs. Without the cache every epoch of every fold
runs the backbone over its training and validation images; with it, the first fold runs it once
over the folder and the others read the cache. Each variant is a whole ``cross_validate`` process
with an empty cache, alternating, so start-up and every fold's fixed costs count.

The birds recipe (``configs/resnet50_birds.yaml``: ResNet-50 at 224 px, 2 frozen epochs, then the whole
network) on a generated folder of 4 classes of 320x240 JPEG photos, with ``train_augment: basic``: the
seconds of each epoch (training and validation), with and without the cache. The cache's first epoch computes
the features; the goal is its later frozen epochs at a tenth of the uncached time or less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import ROOT, interleaved, median, report, table
from benchmarks.run_clock import MARK


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


def make_photos(root: Path, classes: int, per_class: int) -> Path:
    """``classes`` folders of 320x240 JPEGs: a colour and a shape per class, placed at random, with grain."""
    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == classes * per_class:
        return root
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for index in range(classes):
        folder = root / f"species_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for item in range(per_class):
            background = tuple(int(v) for v in rng.integers(0, 256, 3))
            image = Image.new("RGB", (320, 240), background)
            left, top = int(rng.integers(0, 200)), int(rng.integers(0, 120))
            colour = tuple(int(v) for v in (np.array([60, 120, 180]) + 60 * index) % 256)
            shape = ImageDraw.Draw(image).ellipse if index % 2 else ImageDraw.Draw(image).rectangle
            shape((left, top, left + 100, top + 100), fill=colour)
            pixels = np.asarray(image, np.int16) + rng.integers(-12, 13, (240, 320, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{item:03d}.jpg", quality=90)
    return root


def birds_epochs(work: Path, folder: Path, weights: Path, cached: bool, name: str) -> list[float]:
    """Seconds of each epoch of the birds recipe (2 frozen, then 1 with the whole network), then of the process."""
    command = [sys.executable, "-m", "lightning_resnet", "fit", "--config", "configs/resnet50_birds.yaml",
               "--data.data_dir", str(folder), "--model.pretrained", str(weights),
               "--model.cache_features", str(cached).lower(), "--data.train_augment", "basic",
               "--trainer.max_epochs", "3", "--trainer.callbacks", "run_clock.EpochClock",
               "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
               "--trainer.logger.init_args.save_dir", str(work / "logs"), "--trainer.logger.init_args.name", name]
    env = {**os.environ, "XDG_CACHE_HOME": str(work / f"cache-{name}-{time.monotonic_ns()}"),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'benchmarks'}"}
    start = time.perf_counter()
    finished = subprocess.run(command, check=True, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    marked = [line for line in finished.stdout.splitlines() if line.startswith(MARK)]
    return [*json.loads(marked[-1][len(MARK):])["epoch_seconds"], wall]


def birds_recipe(rounds: int, per_class: int) -> None:
    from lightning_resnet.models import create_model

    folder = make_photos(ROOT / "data" / "bench_birds", classes=4, per_class=per_class)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        weights = work / "resnet50.pth"
        torch.save(create_model("resnet50", num_classes=1000).state_dict(), weights)
        epochs = interleaved({name: (lambda name=name, cached=cached: birds_epochs(work, folder, weights, cached, name))
                              for name, cached in (("images", False), ("cached", True))}, rounds)
    rows = []
    for epoch, label in enumerate(("0: frozen, the cache's features computed before it", "1: frozen",
                                   "2: the whole network", "the whole process (start-up, 3 epochs, reports)")):
        uncached = median([run[epoch] for run in epochs["images"]])
        cached = median([run[epoch] for run in epochs["cached"]])
        rows.append([label, f"{uncached:.1f}", f"{cached:.1f}", f"{uncached / cached:.1f}x"])
    report(f"The birds recipe (ResNet-50, 224 px, 2 frozen epochs then the whole network) on {4 * per_class} "
           "generated photos, seconds of each epoch",
           table(["epoch", "model.cache_features false", "true", "speed-up"], rows)
           + f"\n\nMedian of {rounds} alternating pair(s); every run a whole process with an empty cache.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=("cross_validate", "birds", "both"), default="both")
    parser.add_argument("--size", type=int, default=64, help="image size of the ResNet-50 of cross_validate")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=48, help="photos per class of the birds recipe")
    parser.add_argument("--rounds", type=int, default=1, help="alternating pairs of whole runs")
    args = parser.parse_args()
    if args.recipe in ("birds", "both"):
        birds_recipe(args.rounds, args.photos)
    if args.recipe in ("cross_validate", "both"):
        cross_validation(args)


def cross_validation(args: argparse.Namespace) -> None:
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
