"""``fit`` against timm's own ``train.py`` (from a checkout given with ``--timm``), on the same pre-split folder.

The work: a ResNet-18 with the ImageNet stem at 32 px, batch 64, AdamW (lr 2e-3, weight decay 0.05, none on
biases and norms), cosine over the run's steps without warm-up, random resized crop of 0.5-1 of the area
(bilinear), no flip, no colour jitter, no label smoothing, ImageNet mean and std, one loader worker, validation
after every epoch, on the CPU. ``fit`` is ``python -m lightning_resnet fit`` with its defaults otherwise
(checkpoints, TensorBoard, metrics, reports and the end-of-fit calibration included); ``train.py`` with its own
(checkpoints, summary.csv). Each run is a whole process, the two alternating; ``fit``'s start-up is from the
process's start to its first training step.

The folder is scikit-learn's 1,797 digits at 28 px, each written with two copies shifted by a
pixel (5,391 PNGs), split 80/20 by digit so that no copy crosses the split; made once, offline.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, median, report, table
from benchmarks.run_clock import MARK

EPOCHS = 3
IMAGE_SIZE = 32
BATCH_SIZE = 64
LR = 2e-3
WEIGHT_DECAY = 0.05
CROP_SCALE = (0.5, 1.0)


def make_digits_folder(root: Path, side: int = 28, copies: int = 3) -> Path:
    """``root/train/<digit>/`` and ``root/val/<digit>/`` of the digits blown up to ``side`` px; made once."""
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    indices = np.arange(len(digits.target))
    train, _ = train_test_split(indices, test_size=0.2, stratify=digits.target, random_state=0)
    in_train = set(train.tolist())
    partial = Path(tempfile.mkdtemp(prefix=".digits-", dir=root.parent if root.parent.is_dir() else None))
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        part = "train" if index in in_train else "val"
        folder = partial / part / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        ink = Image.fromarray(np.rint(pixels * (255.0 / 16.0)).astype(np.uint8), "L")
        large = np.asarray(ink.resize((side, side), Image.BICUBIC))
        for copy in range(copies):
            shifted = np.roll(large, shift=(copy % 2, copy // 2), axis=(0, 1))
            Image.fromarray(shifted, "L").save(folder / f"{index:04d}_{copy}.png")
    root.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(root)
    return root


def train_py_command(train_py: Path, folder: Path, output: Path, workers: int) -> list[str]:
    """timm's own ``train.py`` doing the same work: its defaults that differ from the recipe set to the recipe
    (label smoothing 0.1, random interpolation, warm-up, flip, colour jitter, 4 workers, a CUDA device)."""
    return [sys.executable, str(train_py), "--data-dir", str(folder), "--train-split", "train", "--val-split", "val",
            "--model", "resnet18", "--num-classes", "10", "--img-size", str(IMAGE_SIZE), "--crop-pct", "1.0",
            "--mean", "0.485", "0.456", "0.406", "--std", "0.229", "0.224", "0.225",
            "-b", str(BATCH_SIZE), "--opt", "adamw", "--lr", str(LR), "--weight-decay", str(WEIGHT_DECAY),
            "--sched", "cosine", "--sched-on-updates", "--epochs", str(EPOCHS), "--warmup-epochs", "0",
            "--cooldown-epochs", "0", "--scale", str(CROP_SCALE[0]), str(CROP_SCALE[1]), "--hflip", "0",
            "--color-jitter", "0", "--smoothing", "0", "--train-interpolation", "bilinear", "-j", str(workers),
            "--device", "cpu", "--seed", "42", "--output", str(output), "--experiment", "peer"]


def train_py_accuracy(output: Path) -> float:
    """The last epoch's top-1 validation accuracy from the ``summary.csv`` that ``train.py`` writes."""
    import csv

    with open(output / "peer" / "summary.csv", newline="") as handle:
        return float(list(csv.DictReader(handle))[-1]["eval_top1"]) / 100


FIT_CONFIG = f"""
seed_everything: 42
trainer:
  max_epochs: {EPOCHS}
  devices: 1
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {{save_dir: LOGS, name: peer, default_hp_metric: false}}
  callbacks: [{{class_path: run_clock.FirstStepClock}}]
model:
  backbone: resnet18
  optimizer:
    class_path: torch.optim.AdamW
    init_args: {{lr: {LR}, weight_decay: {WEIGHT_DECAY}}}
  lr_scheduler: cosine
  warmup_epochs: 0
data:
  data_dir: FOLDER
  image_size: {IMAGE_SIZE}
  crop_fraction: 1.0
  train_augment: standard
  crop_scale: [{CROP_SCALE[0]}, {CROP_SCALE[1]}]
  hflip: 0.0
  normalize: imagenet
  batch_size: {BATCH_SIZE}
  num_workers: WORKERS
"""


def timed(command: list[str], code: Path, cache: Path, output: Path | None = None) -> dict:
    """Run one whole process in ``code``; its wall time and validation accuracy, and for ``fit`` its start-up (to
    the first step). ``output``: where ``train.py`` writes its ``summary.csv`` (emptied first)."""
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT / 'benchmarks'}", "XDG_CACHE_HOME": str(cache)}
    if output is not None:
        shutil.rmtree(output, ignore_errors=True)
    start = time.time()
    finished = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    wall = time.time() - start
    if finished.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    if output is not None:
        return {"wall": wall, "start_up": None, "accuracy": train_py_accuracy(output)}
    marked = [line for line in finished.stdout.splitlines() if line.startswith(MARK)]
    result = json.loads(marked[-1][len(MARK):])
    after = start + wall - result["last_step_end"] - result["last_validation"]
    phases = {"start-up": result["first_step"] - start, **result["seconds"], "after the last epoch": after}
    return {"wall": wall, "start_up": result["first_step"] - start, "accuracy": result["accuracy"], "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timm", type=Path, required=True,
                        help="a checkout of huggingface/pytorch-image-models: its train.py is the peer")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs of whole runs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bench_peer_digits")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose fit is timed")
    parser.add_argument("--fit-options", default="",
                        help="added to fit's command line, one quoted string: \"--trainer.precision bf16-mixed\"")
    args = parser.parse_args()
    fit_options = shlex.split(args.fit_options)
    train_py = args.timm.resolve() / "train.py"
    if not train_py.is_file():
        sys.exit(f"--timm {args.timm}: no train.py there (git clone https://github.com/huggingface/"
                 "pytorch-image-models; benchmarks/README.md names the commit measured)")
    folder = make_digits_folder(args.data.resolve())
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config = scratch / "fit.yaml"
        config.write_text(FIT_CONFIG.replace("LOGS", str(scratch / "logs")).replace("FOLDER", str(folder))
                          .replace("WORKERS", str(args.workers)))
        peer_output = scratch / "train_py"
        commands = {
            "fit": [sys.executable, "-m", "lightning_resnet", "fit", "--config", str(config), *fit_options],
            "timm train.py": train_py_command(train_py, folder, peer_output, args.workers),
        }
        where = {"fit": (args.code, None), "timm train.py": (args.timm.resolve(), peer_output)}
        # the folder's examination is cached per folder: the first fit pays it, as a user's first run does
        first = timed(commands["fit"], args.code, scratch / "cache")
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for pair in range(args.pairs):
            order = list(commands) if pair % 2 == 0 else list(reversed(commands))
            for name in order:
                runs[name].append(timed(commands[name], *where[name][:1], scratch / "cache", where[name][1]))
    rows = []
    for name, results in runs.items():
        walls = [result["wall"] for result in results]
        start_ups = [result["start_up"] for result in results if result["start_up"] is not None]
        rows.append([name, f"{median(walls):.1f}", f"{min(walls):.1f}-{max(walls):.1f}",
                     f"{median(start_ups):.1f}" if start_ups else "-",
                     f"{median([result['accuracy'] for result in results]):.4f}"])
    ratios = [f["wall"] / p["wall"] for f, p in zip(runs["fit"], runs["timm train.py"])]
    phases = {name: median([result["phases"][name] for result in runs["fit"]]) for name in runs["fit"][0]["phases"]}
    counts = " + ".join(f"{sum(1 for _ in (folder / part).rglob('*.png')):,}" for part in ("train", "val"))
    commit = subprocess.run(["git", "-C", str(args.timm), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "not a git checkout"
    report(f"fit against timm's train.py ({commit}), {EPOCHS} epochs of ResNet-18 at {IMAGE_SIZE} px on {counts} "
           f"digits, {args.workers} loader worker(s), {args.pairs} alternating pairs (code: {args.code.name}"
           f"{', ' + args.fit_options if args.fit_options else ''})",
           table(["run", "wall s (median)", "range", "start-up s", "val accuracy"], rows)
           + f"\n\nfit / train.py wall time: {median(ratios):.2f} (median of the pairs' ratios, range "
             f"{min(ratios):.2f}-{max(ratios):.2f}). The first fit, which examines the folder (cached after): "
             f"{first['wall']:.1f} s.\n\nWhere fit's time went (medians, s): "
           + ", ".join(f"{name} {seconds:.1f}" for name, seconds in phases.items())
           + " (after the last epoch: its checkpoint, calibration, the end-of-fit reports and the exit).")


if __name__ == "__main__":
    main()
