"""Images that are not square, read with each ``data.resize`` mode (``crop``, ``squish``, ``pad``) at a square input.

- Strips of three of scikit-learn's digits side by side (24 x 8 px, 3:1) and stacked (8 x 24, 1:3), two or three
  digits each, labelled with the set of digits (:func:`~lightning_resnet.data.digit_sets.write_digit_sets`,
  ``layout`` ``wide`` and ``tall``): 1,200 images split 80/20 for ``fit`` and 300 of another seed as the test part;
  ``configs/multilabel_demo.yaml`` at 24 px on a quarter-width ResNet-18 (channels 16-128), 10 epochs. Test mAP and
  exact-set accuracy of the best checkpoint (``fit``'s test after fit).
- Frames of 64 x 36 px (16:9), noise with one shape (disc, square, triangle, cross) of 8-14 px anywhere in them, the
  class: 800 for ``fit`` and 200 of another seed as the test part; ``configs/demo.yaml`` at 32 px on the same
  network, 10 epochs, the flip on. Test accuracy of the best checkpoint.

Each set and seed runs the three modes one after another in this process. ``--picture`` writes the picture of
docs/your-data.md (one strip and one frame as each mode shows them) and stops.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.common import ROOT, report, table

MODES = ("crop", "squish", "pad")
NARROW = ["--model.backbone_options", json.dumps({"stem": "cifar", "channels": [16, 32, 64, 128]})]
SHAPES = ("disc", "square", "triangle", "cross")
FRAME = (64, 36)  # width, height


def strips(work: Path, layout: str, seed: int) -> Path:
    """1,200 strips to fit on and 300 of another seed to test on, in one labels file with a ``split`` column."""
    from lightning_resnet.data.digit_sets import LABELS_CSV, write_digit_sets

    write_digit_sets(work / "fit", count=1200, seed=seed, layout=layout)
    write_digit_sets(work / "test", count=300, seed=1000 + seed, layout=layout)
    rng = np.random.default_rng(seed)
    rows = []
    for part in ("fit", "test"):
        with open(work / part / LABELS_CSV, newline="") as handle:
            for row in csv.DictReader(handle):
                split = "test" if part == "test" else "val" if rng.random() < 0.2 else "train"
                rows.append((f"{part}/{row['path']}", row["labels"], split))
    return write_labels(work / "labels.csv", rows)


def write_labels(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "labels", "split"))
        writer.writerows(rows)
    return path


def frame(shape: str, rng: np.random.Generator) -> Image.Image:
    """A 16:9 frame of noise with ``shape`` in a random colour, size and place (its edges included)."""
    width, height = FRAME
    pixels = rng.normal(rng.uniform(60, 140), 20, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    side = int(rng.integers(8, 15))
    left, top = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
    colour = tuple(int(value) for value in rng.integers(150, 256, size=3))
    box = (left, top, left + side - 1, top + side - 1)
    if shape == "disc":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(left, top + side - 1), (left + side - 1, top + side - 1), (left + side // 2, top)], fill=colour)
    else:
        third = max(2, side // 3)
        draw.rectangle((left + third, top, left + 2 * third, top + side - 1), fill=colour)
        draw.rectangle((left, top + third, left + side - 1, top + 2 * third), fill=colour)
    return image


def frames(work: Path, seed: int) -> Path:
    """200 frames of each shape to fit on and 50 of each of another seed to test on, listed in one labels file."""
    rows = []
    for part, per_class, part_seed in (("fit", 200, seed), ("test", 50, 1000 + seed)):
        rng = np.random.default_rng(part_seed)
        (work / part).mkdir(parents=True, exist_ok=True)
        for index in range(per_class * len(SHAPES)):
            shape = SHAPES[index % len(SHAPES)]
            name = f"{part}/{index:04d}.png"
            frame(shape, rng).save(work / name)
            split = "test" if part == "test" else "val" if rng.random() < 0.2 else "train"
            rows.append((name, shape, split))
    return write_labels(work / "labels.csv", rows)


def picture(target: Path) -> None:
    """One wide strip and one frame, as the file and as each mode gives them to the model (the picture of
    docs/your-data.md)."""
    import torch
    from matplotlib.figure import Figure

    from lightning_resnet.data import EvaluationView, Geometry
    from lightning_resnet.data.digit_sets import write_digit_sets

    with tempfile.TemporaryDirectory() as folder:
        write_digit_sets(Path(folder) / "strip", count=1, seed=3, layout="wide")
        examples = [(Path(folder) / "strip/images/00000.png", 24, 1),
                    (Path(folder) / "frame.png", 32, 3)]
        frame("disc", np.random.default_rng(7)).save(examples[1][0])
        figure = Figure(figsize=(10, 4.4))
        axes = figure.subplots(2, 4)
        for row, (path, side, channels) in zip(axes, examples):
            original = np.asarray(Image.open(path).convert("RGB"))
            row[0].imshow(original, cmap="gray", interpolation="nearest")
            row[0].set_title(f"the file, {original.shape[1]} x {original.shape[0]}", fontsize=9)
            for axis, mode in zip(row[1:], MODES):
                view = EvaluationView(Geometry(side, side, mode, crop_fraction=1.0), channels)(path)
                shown = view.expand(3, -1, -1) if channels == 1 else view
                axis.imshow(torch.as_tensor(shown).permute(1, 2, 0).numpy(), interpolation="nearest")
                axis.set_title(f"--data.resize {mode}", fontsize=9)
            for axis in row:
                axis.set_xticks([])
                axis.set_yticks([])
        figure.tight_layout()
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target, dpi=100)
    print(f"wrote {target}")


def fit(labels: Path, config: str, size: int, mode: str, seed: int, epochs: int, *extra: str) -> dict[str, float]:
    """The test metrics of the best checkpoint of one ``fit``."""
    from lightning_resnet.cli import main as cli

    run = cli(["fit", "--config", str(ROOT / "configs" / config), "--data.labels", str(labels), "--data.data_dir",
               str(labels.parent), "--data.image_size", str(size), "--data.resize", mode, *NARROW,
               "--seed_everything", str(seed), "--trainer.max_epochs", str(epochs),
               "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", f"{mode}_{seed}", *extra])
    return {name: float(value) for name, value in run.trainer.callback_metrics.items() if name.startswith("test/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--sets", nargs="+", default=["wide", "tall", "frames"], help="of wide, tall, frames")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--picture", type=Path, help="write the docs' picture of the three modes here, and stop")
    options = parser.parse_args()
    if options.picture is not None:
        picture(options.picture)
        return
    sets = {
        "strips 3:1 (wide)": (lambda work, seed: strips(work, "wide", seed), "multilabel_demo.yaml", 24, [],
                              ("test/mAP", "test/exact_match")),
        "strips 1:3 (tall)": (lambda work, seed: strips(work, "tall", seed), "multilabel_demo.yaml", 24, [],
                              ("test/mAP", "test/exact_match")),
        "frames 16:9, one shape": (frames, "demo.yaml", 32, ["--data.hflip", "0.5", "--data.normalize", "auto"],
                                   ("test/acc",)),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, (make, config, size, extra, metrics) in sets.items():
            if not any(chosen in name for chosen in options.sets):
                continue
            results: dict[tuple[str, str], list[float]] = {}
            for seed in range(options.seeds):
                work = Path(folder) / name.split()[0] / f"{name.split()[1]}_{seed}"
                labels = make(work, seed)
                os.chdir(work)
                for mode in options.modes:
                    measured = fit(labels, config, size, mode, seed, options.epochs, *extra)
                    for metric in metrics:
                        results.setdefault((mode, metric), []).append(measured[metric])
                    print(name, seed, mode, {metric: measured[metric] for metric in metrics}, flush=True)
                os.chdir(ROOT)
            for (mode, metric), values in results.items():
                rows.append([name, f"`{mode}`", metric, " / ".join(f"{value:.4f}" for value in values),
                             f"{statistics.mean(values):.4f}"])
    report(f"Non-square images and data.resize: {options.seeds} seed(s), {options.epochs} epochs, a quarter-width "
           "ResNet-18, a square input", table(["images", "resize", "test metric", "per seed", "mean"], rows))


if __name__ == "__main__":
    main()
