"""The four commands that took one class per image only, now taking a multi-label model, on the composed digits
(``demo:digit_sets``, images of two or three digits each, labelled with the set): ``suggest``, ``pseudo_label``,
``export --quantize int8`` and a teacher (``--model.distillation.teacher``).

Each seed writes the demo's 2,000 images of that seed and shares them out at random: 10 % labelled (split 80/20
into training and validation rows of a labels file), 60 % an unlabelled pool, 30 % the test rows of the same file;
every ``fit`` is ``configs/multilabel_demo.yaml`` (20 epochs: its 8 are few steps on 200 images) and tests its best
checkpoint on the test rows after it. Rows:

- from scratch on the labelled 10 %;
- one round of ``--budget`` pool images labelled (their true label sets) and trained on with the labelled part,
  chosen by ``suggest`` (each label set ranked by its least certain label, spread over the feature space) against
  chosen at random;
- one round of ``pseudo_label`` on the pool from the scratch model, then ``fit --data.extra_labels`` with the
  student noised (the command ``pseudo_label`` prints), against scratch under the same augmentation;
- a ResNet-18 taught by a ResNet-50 trained on the same 10 % (each label's KL term), against the ResNet-18 alone;
- the scratch model exported as INT8 (ONNX Runtime, 256 calibration images): float and INT8 mAP and exact-set
  accuracy on the validation rows, the share of images given the same label set;
- the wall time of each step.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, report, table

EPOCHS = ["--trainer.max_epochs", "20"]
RECIPE = ["--config", str(ROOT / "configs/multilabel_demo.yaml"), *EPOCHS, "--trainer.enable_progress_bar", "false"]


def share_out(work: Path, seed: int) -> tuple[Path, Path, dict[str, str]]:
    """The labelled folder (its images and labels.csv: train, val and test rows) and the pool (its images); the
    pool's true label sets by path."""
    from lightning_resnet.data.digit_sets import LABELS_CSV, write_digit_sets

    write_digit_sets(work / "all", seed=seed)
    with open(work / "all" / LABELS_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    random.Random(seed).shuffle(rows)
    labelled, pool = work / "labelled", work / "pool"
    (labelled / "images").mkdir(parents=True)
    pool.mkdir()
    truth, listed = {}, []
    for index, row in enumerate(rows):
        share = index / len(rows)
        if 0.1 <= share < 0.7:
            target = pool / Path(row["path"]).name
            shutil.copy(work / "all" / row["path"], target)
            truth[str(target)] = row["labels"]
            continue
        shutil.copy(work / "all" / row["path"], labelled / row["path"])
        listed.append((row["path"], row["labels"], "test" if share >= 0.7 else "val" if index % 5 == 0 else "train"))
    write_labels(labelled / LABELS_CSV, listed)
    return labelled, pool, truth


def write_labels(path: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("path", "labels", "split"))
        writer.writerows(rows)


def read_labels(path: Path) -> list[tuple[str, str, str]]:
    with open(path, newline="") as handle:
        return [(row["path"], row["labels"], row["split"]) for row in csv.DictReader(handle)]


def fit(labels: Path, name: str, *extra: str) -> tuple[dict[str, float], float, Path]:
    """The test mAP and exact-set accuracy of one fit's best checkpoint, its seconds, and that checkpoint."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    start = time.perf_counter()
    run = cli(["fit", *RECIPE, "--data.labels", str(labels), "--trainer.logger.init_args.name", name, *extra])
    took = time.perf_counter() - start
    metrics = run.trainer.callback_metrics
    return ({"mAP": float(metrics["test/mAP"]), "exact": float(metrics["test/exact_match"])}, took,
            best_checkpoint(run.trainer).path)


def labelled_with(labels: Path, picks: list[str], truth: dict[str, str], name: str) -> Path:
    """A copy of the labelled folder's labels file with ``picks`` moved in as training rows (a person labelled
    them)."""
    folder = labels.parent.parent / name
    shutil.copytree(labels.parent, folder)
    rows = read_labels(folder / labels.name)
    for pick in picks:
        shutil.copy(pick, folder / "images" / Path(pick).name)
        rows.append((f"images/{Path(pick).name}", truth[pick], "train"))
    write_labels(folder / labels.name, rows)
    return folder / labels.name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=100, help="pool images labelled in the round (5 %%)")
    options = parser.parse_args()
    from lightning_resnet.bundle import description_file
    from lightning_resnet.cli import main as cli
    from lightning_resnet.cli.pseudo_label import NOISED_STUDENT
    from lightning_resnet.data.digit_sets import LABELS_CSV

    results: dict[str, list[dict[str, float]]] = {}
    seconds: dict[str, list[float]] = {}
    int8: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch_folder:
        for seed in range(options.seeds):
            work = Path(scratch_folder) / f"seed_{seed}"
            work.mkdir()
            os.chdir(work)
            labelled, pool, truth = share_out(work, seed)
            labels = labelled / LABELS_CSV
            seeded = ["--seed_everything", str(seed)]
            scores, took, scratch = fit(labels, "scratch", *seeded)
            results.setdefault("from scratch (10 % labelled)", []).append(scores)
            seconds.setdefault("fit, 20 epochs on 10 %", []).append(took)

            start = time.perf_counter()
            cli(["suggest", "--ckpt_path", str(scratch), "--data.predict_dir", str(pool), "--budget",
                 str(options.budget), "--output", str(work / "suggested")])
            seconds.setdefault("suggest on the pool", []).append(time.perf_counter() - start)
            with open(work / "suggested" / "to_label.csv", newline="") as handle:
                suggested = [row["path"] for row in csv.DictReader(handle)]
            chosen = {"suggest": suggested, "random": random.Random(seed).sample(sorted(truth), options.budget)}
            for kind, picks in chosen.items():
                scores, _, _ = fit(labelled_with(labels, picks, truth, f"labelled_{kind}"), f"round_{kind}", *seeded)
                results.setdefault(f"+{options.budget} labelled, chosen by {kind}", []).append(scores)

            start = time.perf_counter()
            pseudo = cli(["pseudo_label", "--ckpt_path", str(scratch), "--data.predict_dir", str(pool),
                          "--output", str(work / "pseudo_labels.csv")])
            seconds.setdefault("pseudo_label on the pool", []).append(time.perf_counter() - start)
            with open(pseudo, newline="") as handle:
                kept = sum(1 for _ in csv.DictReader(handle))
            results.setdefault("from scratch, the student's augmentation", []).append(
                fit(labels, "scratch_noised", *seeded, *NOISED_STUDENT)[0])
            scores, took, _ = fit(labels, "student", *seeded, "--data.extra_labels", str(pseudo), *NOISED_STUDENT)
            results.setdefault("one pseudo-label round (scratch start)", []).append(scores)
            seconds.setdefault("fit of the student", []).append(took)
            print(f"seed {seed}: {kept} of {len(truth)} pool images pseudo-labelled", flush=True)

            teacher_scores, took, teacher = fit(labels, "teacher", *seeded, "--model.backbone", "resnet50")
            results.setdefault("ResNet-50 (the teacher)", []).append(teacher_scores)
            seconds.setdefault("fit of the ResNet-50 teacher", []).append(took)
            scores, _, _ = fit(labels, "taught", *seeded, "--model.distillation.teacher", str(teacher))
            results.setdefault("ResNet-18 taught by the ResNet-50", []).append(scores)

            start = time.perf_counter()
            output = work / "scratch.int8.onnx"
            cli(["export", "--ckpt_path", str(scratch), "--quantize", "int8", "--keep_accuracy_drop", "true",
                 "--output", str(output)])
            seconds.setdefault("export --quantize int8", []).append(time.perf_counter() - start)
            int8.append(json.loads(description_file(output).read_text())["export"]["quantization"])
            print(results, int8, flush=True)
        os.chdir(ROOT)
    rows = [[name, " / ".join(f"{each['mAP']:.4f}" for each in values),
             f"{statistics.mean(each['mAP'] for each in values):.4f}",
             " / ".join(f"{each['exact']:.4f}" for each in values),
             f"{statistics.mean(each['exact'] for each in values):.4f}"] for name, values in results.items()]
    quantized = [[str(seed), f"{each['float_mAP']:.4f}", f"{each['int8_mAP']:.4f}", f"{each['float_exact_match']:.4f}",
                  f"{each['int8_exact_match']:.4f}", f"{each['set_agreement']:.4f}", str(each["validation_images"])]
                 for seed, each in enumerate(int8)]
    timing = [[name, f"{statistics.mean(values):.1f}"] for name, values in seconds.items()]
    report(f"Label sets: suggest, pseudo_label, a teacher and INT8 on the composed digits, {options.seeds} seed(s)",
           table(["start", "test mAP per seed", "mean", "test exact sets per seed", "mean"], rows) + "\n\n"
           + table(["seed", "float mAP", "INT8 mAP", "float exact sets", "INT8 exact sets", "same label set",
                    "validation images"], quantized) + "\n\n" + table(["step", "seconds"], timing))


if __name__ == "__main__":
    main()
