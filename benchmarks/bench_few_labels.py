"""Few labels on the demo digits (or the photo-like shapes): what ``pretrain``, ``suggest`` and ``pseudo_label`` gain
at 10 % labels.

Each seed splits every class of the 1,797 digits (or of ``--data photo_like``'s shapes) into a labelled 10 %,
an unlabelled pool of 60 % and a test part
of 30 % (never trained on, never suggested). The same fit recipe everywhere: ``configs/demo.yaml`` with
``--data.normalize imagenet`` (pretraining's), ``--trainer.max_epochs`` 30 (the recipe's 6 epochs are 18 steps on
180 images), its test accuracy on the test part. Rows:

- from scratch, and from each ``pretrain`` method's weights (its config in :data:`PRETRAIN_CONFIGS`: SimCLR, BYOL,
  DINO; pretrained once per method on all the images, labels unused, its k-NN score after the last epoch reported;
  fine-tuned with the backbone frozen for 5 epochs, then at 0.1x the rate, as the transfer recipe does);
- ``suggest`` against random picks: two rounds of ``--budget`` images from the pool, labelled (their true class)
  and trained on with the labelled part, each round from the previous round's model;
- one round of ``pseudo_label`` on the pool, then ``fit --data.extra_labels`` with the student noised
  (``pseudo_label``'s ``NOISED_STUDENT``, the command it prints): from the scratch model (against scratch, and against
  scratch with the same augmentation), and from the SimCLR start when it is pretrained (against that start, the loop
  ``docs/few-labels.md`` runs);
- the wall time of each step.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, report, table
from lightning_resnet.cli.pseudo_label import NOISED_STUDENT

RECIPE = ["--config", str(ROOT / "configs/demo.yaml"), "--data.normalize", "imagenet", "--trainer.max_epochs", "30",
          "--trainer.enable_progress_bar", "false", "--model.calibrate", "true"]
PRETRAIN_CONFIGS = {"simclr": "configs/pretrain_demo.yaml", "byol": "configs/pretrain_demo_byol.yaml",
                    "dino": "configs/pretrain_demo_dino.yaml"}
ROWS = ["starts", "suggest", "random", "pseudo"]
FINE_TUNE = ["--model.freeze_backbone", "true", "--model.unfreeze_at_epoch", "5", "--model.backbone_lr_factor", "0.1"]


DATA = {
    "digits": [],
    # the generated shapes (benchmarks/photo_like.py) at 24 px, flipped (a flip changes no shape); pretrained with
    # crops of at least 30 % and no blur (at 24 px it wipes the shape)
    "photo_like": ["--data.image_size", "24", "--data.hflip", "0.5"],
}
PRETRAIN_DATA = {"digits": [], "photo_like": ["--data.image_size", "24", "--data.view_options.min_scale", "0.3",
                                              "--data.view_options.hf_prob", "0.5",
                                              "--data.view_options.cj_strength", "1.0"]}


def split_digits(digits: Path, work: Path, seed: int) -> tuple[Path, Path, Path, dict[str, str]]:
    """labelled/ (10 %), pool/ (60 %, flat) and test/ (30 %) of each class; the pool's true classes by path."""
    rng = random.Random(seed)
    truth = {}
    for folder in sorted(path for path in digits.iterdir() if path.is_dir()):
        images = sorted(path for path in folder.iterdir() if path.suffix in (".png", ".jpg"))
        rng.shuffle(images)
        labelled, pool = round(0.1 * len(images)), round(0.7 * len(images))
        for index, image in enumerate(images):
            part = "labelled" if index < labelled else "pool" if index < pool else "test"
            target = work / part / (folder.name if part != "pool" else "")
            target.mkdir(parents=True, exist_ok=True)
            name = f"{folder.name}_{image.name}" if part == "pool" else image.name
            shutil.copy(image, target / name)
            if part == "pool":
                truth[str(target / name)] = folder.name
    return work / "labelled", work / "pool", work / "test", truth


def fit(recipe: list[str], data: Path, test: Path, name: str, *extra: str) -> tuple[float, float, Path]:
    """The test accuracy of one fit's final weights, its seconds, and its best checkpoint (calibrated, what the next
    step reads). Final, not best: on 36 validation images the best epoch is the first to reach 35 or 36 of them,
    whose test accuracy moved by up to 8 points between two fits that ended within 0.2 of each other."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    start = time.perf_counter()
    run = cli(["fit", *recipe, "--data.data_dir", str(data), "--test_after_fit", "false",
               "--trainer.logger.init_args.name", name, *extra])
    took = time.perf_counter() - start
    last = Path(run.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    tested = cli(["test", *recipe, "--data.data_dir", str(data), "--data.test_dir", str(test), "--ckpt_path", str(last),
                  "--trainer.logger.init_args.name", f"{name}_test"])
    return float(tested.trainer.callback_metrics["test/acc"]), took, best_checkpoint(run.trainer).path


def label(paths: list[str], truth: dict[str, str], labelled: Path) -> None:
    """A person labels ``paths``: each moves from the pool into its class folder."""
    for path in paths:
        shutil.move(path, labelled / truth[path] / Path(path).name)


def rounds(recipe: list[str], kind: str, start: Path, labelled: Path, pool: Path, test: Path, truth: dict[str, str],
           budget: int, seed: int) -> tuple[list[float], float]:
    """Two rounds of ``budget`` images labelled, chosen by ``suggest`` or at random: test accuracy after each."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.data import scan_unlabelled

    rng = random.Random(seed)
    model, accuracies, seconds = start, [], 0.0
    for round_ in (1, 2):
        begin = time.perf_counter()
        if kind == "suggest":
            output = labelled.parent / f"suggest_{round_}"
            cli(["suggest", "--ckpt_path", str(model), "--data.predict_dir", str(pool), "--budget", str(budget),
                 "--output", str(output)])
            with open(output / "to_label.csv", newline="") as handle:
                picks = [row["path"] for row in csv.DictReader(handle)]
        else:
            picks = rng.sample(scan_unlabelled(pool), budget)
        seconds += time.perf_counter() - begin
        label(picks, truth, labelled)
        accuracy, _, model = fit(recipe, labelled, test, f"{kind}_{round_}")
        accuracies.append(accuracy)
    return accuracies, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=90, help="images labelled in each round (5 %% of the digits)")
    parser.add_argument("--data", choices=list(DATA), default="digits")
    parser.add_argument("--per_class", type=int, default=180, help="images of each class with --data photo_like")
    parser.add_argument("--pretrain_epochs", type=int, help="the recipe's epochs unless given")
    parser.add_argument("--methods", nargs="*", choices=list(PRETRAIN_CONFIGS), default=list(PRETRAIN_CONFIGS),
                        help="the pretraining methods (none: no pretraining, the pseudo-label round from scratch only)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=ROWS,
                        help="which rows: the starts (scratch and each method's weights), suggest's and random "
                             "picks' rounds, the pseudo-label round (every kind starts from the scratch model)")
    parser.add_argument("--starts_only", action="store_true", help="the same as --rows starts")
    parser.add_argument("--pseudo_from", nargs="+", choices=["scratch", "simclr"], default=["scratch", "simclr"],
                        help="the starts of the pseudo-label rows (simclr: with --methods simclr)")
    options = parser.parse_args()
    rows_run = ["starts"] if options.starts_only else options.rows
    os.chdir(ROOT)
    from lightning_resnet.cli import main as cli
    from lightning_resnet.data import DIGITS_DIR, write_digits

    recipe = [*RECIPE, *DATA[options.data]]
    if options.data == "photo_like":
        from benchmarks.photo_like import make_photo_like

        digits = make_photo_like(ROOT / "data" / f"few_labels_photo_like_{options.per_class}", options.per_class)
    else:
        if not DIGITS_DIR.is_dir():
            write_digits(DIGITS_DIR)
        digits = DIGITS_DIR.resolve()
    results: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        weights, knn_scores = {}, {}
        for method in options.methods if {"starts", "pseudo"} & set(rows_run) else ():
            start = time.perf_counter()
            epochs = [] if options.pretrain_epochs is None else ["--trainer.max_epochs", str(options.pretrain_epochs)]
            run = cli(["pretrain", "--config", str(ROOT / PRETRAIN_CONFIGS[method]), "--data.data_dir", str(digits),
                       "--data.knn_dir", str(digits), *PRETRAIN_DATA[options.data], *epochs,
                       "--trainer.enable_progress_bar", "false",
                       "--trainer.logger.init_args.name", f"pretrain_{method}"])
            seconds.setdefault(f"pretrain {method} ({run.trainer.current_epoch} epochs)", []).append(
                time.perf_counter() - start)
            knn = run.trainer.callback_metrics.get("val/knn_acc")
            print(f"pretrain {method}: k-NN accuracy after the last epoch {float(knn):.4f}", flush=True)
            knn_scores[method] = float(knn)
            weights[method] = Path(run.trainer.logger.log_dir) / "backbone.safetensors"
        for seed in range(options.seeds):
            base = Path(work) / f"seed_{seed}"
            fine_tuned: dict[str, Path] = {}
            for kind in ("scratch", *(kind for kind in ROWS[1:] if kind in rows_run)):
                labelled, pool, test, truth = split_digits(digits, base / kind, seed)
                if kind == "scratch":
                    accuracy, took, scratch_model = fit(recipe, labelled, test, "scratch")
                    results.setdefault("from scratch", []).append(accuracy)
                    seconds.setdefault("fit, 30 epochs on 10 %", []).append(took)
                    for method, path in weights.items() if {"starts", "pseudo"} & set(rows_run) else ():
                        accuracy, _, fine_tuned[method] = fit(recipe, labelled, test, f"from_{method}",
                                                              "--model.pretrained", str(path), *FINE_TUNE)
                        results.setdefault(f"from pretrain {method}", []).append(accuracy)
                elif kind in ("suggest", "random"):
                    accuracies, took = rounds(recipe, kind, scratch_model, labelled, pool, test, truth,
                                              options.budget, seed)
                    for round_, accuracy in enumerate(accuracies, start=1):
                        results.setdefault(f"{kind}: round {round_} (+{round_ * options.budget} labelled)",
                                           []).append(accuracy)
                    seconds.setdefault(f"{kind}: choosing both rounds' images", []).append(took)
                else:
                    starts = []
                    if "scratch" in options.pseudo_from:
                        accuracy, _, _ = fit(recipe, labelled, test, "scratch_noised", *NOISED_STUDENT)
                        results.setdefault("from scratch, the student's augmentation", []).append(accuracy)
                        starts.append(("scratch", scratch_model, []))
                    if "simclr" in weights and "simclr" in options.pseudo_from:
                        simclr_start = ["--model.pretrained", str(weights["simclr"]), *FINE_TUNE]
                        starts.append(("simclr", fine_tuned["simclr"], simclr_start))
                    for start_name, model, extra in starts:
                        start = time.perf_counter()
                        output = cli(["pseudo_label", "--ckpt_path", str(model), "--data.predict_dir", str(pool),
                                      "--output", str(base / f"pseudo_labels_{start_name}.csv")])
                        seconds.setdefault("pseudo_label on the pool", []).append(time.perf_counter() - start)
                        accuracy, took, _ = fit(recipe, labelled, test, f"pseudo_{start_name}", "--data.extra_labels",
                                                str(output), *NOISED_STUDENT, *extra)
                        seconds.setdefault("fit of the student, 30 epochs", []).append(took)
                        results.setdefault(f"one pseudo-label round ({start_name} start)", []).append(accuracy)
                print(results, flush=True)
        os.chdir(ROOT)
    rows = [[name, " ".join(f"{value:.4f}" for value in values), f"{statistics.mean(values):.4f}"]
            for name, values in results.items()]
    timing = [[name, f"{statistics.mean(values):.1f}"] for name, values in seconds.items()]
    images = "the demo digits" if options.data == "digits" else "the photo-like shapes"
    knn = [[method, f"{score:.4f}"] for method, score in knn_scores.items()]
    report(f"Few labels: test accuracy at 10 % labels of {images}, {options.seeds} seed(s)",
           table(["start", "test/acc per seed", "mean"], rows) + "\n\n" + table(["step", "seconds"], timing)
           + ("\n\n" + table(["pretraining", "k-NN accuracy after the last epoch"], knn) if knn else ""))


if __name__ == "__main__":
    main()
