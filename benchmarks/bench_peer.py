"""``fit`` against a peer pipeline built from timm's library alone, on the same pre-split folder.

The work is what a researcher would otherwise run with timm's ``train.py``: a ResNet-18 with the
ImageNet stem at 32 px, batch 64, AdamW (lr 2e-3, weight decay 0.05, none on biases and norms),
cosine over the run without warm-up, random resized crop of 0.5-1 of the area, no flip and no
colour jitter, ImageNet mean and std, one loader worker, validation after every epoch. The peer is
timm's ``create_dataset``/``create_loader`` (its transforms), ``create_model``,
``create_optimizer_v2``, ``create_scheduler_v2`` and a plain loop; ``fit`` is
``python -m lightning_resnet fit`` with its defaults otherwise (checkpoints, TensorBoard,
metrics, reports and the end-of-fit calibration included). Each run is a whole process, the two
alternating; start-up is from the process's start to its first training step.

The folder is scikit-learn's 1,797 digits at 28 px, each written with two copies shifted by a
pixel (5,391 PNGs), split 80/20 by digit so that no copy crosses the split; made once, offline.
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


def peer_run(folder: Path, workers: int) -> None:
    """The peer: timm's data, model, optimizer and scheduler factories and a plain loop."""
    import timm
    import torch
    import torch.nn.functional as F
    from timm.data import create_dataset, create_loader
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2

    torch.manual_seed(42)
    train_set = create_dataset("", root=str(folder), split="train", is_training=True)
    val_set = create_dataset("", root=str(folder), split="val")
    common = {"input_size": (3, IMAGE_SIZE, IMAGE_SIZE), "batch_size": BATCH_SIZE, "num_workers": workers,
              "use_prefetcher": False, "device": torch.device("cpu"), "crop_pct": 1.0}
    train_loader = create_loader(train_set, is_training=True, scale=CROP_SCALE, hflip=0.0, color_jitter=0.0,
                                 **common)
    val_loader = create_loader(val_set, **common)
    model = timm.create_model("resnet18", num_classes=len(train_set.reader.class_to_idx))
    optimizer = create_optimizer_v2(model, opt="adamw", lr=LR, weight_decay=WEIGHT_DECAY)
    scheduler, _ = create_scheduler_v2(optimizer, sched="cosine", num_epochs=EPOCHS, warmup_epochs=0,
                                       step_on_epochs=False, updates_per_epoch=len(train_loader))
    first_step = None
    accuracy = 0.0
    for epoch in range(EPOCHS):
        model.train()
        for step, (images, targets) in enumerate(train_loader):
            first_step = first_step or time.time()
            loss = F.cross_entropy(model(images), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step_update(epoch * len(train_loader) + step + 1)
        model.eval()
        correct = seen = 0
        with torch.no_grad():
            for images, targets in val_loader:
                correct += (model(images).argmax(1) == targets).sum().item()
                seen += len(targets)
        accuracy = correct / seen
    print(MARK + json.dumps({"first_step": first_step, "accuracy": accuracy}), flush=True)


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


def timed(command: list[str], code: Path, cache: Path) -> dict:
    """Run one whole process in ``code``; its wall time, start-up (to the first step) and accuracy."""
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT / 'benchmarks'}", "XDG_CACHE_HOME": str(cache)}
    start = time.time()
    finished = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    wall = time.time() - start
    marked = [line for line in finished.stdout.splitlines() if line.startswith(MARK)]
    if finished.returncode != 0 or not marked:
        sys.exit(f"{' '.join(command)} failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    result = json.loads(marked[-1][len(MARK):])
    return {"wall": wall, "start_up": result["first_step"] - start, "accuracy": result["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs of whole runs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bench_peer_digits")
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose fit is timed")
    parser.add_argument("--peer-run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_run:
        peer_run(args.peer_run, args.workers)
        return
    folder = make_digits_folder(args.data.resolve())
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        config = scratch / "fit.yaml"
        config.write_text(FIT_CONFIG.replace("LOGS", str(scratch / "logs")).replace("FOLDER", str(folder))
                          .replace("WORKERS", str(args.workers)))
        commands = {
            "fit": [sys.executable, "-m", "lightning_resnet", "fit", "--config", str(config)],
            "timm peer": [sys.executable, str(ROOT / "benchmarks" / "bench_peer.py"), "--peer-run", str(folder),
                          "--workers", str(args.workers)],
        }
        checkouts = {"fit": args.code, "timm peer": ROOT}
        # the folder's examination is cached per folder: the first fit pays it, as a user's first run does
        first = timed(commands["fit"], args.code, scratch / "cache")
        runs: dict[str, list[dict]] = {name: [] for name in commands}
        for pair in range(args.pairs):
            order = list(commands) if pair % 2 == 0 else list(reversed(commands))
            for name in order:
                runs[name].append(timed(commands[name], checkouts[name], scratch / "cache"))
    rows = []
    for name, results in runs.items():
        walls = [result["wall"] for result in results]
        rows.append([name, f"{median(walls):.1f}", f"{min(walls):.1f}-{max(walls):.1f}",
                     f"{median([result['start_up'] for result in results]):.1f}",
                     f"{median([result['accuracy'] for result in results]):.4f}"])
    ratio = median([f["wall"] / p["wall"] for f, p in zip(runs["fit"], runs["timm peer"])])
    start_gap = median([f["start_up"] - p["start_up"] for f, p in zip(runs["fit"], runs["timm peer"])])
    counts = " + ".join(f"{sum(1 for _ in (folder / part).rglob('*.png')):,}" for part in ("train", "val"))
    report(f"fit against timm's library, {EPOCHS} epochs of ResNet-18 at {IMAGE_SIZE} px on {counts} "
           f"digits, {args.workers} loader worker(s), {args.pairs} alternating pairs (code: {args.code.name})",
           table(["run", "wall s (median)", "range", "start-up s", "val accuracy"], rows)
           + f"\n\nfit / peer wall time: {ratio:.2f} (median of the pairs' ratios); start-up fit - peer: "
             f"{start_gap:+.1f} s. The first fit, which examines the folder (cached after): {first['wall']:.1f} s.")


if __name__ == "__main__":
    main()
