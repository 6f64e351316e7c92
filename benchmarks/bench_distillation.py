"""Distillation: a ResNet-18 alone against the same ResNet-18 taught by a ResNet-50 and by a ResNet-34
(``fit --model.distillation.teacher``), the demo recipe and epochs for all, several seeds, on the demo digits
(``--data digits``, 16 px) or on the generated photo-like shapes (``--data photo_like``, :mod:`.photo_like`,
1,800 images at 24 px, 10 epochs).

Each teacher is trained once with the demo recipe (seed 0); each seed then trains the student alone and with each
teacher, with ``seed_everything`` set to the seed. The validation part is the 80/20 split of the recipe's seed, the
same for every run. Rows: the best validation accuracy per seed and its mean, and the student's images/s at
batch 32 in ONNX Runtime (its float export; the teacher is not in it). Each trained teacher is also exported as INT8
(ONNX Runtime and OpenVINO): its float and INT8 accuracy on the validation part, as ``export`` checks them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.common import ROOT, report, table
from lightning_resnet.bundle import description_file

DATA = {"digits": [], "photo_like": ["--data.image_size", "24", "--data.hflip", "0.5", "--trainer.max_epochs", "10"]}
"""The recipe's options for each data set (beside its folder): the shapes need more epochs than the digits (a
ResNet-18 at 24 px, seed 42: 0.45 after 10 epochs in a first run; at 32 px, before the objects were drawn in a
contrasting colour, 0.23 after the demo's 6)."""


def fit(data: list[str], name: str, seed: int, *extra: str) -> tuple[float, Path]:
    """Best validation accuracy and the best checkpoint of one demo-recipe fit."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    run = cli(["fit", "--config", str(ROOT / "configs/demo.yaml"), *data, "--seed_everything", str(seed),
               "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", name, *extra])
    best = best_checkpoint(run.trainer)
    return best.score, best.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--teachers", nargs="+", default=["resnet50", "resnet34"])
    parser.add_argument("--data", choices=sorted(DATA), default="digits")
    options = parser.parse_args()
    data = DATA[options.data]
    if options.data == "photo_like":
        from benchmarks.photo_like import make_photo_like

        data = ["--data.data_dir", str(make_photo_like(ROOT / "data" / "bench_photo_like", 300)), *data]
    from benchmarks.bench_deploy import images_per_second
    from lightning_resnet.cli import main as cli

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        teachers = {}
        quantized = []
        for backbone in options.teachers:
            accuracy, teachers[backbone] = fit(data, f"teacher_{backbone}", 0, "--model.backbone", backbone)
            results[f"teacher {backbone} (seed 0)"] = [accuracy]
            for format in ("onnx", "openvino"):  # what INT8 costs a trained network of this size
                suffix = ".onnx" if format == "onnx" else ".xml"
                output = Path(work) / f"{backbone}.int8{suffix}"
                cli(["export", "--ckpt_path", str(teachers[backbone]), "--format", format, "--quantize", "int8",
                     "--keep_accuracy_drop", "true", "--output", str(output)])
                checked = json.loads(description_file(output).read_text())["export"]["quantization"]
                quantized.append([backbone, format, f"{checked['float_accuracy']:.4f}",
                                  f"{checked['int8_accuracy']:.4f}", f"{checked['top1_agreement']:.4f}"])
        student = None
        for seed in range(options.seeds):
            accuracy, student = fit(data, "alone", seed)
            results.setdefault("ResNet-18 alone", []).append(accuracy)
            for backbone, checkpoint in teachers.items():
                accuracy, _ = fit(data, f"taught_by_{backbone}", seed, "--model.distillation.teacher", str(checkpoint))
                results.setdefault(f"ResNet-18 taught by {backbone}", []).append(accuracy)
            print(results, flush=True)
        cli(["export", "--ckpt_path", str(student), "--output", str(Path(work) / "student.onnx")])
        speed = images_per_second(Path(work) / "student.onnx", 32, 5.0)
        os.chdir(ROOT)
    rows = [[name, " ".join(f"{value:.4f}" for value in values), f"{statistics.mean(values):.4f}"]
            for name, values in results.items()]
    report(f"Distillation on the {options.data} set, {options.seeds} seed(s)",
           table(["model", "val/acc per seed", "mean"], rows)
           + f"\n\nThe student (either way the same network): {speed:.0f} images/s at batch 32 (float ONNX).\n\n"
           + "The teachers as INT8 (``export --quantize int8``, 256 calibration images), on the validation part:\n\n"
           + table(["teacher", "format", "float accuracy", "INT8 accuracy", "top-1 agreement"], quantized))


if __name__ == "__main__":
    main()
