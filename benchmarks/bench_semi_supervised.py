"""Few labels, many images: semi-supervised ``fit`` against every other way this project learns from unlabelled images.

Each seed takes ``--per_class`` labelled training images of each class and 5 more for validation from Fashion-MNIST's
training part (``--data fashion_mnist``, read from Debian's ``dataset-fashion-mnist``), the rest of that part as the
unlabelled pool (flat, names unused) and its 10,000 test images as the test; or, with ``--data digits``, 10 % of the
demo digits labelled (and 5 a class to validate), 60 % as the pool, 30 % as the test. Every row runs
``configs/semi_supervised_photos.yaml`` (or ``_digits.yaml``) for the same ``--steps`` optimizer steps and reports
the test accuracy of its final weights:

- supervised only (``pad_crop`` and the flip: FixMatch's weak augmentation);
- supervised with the strong augmentation (RandAugment, then Random Erasing of every image: the strong views' kind);
- one noised pseudo-label round (``pseudo_label`` with the supervised model, then ``fit --data.extra_labels`` with
  its ``NOISED_STUDENT``);
- each ``pretrain`` method (``--steps`` of its own on the first seed's pool, once per data set and step count, kept
  in ``--pretrained_cache`` for the next run: the 10- and 40-label runs share it; k-NN score on the labelled
  images), then fine-tuning (the backbone frozen for the first fifth of the steps, then at 0.1x the rate);
- FixMatch; FreeMatch; the best pretraining (by its fine-tuned accuracy on the first seed) followed by FreeMatch.

Seconds per row: the wall time of its fit (and its pretraining or pseudo-labelling), on this machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import ROOT, report, table

RECIPES = {"fashion_mnist": ROOT / "configs/semi_supervised_photos.yaml",
           "digits": ROOT / "configs/semi_supervised_digits.yaml"}
PRETRAIN_CONFIGS = {"simclr": "configs/pretrain_demo.yaml", "byol": "configs/pretrain_demo_byol.yaml",
                    "dino": "configs/pretrain_demo_dino.yaml"}
ROWS = ["supervised", "strong", "pseudo", "pretrain", "fixmatch", "freematch", "pretrain_freematch"]
VAL_PER_CLASS = 5
DATA = ["fashion_mnist"]
"""The data set of this run, whose recipe every fit reads."""


def split(images: Path, work: Path, per_class: int | None, seed: int) -> Path:
    """labelled/train (``per_class``, or 10 % with None), labelled/val (5 a class), labelled/test and pool/ as
    links to ``images``' files (``train/`` and ``test/`` of a named set, or class folders split 60/30 here)."""
    rng = random.Random(seed)
    root = work / f"seed_{seed}"
    pre_split = (images / "train").is_dir()
    for folder in sorted(path for path in (images / "train" if pre_split else images).iterdir() if path.is_dir()):
        files = sorted(folder.iterdir())
        rng.shuffle(files)
        labelled = per_class if per_class is not None else round(0.1 * len(files))
        parts = {"train": files[:labelled], "val": files[labelled : labelled + VAL_PER_CLASS]}
        pool_end = len(files) if pre_split else labelled + VAL_PER_CLASS + round(0.6 * len(files))
        parts["pool"] = files[labelled + VAL_PER_CLASS : pool_end]
        parts["test"] = sorted((images / "test" / folder.name).iterdir()) if pre_split else files[pool_end:]
        for part, chosen in parts.items():
            target = root / "pool" if part == "pool" else root / "labelled" / part / folder.name
            target.mkdir(parents=True, exist_ok=True)
            for file in chosen:
                os.symlink(file, target / (f"{folder.name}_{file.name}" if part == "pool" else file.name))
    return root


def steps_options(steps: int) -> list[str]:
    """``steps`` optimizer steps, validated (and checkpointed) every tenth of them, whatever an epoch's length: a
    few steps of the labelled images, hundreds of a pseudo-labelled pool."""
    return ["--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1",
            "--trainer.check_val_every_n_epoch", "null", "--trainer.val_check_interval", str(max(1, steps // 10)),
            "--trainer.enable_progress_bar", "false", "--test_after_fit", "false"]


def fit_and_test(root: Path, name: str, budget: list[str], *extra: str) -> tuple[float, float, Path]:
    """Test accuracy of one fit's final weights, its seconds and its best checkpoint."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    start = time.perf_counter()
    run = cli(["fit", "--config", str(RECIPES[DATA[0]]), "--data.data_dir", str(root / "labelled"), *budget,
               "--trainer.logger.init_args.name", name, *extra])
    took = time.perf_counter() - start
    last = Path(run.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    tested = cli(["test", "--data.data_dir", str(root / "labelled"), "--ckpt_path", str(last),
                  "--trainer.enable_progress_bar", "false"])
    return float(tested.trainer.callback_metrics["test/acc"]), took, best_checkpoint(run.trainer).path


def pretrain(method: str, pool: Path, knn: Path, steps: int, flip: float, cache: Path) -> tuple[Path, float, float]:
    """The backbone weights of ``steps`` of ``method`` on ``pool``, its k-NN accuracy and seconds: from ``cache``
    when a run of the same data set and steps made them (no labels read, the test part never seen)."""
    import shutil

    from lightning_resnet.cli import main as cli

    kept = cache / f"{DATA[0]}_{method}_{steps}"
    if (kept / "run.json").is_file():
        made = json.loads((kept / "run.json").read_text())
        return kept / "backbone.safetensors", made["knn"], made["seconds"]
    start = time.perf_counter()
    run = cli(["pretrain", "--config", str(ROOT / PRETRAIN_CONFIGS[method]), "--data.data_dir", str(pool),
               "--data.knn_dir", str(knn), "--model.backbone", "resnet20",
               "--data.image_size", "16" if flip == 0 else "28",
               "--data.normalize", "imagenet", "--data.view_options.hf_prob", str(flip), "--trainer.max_steps",
               str(steps), "--trainer.max_epochs", "-1", "--trainer.check_val_every_n_epoch", "null",
               "--trainer.val_check_interval", str(steps),
               "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", f"pretrain_{method}"])
    took = time.perf_counter() - start
    knn_acc = float(run.trainer.callback_metrics.get("val/knn_acc") or 0.0)
    kept.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(run.trainer.logger.log_dir) / "backbone.safetensors", kept / "backbone.safetensors")
    (kept / "run.json").write_text(json.dumps({"knn": knn_acc, "seconds": took, "pool": str(pool)}))
    return kept / "backbone.safetensors", knn_acc, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", choices=["fashion_mnist", "digits"], default="fashion_mnist")
    parser.add_argument("--per_class", type=int, default=10, help="labelled images per class (fashion_mnist)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps of every row (and of pretraining)")
    parser.add_argument("--ratio", type=int, default=3, help="data.unlabelled_ratio of the semi-supervised rows")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=ROWS)
    parser.add_argument("--methods", nargs="*", choices=list(PRETRAIN_CONFIGS), default=["simclr", "byol", "dino"])
    parser.add_argument("--pretrained_cache", type=Path, default=ROOT / "logs/bench_semi_supervised_pretrained",
                        help="where pretrained backbones are kept for the next run of the same data set and steps")
    parser.add_argument("--results", type=Path, default=None,
                        help="a JSON file that keeps each row's result per seed (with the commit it was measured at): "
                             "a run with the same options and file measures only what it lacks (default: none kept, "
                             "everything measured)")
    options = parser.parse_args()
    options.results = options.results and options.results.resolve()  # the runs happen in a temporary folder
    DATA[0] = options.data
    from lightning_resnet.cli.pseudo_label import NOISED_STUDENT
    from lightning_resnet.data import DIGITS_DIR, named_data_set, write_digits

    if options.data == "digits":
        if not DIGITS_DIR.is_dir():
            write_digits(DIGITS_DIR)
        images, per_class, flip = DIGITS_DIR.resolve(), None, ["--data.hflip", "0.0"]  # the recipe's already
    else:
        images, per_class, flip = named_data_set("fashion_mnist").written(), options.per_class, []
    results: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    kept = json.loads(options.results.read_text()) if options.results and options.results.is_file() else {}
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    described = (f"{options.per_class} labels per class" if options.data == "fashion_mnist"
                 else "10 % of the digits labelled")

    def record(row: str, seed: int, measure: Callable[[], tuple[float, float]]) -> None:
        """The row's test accuracy and seconds on ``seed``: measured, or kept from a run of the same options."""
        key = f"{options.data}, {described}, {options.steps} steps, ratio {options.ratio}, seed {seed}: {row}"
        if key not in kept:
            accuracy, took = measure()
            kept[key] = {"accuracy": accuracy, "seconds": took, "commit": commit}
            if options.results:
                options.results.parent.mkdir(parents=True, exist_ok=True)
                options.results.write_text(json.dumps(kept, indent=1))
        accuracy, took = kept[key]["accuracy"], kept[key]["seconds"]
        results.setdefault(row, []).append(accuracy)
        seconds.setdefault(row, []).append(took)
        print(f"{row}: test accuracy {accuracy:.4f} in {took:.0f} s", flush=True)

    semi = ["--data.unlabelled_dir", "POOL", "--data.unlabelled_ratio", str(options.ratio)]
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        weights: dict[str, tuple[Path, float]] = {}

        def one_seed(seed: int) -> None:
            root = split(images, Path(work), per_class, seed)
            labelled = sum(1 for _ in (root / "labelled" / "train").rglob("*.png"))
            epochs = options.steps / math.ceil(labelled / 32)  # the recipe's batches of 32
            budget = [*steps_options(options.steps), *flip]
            unlabelled = [value.replace("POOL", str(root / "pool")) for value in semi]
            seeded = ["--seed_everything", str(seed), "--model.semi_supervised", "null"]  # the rows without a pool
            supervised: list[Path] = []

            def supervised_only() -> tuple[float, float]:
                accuracy, took, model = fit_and_test(root, "supervised", budget, *seeded)
                supervised.append(model)
                return accuracy, took

            def pseudo_label_round() -> tuple[float, float]:
                from lightning_resnet.cli import main as cli

                if not supervised:  # its row was kept from an earlier run: the same seeded fit again
                    supervised_only()
                start = time.perf_counter()
                output = cli(["pseudo_label", "--ckpt_path", str(supervised[0]), "--data.predict_dir",
                              str(root / "pool"), "--output", str(root / "pseudo_labels.csv")])
                labelling = time.perf_counter() - start
                accuracy, took, _ = fit_and_test(root, "pseudo", budget, *seeded, "--data.extra_labels", str(output),
                                                 *NOISED_STUDENT)
                return accuracy, took + labelling

            def fitted(name: str, *extra: str, pretrained: str | None = None) -> Callable[[], tuple[float, float]]:
                """A fit of ``extra`` options; its seconds with its pretraining's."""

                def measure() -> tuple[float, float]:
                    accuracy, took, _ = fit_and_test(root, name, budget, *seeded, *extra)
                    return accuracy, took + (weights[pretrained][1] if pretrained else 0.0)

                return measure

            record("supervised only", seed, supervised_only)
            if "strong" in options.rows:
                record("supervised, strong augmentation", seed, fitted(
                    "strong", "--data.train_augment", "randaugment", "--trainer.callbacks+",
                    "lightning_resnet.callbacks.RandomErasing", "--trainer.callbacks.probability", "1.0"))
            if "pseudo" in options.rows:
                record("one noised pseudo-label round", seed, pseudo_label_round)
            if "pretrain" in options.rows or "pretrain_freematch" in options.rows:
                for method in options.methods:
                    if method not in weights:  # once per data set: no labels read, the test part never seen
                        path, knn, took = pretrain(method, root / "pool", root / "labelled", options.steps,
                                                   0.0 if flip else 0.5, options.pretrained_cache.resolve())
                        weights[method] = (path, took)
                        print(f"pretrain {method}: k-NN accuracy {knn:.4f} in {took:.0f} s", flush=True)
                    if "pretrain" in options.rows:
                        record(f"{method} then fine-tuning", seed, fitted(
                            f"from_{method}", "--model.pretrained", str(weights[method][0]), "--model.freeze_backbone",
                            "true", "--model.unfreeze_at_epoch", str(max(1, round(epochs / 5))),
                            "--model.backbone_lr_factor", "0.1", "--data.normalize", "imagenet", pretrained=method))
            for method in ("fixmatch", "freematch"):
                if method in options.rows:
                    record(method, seed, fitted(method, *unlabelled, "--model.semi_supervised.method", method))
            if "pretrain_freematch" in options.rows and weights:
                best = max(weights, key=lambda name: results.get(f"{name} then fine-tuning", [0.0])[0])
                record(f"{best} then freematch", seed, fitted(
                    "pretrain_freematch", *unlabelled, "--model.semi_supervised.method", "freematch",
                    "--model.pretrained", str(weights[best][0]), "--data.normalize", "imagenet", pretrained=best))

        for seed in range(options.seeds):
            one_seed(seed)
        os.chdir(ROOT)
    rows = [[row, " / ".join(f"{100 * value:.1f}" for value in values), f"{100 * statistics.mean(values):.1f}",
             f"{statistics.median(seconds[row]):.0f}"] for row, values in results.items()]
    report(f"Semi-supervised fit, {options.data} with {described}: {options.seeds} seed(s), {options.steps} optimizer "
           f"steps a row, unlabelled ratio {options.ratio}",
           table(["row", "test accuracy % per seed", "mean", "seconds (median)"], rows))


if __name__ == "__main__":
    main()
