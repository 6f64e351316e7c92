"""INT8 against float ONNX on this CPU: ``export --quantize int8`` (ONNX Runtime's static QDQ quantization).

- The demo model: ``configs/demo.yaml`` trained once, exported as float and as INT8 (256 calibration images);
  the accuracy of each on its 359 validation images and their top-1 agreement, as ``export`` prints them.
- A ResNet-50 at 224 px (10 classes, weights as initialized: the speed of its arithmetic does not depend on their
  values), quantized with 64 generated calibration images.
- images/s of each file at batch 1 and 32 in ONNX Runtime (all cores), the two files alternating.
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


def images_per_second(model: Path, batch: int, seconds: float) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    shape = [batch, *session.get_inputs()[0].shape[1:]]
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    session.run(None, {"images": images})
    start, runs = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        session.run(None, {"images": images})
        runs += 1
    return batch * runs / (time.perf_counter() - start)


def demo_models(work: Path) -> tuple[Path, Path, dict]:
    """The demo recipe trained, then exported as float and as INT8; the INT8 export's measured check."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint

    os.chdir(work)
    run = cli(["fit", "--config", str(ROOT / "configs/demo.yaml"), "--trainer.enable_progress_bar", "false"])
    best = best_checkpoint(run.trainer).path
    cli(["export", "--ckpt_path", str(best), "--output", str(work / "demo.onnx")])
    cli(["export", "--ckpt_path", str(best), "--quantize", "int8", "--output", str(work / "demo.int8.onnx")])
    return work / "demo.onnx", work / "demo.int8.onnx", json.loads((work / "demo.int8.json").read_text())


def resnet50_models(work: Path) -> tuple[Path, Path]:
    from lightning_resnet.data import Normalization
    from lightning_resnet.inference.export import ShippedClassifier, export_model
    from lightning_resnet.inference.quantization import quantize
    from lightning_resnet.models import create_model

    network = create_model("resnet50", num_classes=10).eval()
    shipped = ShippedClassifier(network, Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), 1.0)
    float_model = export_model(shipped, work / "resnet50.onnx", 224)
    rng = np.random.default_rng(0)
    calibration = [rng.integers(0, 256, (32, 3, 224, 224), dtype=np.uint8) for _ in range(2)]
    return float_model, quantize(float_model, work / "resnet50.int8.onnx", calibration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each timing")
    parser.add_argument("--seconds", type=float, default=5.0, help="of each timing")
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        demo_float, demo_int8, metadata = demo_models(work)
        checked = metadata["quantization"]
        pairs = {"demo (ResNet-18, CIFAR stem, 16 px)": (demo_float, demo_int8),
                 "ResNet-50, 224 px": resnet50_models(work)}
        for name, (float_model, int8_model) in pairs.items():
            for batch in (1, 32):
                times = interleaved({"float": lambda m=float_model, b=batch: images_per_second(m, b, options.seconds),
                                     "int8": lambda m=int8_model, b=batch: images_per_second(m, b, options.seconds)},
                                    options.rounds)
                speed_float, speed_int8 = median(times["float"]), median(times["int8"])
                rows.append([name, str(batch), f"{speed_float:.1f}", f"{speed_int8:.1f}",
                             f"**{speed_int8 / speed_float:.2f}x**"])
        os.chdir(ROOT)
    accuracy = (f"The demo model on its {checked['validation_images']} validation images: float accuracy "
                f"{checked['float_accuracy']:.4f}, INT8 {checked['int8_accuracy']:.4f}, top-1 agreement "
                f"{checked['top1_agreement']:.4f} ({checked['calibration_images']} calibration images).")
    report("INT8 against float ONNX (ONNX Runtime, CPU)",
           table(["model", "batch", "float images/s", "INT8 images/s", "INT8 / float"], rows) + "\n\n" + accuracy)


if __name__ == "__main__":
    main()
