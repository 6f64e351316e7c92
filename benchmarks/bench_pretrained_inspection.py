"""Does ``inspect --predictions`` find copies and strangers from pretrained features that it misses from a model
trained from scratch? (docs/data-quality.md, "Limits, measured"; issue "Few labels".)

A labelled folder of the generated photo-like set (``benchmarks/photo_like.py``: six shapes in random colours over
clutter) gets three planted images: a re-coloured copy of one image (its channels swapped, RGB to BRG), a copy of
another cropped by 4 px a side of 64 (and scaled back), and a stranger of a class the folder does not have (a
digit of scikit-learn's, gray, filed among the discs). Then, for each start, ``cross_validate`` (3 folds of the
demo recipe at 24 px) and ``inspect --predictions`` over its out-of-fold features:

- from scratch;
- from ``pretrain`` SimCLR weights (``configs/pretrain_demo.yaml`` at 24 px with the views of :data:`VIEWS`) made on
  a separate unlabelled pool of the same kind of images, fine-tuned with the backbone frozen for 5 epochs, then at
  0.1x the rate.

Reported per start: each copy's cosine distance to its original as a multiple of the fold's median
nearest-neighbour distance (the rule joins pairs under 0.13 in most folds; the range over the folds), whether
``duplicates.csv`` lists the pair, the stranger's rank among the folder's images by outlier score (1 = most
distant) and whether ``outliers.csv`` lists it, and the folds' accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, report, table
from benchmarks.photo_like import make_photo_like

CROP = 4
FOLDS = 3
RECIPE = ["--config", str(ROOT / "configs/demo.yaml"), "--data.image_size", "24", "--data.normalize", "imagenet",
          "--trainer.enable_progress_bar", "false", "--data.num_folds", str(FOLDS)]
VIEWS = {"min_scale": 0.3, "gaussian_blur": 0.0}
"""SimCLR's views for small photos: crops of at least 30 %, no blur (at 24 px it wipes the shape), colour and flips as
lightly has them (neither says anything about a shape)."""
FINE_TUNE = ["--model.freeze_backbone", "true", "--model.unfreeze_at_epoch", "5", "--model.backbone_lr_factor", "0.1"]


def plant(folder: Path) -> dict[str, tuple[Path, Path | None]]:
    """The three planted images: name -> (the planted file, the original it copies or None)."""
    from lightning_resnet.data import DIGITS_DIR, write_digits

    recoloured_from, cropped_from = folder / "star/0003.jpg", folder / "triangle/0005.jpg"
    recoloured = folder / "star/recoloured_copy.png"
    Image.merge("RGB", Image.open(recoloured_from).convert("RGB").split()[::-1]).save(recoloured)
    original = Image.open(cropped_from).convert("RGB")
    cropped = folder / "triangle/cropped_copy.png"
    original.crop((CROP, CROP, original.width - CROP, original.height - CROP)).resize(original.size).save(cropped)
    if not Path(DIGITS_DIR).is_dir():
        write_digits(Path(DIGITS_DIR))
    digit = sorted((Path(DIGITS_DIR) / "3").iterdir())[0]
    stranger = folder / "disc/stranger_digit.png"
    Image.open(digit).convert("RGB").resize((64, 64), Image.NEAREST).save(stranger)
    return {"re-coloured copy": (recoloured, recoloured_from), "cropped copy": (cropped, cropped_from),
            "stranger": (stranger, None)}


def distance_ratios(oof, first: int, second: int) -> list[float]:
    """Per fold: the pair's cosine distance over the median nearest-neighbour distance of the folder."""
    from sklearn.neighbors import NearestNeighbors

    ratios = []
    for fold in range(oof.num_folds):
        features = np.asarray(oof.fold_embeddings(fold))
        nearest, _ = NearestNeighbors(n_neighbors=2, metric="cosine").fit(features).kneighbors(features)
        unit = features / np.linalg.norm(features, axis=1, keepdims=True)
        ratios.append(float(1 - unit[first] @ unit[second]) / float(np.median(nearest[:, 1])))
    return ratios


def measure(name: str, folder: Path, planted: dict[str, tuple[Path, Path | None]], extra: list[str]) -> list[str]:
    """cross_validate and inspect --predictions from one start; the table's cells."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.reports.data_issues import outlier_scores
    from lightning_resnet.reports.out_of_fold import read_out_of_fold

    start = time.perf_counter()
    cli(["cross_validate", *RECIPE, "--data.data_dir", str(folder), "--trainer.logger.init_args.name", name, *extra])
    group = Path("logs") / name / "crossval_0"
    seconds = time.perf_counter() - start
    with open(group / "cross_validation.csv", newline="") as handle:
        accuracy = next(row for row in csv.DictReader(handle) if row["fold"] == "mean")["val/acc"]
    cli(["inspect", "--config", str(ROOT / "configs/demo.yaml"), "--data.data_dir", str(folder),
         "--data.image_size", "24", "--predictions", str(group), "--trainer.logger.init_args.name", name])
    written = sorted((Path("logs") / name).glob("version_*"))[-1]
    with open(written / "duplicates.csv", newline="") as handle:
        grouped = [row for row in csv.DictReader(handle) if row["kind"] == "features"]
    with open(written / "outliers.csv", newline="") as handle:
        listed = {Path(row["path"]).resolve() for row in csv.DictReader(handle)}
    oof = read_out_of_fold(group)
    row_of = {Path(path).resolve(): row for row, path in enumerate(oof.paths)}
    cells = [name, f"{float(accuracy):.3f}"]
    for image, original in planted.values():
        if original is not None:
            ratios = distance_ratios(oof, row_of[image.resolve()], row_of[original.resolve()])
            together = {row["group"] for row in grouped if Path(row["path"]).resolve() == image.resolve()} & {
                row["group"] for row in grouped if Path(row["path"]).resolve() == original.resolve()}
            cells.append(f"{min(ratios):.2f}-{max(ratios):.2f}, {'found' if together else 'not found'}")
        else:
            farthest_first = [Path(oof.paths[row]).resolve()
                              for row, _, _ in sorted(outlier_scores(oof), key=lambda scored: scored[1])]
            rank = 1 + farthest_first.index(image.resolve())
            shown = "listed" if image.resolve() in listed else "not listed"
            cells.append(f"rank {rank} of {len(farthest_first)}, {shown}")
    cells.append(f"{seconds:.0f}")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per_class", type=int, default=40, help="labelled images of each of the six classes")
    parser.add_argument("--pool_per_class", type=int, default=150, help="unlabelled images of each class")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each fold")
    parser.add_argument("--pretrain_epochs", type=int, default=20)
    options = parser.parse_args()
    from lightning_resnet.cli import main as cli

    epochs = ["--trainer.max_epochs", str(options.epochs)]
    os.environ["PYTHONPATH"] = str(ROOT)  # each fold is a process of its own, started in the work folder
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        folder = make_photo_like(Path(work) / "labelled", options.per_class, seed=0)
        planted = plant(folder)
        pool = make_photo_like(Path(work) / "unlabelled", options.pool_per_class, seed=1)
        start = time.perf_counter()
        run = cli(["pretrain", "--config", str(ROOT / "configs/pretrain_demo.yaml"), "--data.data_dir", str(pool),
                   "--data.knn_dir", str(folder), "--data.image_size", "24", "--data.view_options", json.dumps(VIEWS),
                   "--trainer.max_epochs", str(options.pretrain_epochs), "--trainer.enable_progress_bar", "false",
                   "--trainer.logger.init_args.name", "pretrain"])
        pretrained = Path(run.trainer.logger.log_dir) / "backbone.safetensors"
        knn = float(run.trainer.callback_metrics["val/knn_acc"])
        pretrain_seconds = time.perf_counter() - start
        rows = [measure("scratch", folder, planted, epochs),
                measure("pretrained", folder, planted, [*epochs, "--model.pretrained", str(pretrained), *FINE_TUNE])]
        os.chdir(ROOT)
    report(f"Copies and strangers from out-of-fold features: {6 * options.per_class + 3} photo-like images at 24 px, "
           f"{FOLDS} folds of {options.epochs} epochs; pretrain SimCLR {options.pretrain_epochs} epochs on "
           f"{6 * options.pool_per_class} unlabelled ones ({pretrain_seconds:.0f} s, k-NN accuracy {knn:.3f})",
           table(["start", "mean val/acc", "re-coloured copy: distance / median NN (folds), duplicates.csv",
                  "cropped copy: same", "stranger: outlier rank, outliers.csv", "cross_validate s"], rows))


if __name__ == "__main__":
    main()
