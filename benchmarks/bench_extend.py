"""Adding classes to a trained model (``fit --model.extend``): what the old classes keep, and at what cost.

A model is trained on classes 0-4 of the digits or of Fashion-MNIST; classes 5-9 are then added, each row a way of
doing it, and every model is tested on held-out images of all ten classes (accuracy on the old five, the new five
and all). Rows: training on the new classes alone from the old model (the old model's start without its teaching:
``--model.distillation.weight 0``, the forgetting), ``--model.extend`` (the old model teaches the old classes), the
same with ``--data.rehearsal`` at two sizes (``random``, with ``--model.class_weights balanced``: the few rehearsed
images weigh as much as the new classes' many) and at the larger one ``closest_to_mean``, and retraining
on every class from scratch (the upper bound); with each row's seconds (the old model's not counted).

    PYTHONPATH=. python benchmarks/bench_extend.py --data digits --seeds 3
    XDG_CACHE_HOME=... PYTHONPATH=. python benchmarks/bench_extend.py --data fashion_mnist --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, report, table

CLASSES = {"digits": [str(index) for index in range(10)],
           "fashion_mnist": ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                             "Ankle boot"]}
"""Each data set's classes in the order of its labels: 0-4 are the old ones, 5-9 the new ones."""
OLD: list[str] = []
NEW: list[str] = []
SIZES = {"digits": (None, 0.3), "fashion_mnist": (300, 200)}
"""Training images per class (None: what the test part leaves) and test images per class (a share of a folder)."""
FINE_TUNING = ["--model.optimizer.init_args.lr", "0.0005", "--model.warmup_epochs", "0"]
"""The rows that start from the old model train at a quarter of the recipe's rate, without its warm-up: at the
recipe's (0.002, warmed up over the first epoch) the second epoch undid the old classes (validation accuracy of all ten
0.62 after one epoch, 0.43 after two, with 10 images rehearsed per old class and balanced class weights)."""
ROWS = ["new classes alone (forgetting)", "extend", "extend, rehearsal {small}", "extend, rehearsal {large}",
        "extend, rehearsal {large} closest_to_mean", "retrain on everything"]


def folders(images: Path, work: Path, seed: int, train_per_class: int | None, test_share: float | int) -> Path:
    """old/ (classes 0-4), new/ (5-9), all/ and test/ under ``work``, as links to ``images``' files."""
    rng = random.Random(seed)
    root = work / f"seed_{seed}"
    pre_split = (images / "train").is_dir()
    for name in OLD + NEW:
        files = sorted((images / "train" / name if pre_split else images / name).iterdir())
        rng.shuffle(files)
        if pre_split:
            tests = sorted((images / "test" / name).iterdir())
            rng.shuffle(tests)
            tests, trains = tests[:test_share], files[:train_per_class]
        else:
            cut = round(test_share * len(files))
            tests, trains = files[:cut], files[cut:]
        for part, chosen in (("old" if name in OLD else "new", trains), ("all", trains), ("test", tests)):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for file in chosen:
                os.symlink(file, root / part / name / file.name)
    return root


def accuracies(checkpoint: Path, test: Path) -> dict[str, float]:
    """Test accuracy on the old classes, the new ones and all."""
    from lightning_resnet.bundle import read_bundle
    from lightning_resnet.runtimes import TorchPredictor, predict_images

    bundle = read_bundle(checkpoint)
    paths = sorted(str(path) for path in test.rglob("*") if path.is_file())
    seen = predict_images(TorchPredictor(bundle), paths, 256)
    said = {key: bundle.classes[index] for key, index in zip(seen.keys, seen.probabilities.argmax(dim=1).tolist())}
    right = {path: said[path] == Path(path).parent.name for path in paths}
    share = lambda names: statistics.mean(ok for path, ok in right.items() if Path(path).parent.name in names)  # noqa: E731
    return {"old": share(OLD), "new": share(NEW), "all": share(OLD + NEW)}


def fit(config: list[str], data: Path, name: str, epochs: int, seed: int, *extra: str) -> tuple[Path, float]:
    """The best checkpoint of one fit and its seconds."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    start = time.perf_counter()
    run = cli(["fit", *config, "--data.data_dir", str(data), "--trainer.max_epochs", str(epochs),
               "--seed_everything", str(seed), "--data.seed", str(seed), "--trainer.enable_progress_bar", "false",
               "--test_after_fit", "false", "--trainer.logger.init_args.name", name, *extra])
    return best_checkpoint(run.trainer).path, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=list(SIZES), default="digits")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6, help="of the old model and of retraining on everything")
    parser.add_argument("--extend_epochs", type=int, default=3, help="of every row that starts from the old model")
    parser.add_argument("--rehearsal", type=int, nargs=2, default=[10, 50], help="the two rehearsal sizes")
    parser.add_argument("--results", type=Path, default=None, help="a JSON file the rows are written to")
    parser.add_argument("--table_only", action="store_true", help="print the table of --results, measuring nothing")
    options = parser.parse_args()
    options.results = options.results and options.results.resolve()
    from lightning_resnet.data import DIGITS_DIR, named_data_set, write_digits

    if options.data == "digits":
        if not DIGITS_DIR.is_dir():
            write_digits(DIGITS_DIR)
        images = DIGITS_DIR.resolve()
        config = ["--config", str(ROOT / "configs/demo.yaml")]
    else:
        images = named_data_set("fashion_mnist").written()
        config = ["--config", str(ROOT / "configs/demo.yaml"), "--data.image_size", "28", "--data.hflip", "0.5"]
    OLD[:], NEW[:] = CLASSES[options.data][:5], CLASSES[options.data][5:]
    small, large = options.rehearsal
    rows = [row.format(small=small, large=large) for row in ROWS]
    measured: dict[str, dict[str, list[float]]] = {row: {} for row in rows}
    if options.table_only:
        measured = json.loads(options.results.read_text())
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        for seed in range(0 if options.table_only else options.seeds):
            root = folders(images, Path(work), seed, *SIZES[options.data])
            old, old_seconds = fit(config, root / "old", "old", options.epochs, seed)
            print(f"seed {seed}: the old model (classes 0-4) {accuracies(old, root / 'test')} in {old_seconds:.0f} s",
                  flush=True)
            extend = ["--model.extend", str(old), *FINE_TUNING]
            rehearse = ["--model.class_weights", "balanced", "--data.rehearsal"]
            ways = {
                rows[0]: (root / "new", options.extend_epochs,
                          [*extend, "--model.distillation", json.dumps({"teacher": str(old), "weight": 0.0})]),
                rows[1]: (root / "new", options.extend_epochs, extend),
                rows[2]: (root / "new", options.extend_epochs, [*extend, *rehearse, str(small)]),
                rows[3]: (root / "new", options.extend_epochs, [*extend, *rehearse, str(large)]),
                rows[4]: (root / "new", options.extend_epochs, [*extend, *rehearse, str(large),
                                                                "--data.rehearsal_choice", "closest_to_mean"]),
                rows[5]: (root / "all", options.epochs, []),
            }
            for row, (data, epochs, extra) in ways.items():
                best, seconds = fit(config, data, f"row{rows.index(row)}", epochs, seed, *extra)
                scores = accuracies(best, root / "test")
                print(f"seed {seed}: {row}: {scores} in {seconds:.0f} s", flush=True)
                for key, value in {**scores, "seconds": seconds}.items():
                    measured[row].setdefault(key, []).append(value)
            if options.results:
                options.results.write_text(json.dumps(measured, indent=1))
        os.chdir(ROOT)  # out of the folder about to be removed

    def shown(values: list[float], percent: bool = True) -> str:
        each = " / ".join(f"{100 * value:.1f}" if percent else f"{value:.0f}" for value in values)
        mean = statistics.mean(values)
        return f"{each} ({100 * mean:.1f})" if percent else f"{statistics.median(values):.0f}"

    body = table(["row", "old classes % (seeds; mean)", "new classes %", "all %", "seconds (median)"],
                 [[row, shown(m["old"]), shown(m["new"]), shown(m["all"]), shown(m["seconds"], percent=False)]
                  for row, m in measured.items()])
    report(f"Adding classes 5-9 to a model of classes 0-4, {options.data}, {options.seeds} seeds "
           f"({options.epochs} epochs from scratch, {options.extend_epochs} from the old model)", body)


if __name__ == "__main__":
    main()
