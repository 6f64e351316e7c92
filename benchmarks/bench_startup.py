"""Start-up on a folder of 50,000 small files: listing, the file check, hashing, duplicate search and split.

Each measurement is a fresh process that builds ``ImageFolderDataModule(data_dir=...)`` and times
its ``setup("fit")`` (the imports are not counted), with ``$XDG_CACHE_HOME`` in a temporary
folder: ``cold`` starts from an empty cache, ``warm`` is the next start-up with the cache the
cold one left (what a second run, or every DDP process after the one that ran ``prepare_data``,
does). ``--code`` points at another checkout, to time the code before a change the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, report, table

MEASURE = """
import json, sys, time, inspect
from lightning_resnet.data import ImageFolderDataModule
options = json.loads(sys.argv[2])
accepted = inspect.signature(ImageFolderDataModule).parameters
data = ImageFolderDataModule(data_dir=sys.argv[1], **{k: v for k, v in options.items() if k in accepted})
start = time.perf_counter()
data.setup("fit")
print(json.dumps({"seconds": time.perf_counter() - start, "train": len(data.train_set), "val": len(data.val_set)}))
"""


def make_small_files(root: Path, classes: int, per_class: int) -> Path:
    """Distinct small images (32 to 64 px, JPEG and PNG): random 6x6 colours blown up, with grain; made once."""
    if root.is_dir() and sum(1 for _ in root.rglob("*.*")) == classes * per_class:
        return root
    rng = np.random.default_rng(0)
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for item in range(per_class):
            side = int(rng.integers(32, 65))
            coarse = Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize((side, side),
                                                                                            Image.BICUBIC)
            pixels = np.asarray(coarse, np.int16) + rng.integers(-8, 9, (side, side, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            image.save(folder / f"{item:05d}.{'png' if item % 4 == 0 else 'jpg'}", quality=85)
    return root


def start_up(code: Path, data_dir: Path, cache: Path, **options) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "XDG_CACHE_HOME": str(cache)}
    # run in the checkout: ``python -c`` puts the working folder before PYTHONPATH
    finished = subprocess.run([sys.executable, "-c", MEASURE, str(data_dir.resolve()), json.dumps(options)], env=env,
                              cwd=code, capture_output=True, text=True, check=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose data module is timed")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "bench_startup")
    args = parser.parse_args()
    data_dir = make_small_files(args.data, classes=10, per_class=args.files // 10)

    rows = []
    for label, options in (("check and hashes (default)", {}), ("check only (group_duplicates false)",
                                                                  {"group_duplicates": False})):
        with tempfile.TemporaryDirectory() as cache:
            cold = start_up(args.code, data_dir, Path(cache), **options)
            warm = start_up(args.code, data_dir, Path(cache), **options)
        per_thousand = cold["seconds"] / (args.files / 1000)
        rows.append([label, f"{cold['seconds']:.1f}", f"{warm['seconds']:.2f}", f"{per_thousand:.2f}",
                     f"{cold['train']:,} / {cold['val']:,}"])
    report(f"Start-up: setup('fit') on {args.files:,} small files, seconds (code: {args.code.name})",
           table(["options", "cold cache", "warm cache", "cold s per 1,000 files", "train / val"], rows))


if __name__ == "__main__":
    main()
