"""INT8 against float on this CPU, in ONNX Runtime (``export --quantize int8``, static QDQ quantization) and in
OpenVINO (``export --format openvino``, the same two models converted).

- The demo model: ``configs/demo.yaml`` trained once, exported as float and as INT8 (256 calibration images), each
  as ``.onnx`` and ``.xml``; the accuracy of each INT8 file on its 359 validation images and its top-1 agreement with
  the float model, as ``export`` prints them.
- A ResNet-50 at 224 px (10 classes, weights as initialized: the speed of its arithmetic does not depend on their
  values), quantized with 64 generated calibration images.
- images/s of each file at batch 1 and 32, run as ``predict_onnx`` and ``serve`` run it (:mod:`.runtimes`; all
  cores; OpenVINO in 32-bit float for a float file), the four files alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, interleaved, median, report, table
from lightning_resnet.bundle import description_file
from lightning_resnet.runtimes import EXPORTED as RUNTIMES


def images_per_second(model: Path, batch: int, seconds: float) -> float:
    """Images/s of an exported model (its runtime and input size from its description) on random crops."""
    import torch

    from lightning_resnet.runtimes import open_predictor

    predictor = open_predictor(model)
    size = predictor.bundle.preprocessing.image_size
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (batch, 3, size, size), dtype=np.uint8))
    predictor.run(images)
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        predictor.run(images)
        runs += 1
    return batch * runs / (time.perf_counter() - start)


def demo_models(work: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    """The demo recipe trained, then exported as float and as INT8 in both formats; each INT8 export's check."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    os.chdir(work)
    run = cli(["fit", "--config", str(ROOT / "configs/demo.yaml"), "--trainer.enable_progress_bar", "false"])
    best = best_checkpoint(run.trainer).path
    files, checks = {}, {}
    for format, suffix in (("onnx", ".onnx"), ("openvino", ".xml")):
        folder = work / format
        files[f"float{suffix}"] = folder / f"demo{suffix}"
        cli(["export", "--ckpt_path", str(best), "--format", format, "--output", str(files[f"float{suffix}"])])
        files[f"int8{suffix}"] = folder / f"demo.int8{suffix}"
        cli(["export", "--ckpt_path", str(best), "--format", format, "--quantize", "int8", "--output",
             str(files[f"int8{suffix}"])])
        checks[suffix] = json.loads(description_file(files[f"int8{suffix}"]).read_text())["export"]["quantization"]
    return files, checks


def resnet50_models(work: Path) -> dict[str, Path]:
    from lightning_resnet.bundle import Architecture, ModelBundle, Preprocessing, write_description
    from lightning_resnet.data import Normalization
    from lightning_resnet.inference.export import export_model, to_openvino
    from lightning_resnet.inference.quantization import quantize
    from lightning_resnet.models import create_model
    from lightning_resnet.runtimes import ShippedClassifier
    from lightning_resnet.tasks import SINGLE_LABEL, Decision

    bundle = ModelBundle(Architecture("resnet50"), tuple(str(index) for index in range(10)),
                         Preprocessing(224, 0.875, 3, Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
                         Decision(SINGLE_LABEL), weights=create_model("resnet50", num_classes=10).state_dict())
    float_model = export_model(ShippedClassifier.of(bundle), work / "resnet50.onnx", 224)
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (32, 3, 224, 224), dtype=np.uint8) for _ in range(2)]
    int8_model = quantize(float_model, work / "resnet50.int8.onnx", calibration)
    files = {"float.onnx": float_model, "int8.onnx": int8_model,
             "float.xml": to_openvino(float_model, work / "resnet50.xml"),
             "int8.xml": to_openvino(int8_model, work / "resnet50.int8.xml")}
    for file in files.values():
        write_description(file, bundle, {})
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each timing")
    parser.add_argument("--seconds", type=float, default=5.0, help="of each timing")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        demo_files, checks = demo_models(work)
        models = {"demo (ResNet-18, CIFAR stem, 16 px)": demo_files, "ResNet-50, 224 px": resnet50_models(work)}
        for name, files in models.items():
            for batch in (1, 32):
                speeds = interleaved({kind: lambda m=path, b=batch: images_per_second(m, b, options.seconds)
                                      for kind, path in files.items()}, options.rounds)
                base = median(speeds["float.onnx"])
                for kind in files:
                    precision, suffix = kind.split(".")
                    rows.append([name, str(batch), RUNTIMES[f".{suffix}"], precision, f"{median(speeds[kind]):.1f}",
                                 f"**{median(speeds[kind]) / base:.2f}x**"])
        os.chdir(ROOT)
    accuracy = " ".join(
        f"The demo model's INT8 {RUNTIMES[suffix]} file on its {checked['validation_images']} validation images: "
        f"float accuracy {checked['float_accuracy']:.4f}, INT8 {checked['int8_accuracy']:.4f}, top-1 agreement "
        f"{checked['top1_agreement']:.4f} ({checked['calibration_images']} calibration images)."
        for suffix, checked in checks.items())
    report("INT8 and float, ONNX Runtime and OpenVINO (CPU)",
           table(["model", "batch", "runtime", "weights", "images/s", "against float ONNX Runtime"], rows)
           + "\n\n" + accuracy)


if __name__ == "__main__":
    main()
