"""INT8 export: ONNX Runtime's static quantization of an exported model, calibrated on training images and checked
against the float model on the validation images before it is written (``export --quantize int8``).

Weights are quantized to signed 8 bits per output channel and activations to unsigned 8 bits per tensor, in the QDQ
format (QuantizeLinear and DequantizeLinear pairs that ONNX Runtime fuses into integer kernels). Unsigned
activations, not ONNX Runtime's signed default: with signed ones the INT8 model ran slower than the float one
(benchmarks/README.md, "Deploy: INT8 and OpenVINO"). The activations' ranges come from the calibration
images read in the evaluation view (resize, center crop), the view every shipped model reads. The normalization,
the temperature and the activation stay inside the program, in float as in the float export: a softmax's
probabilities still sum to 1. The check is the model's task's: accuracy, or mean average precision and exact-set
accuracy, on the validation images of the model's own run (its bundle's data options).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bundle import ModelBundle, write_description
from ..data import ImageSource
from ..data.loaders import LoaderSettings
from ..errors import UserError, check
from ..runtimes import OnnxPredictor, OpenVinoPredictor, Predictor, ShippedClassifier, predict_images
from ..runtimes.onnx_runtime import INPUT_NAME
from ..stages import VAL
from ..tasks import Task
from .export import SUFFIXES, ExportFormat, check_output_suffix, export_model, the_files_part, to_openvino

CALIBRATION_BATCH = 32
QUANTIZED_OPERATIONS = ["Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "GlobalAveragePool"]
"""The network's operations; not the temperature's division or the activation after it."""


@dataclass(frozen=True)
class QuantizationCheck:
    """The float and the INT8 model on the same validation images: the task's scores of each (accuracy; or mean
    average precision and exact-set accuracy), and how often they answer the same."""

    images: int
    float_scores: dict[str, float]
    int8_scores: dict[str, float]
    agreement: float
    agreement_name: str = "top1_agreement"
    agreement_words: str = "same class"

    @property
    def points_lost(self) -> float:
        """The most points (of 100) the INT8 model loses on any score against the float one (negative: it gains)."""
        return max(100.0 * (self.float_scores[name] - self.int8_scores[name]) for name in self.float_scores)

    def as_metadata(self, calibration_images: int) -> dict[str, float | int | str]:
        scores = {f"{kind}_{name}": round(value, 6) for kind, values in (("float", self.float_scores),
                                                                          ("int8", self.int8_scores))
                  for name, value in values.items()}
        return {"weights": "int8, per output channel", "activations": "uint8, per tensor (static, QDQ)",
                "calibration_images": calibration_images, "validation_images": self.images, **scores,
                self.agreement_name: round(self.agreement, 6)}

    def summary(self) -> str:
        compared = ", ".join(f"float {name.replace('_', ' ')} {value:.4f}, INT8 {self.int8_scores[name]:.4f} "
                             f"({100 * (self.int8_scores[name] - value):+.2f} points)"  # +0.00 rather than -0.00
                             for name, value in self.float_scores.items())
        return (f"on {self.images} validation images: {compared}, {self.agreement_words} for "
                f"{100 * self.agreement:.1f} %")


def calibration_batches(bundle: ModelBundle, source: ImageSource, count: int) -> list[np.ndarray]:
    """``count`` training images (a random choice, fixed by the run's seed) in the evaluation view, in batches."""
    seed = int(bundle.provenance.data.get("seed", 42))
    images = source.training_set(bundle.view, None, LoaderSettings(CALIBRATION_BATCH, 0, seed), 1)
    check(len(images) > 0, f"data.data_dir {source.location}: no training images to calibrate INT8 on")
    chosen = sorted(random.Random(seed).sample(range(len(images)), min(count, len(images))))
    crops = np.stack([images[index][0].numpy() for index in chosen])
    return [crops[start : start + CALIBRATION_BATCH] for start in range(0, len(crops), CALIBRATION_BATCH)]


def quantize(float_model: Path, output: Path, batches: list[np.ndarray]) -> Path:
    """Write the static INT8 quantization of ``float_model`` to ``output``, calibrated on ``batches``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"  # shapes inferred and the graph simplified, as ORT advises
        quant_pre_process(str(float_model), str(prepared))
        quantize_static(str(prepared), str(output), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                        op_types_to_quantize=QUANTIZED_OPERATIONS, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
    return output


def compare(float_model: Predictor, int8_model: Predictor, source: ImageSource, task: Task,
            bundle: ModelBundle) -> QuantizationCheck:
    """Both models on the validation part of the model's run (read once each, through the one loop): the task's
    scores of each and how often they answer the same."""
    part = source.evaluation_set(VAL, bundle.view)
    check(len(part) > 0, f"data.data_dir {source.location} has no validation images (data.val_fraction "
                         f"{bundle.provenance.data.get('val_fraction')}): the INT8 model is checked against the "
                         "float one on them")
    float_run, int8_run = (predict_images(model, part, batch_size=256) for model in (float_model, int8_model))
    targets = torch.tensor(float_run.keys)
    decision = bundle.decision
    return QuantizationCheck(len(targets), task.scores(float_run.probabilities, targets, decision),
                             task.scores(int8_run.probabilities, targets, decision),
                             task.agreement(float_run.probabilities, int8_run.probabilities, decision),
                             task.agreement_name, task.agreement_words)


def refuse_a_large_drop(measured: QuantizationCheck, max_accuracy_drop: float, keep: bool,
                        more_images: bool = True) -> None:
    """One line, nothing written, when INT8 loses more than ``max_accuracy_drop`` points and keeping was not asked;
    ``more_images``: whether more calibration images were there to take."""
    if measured.points_lost > max_accuracy_drop and not keep:
        hint = "more --calibration_images may help; " if more_images else ""
        raise UserError(f"--max_accuracy_drop {max_accuracy_drop}: the INT8 model loses {measured.points_lost:.2f} "
                        f"points {measured.summary()}; nothing written ({hint}--keep_accuracy_drop true writes it "
                        "anyway)")


RUNS = {"onnx": OnnxPredictor, "openvino": OpenVinoPredictor}
"""What runs the INT8 model of each format."""


def export_int8(bundle: ModelBundle, output: Path | None = None, calibration_images: int = 256,
                max_accuracy_drop: float = 1.0, keep_accuracy_drop: bool = False,
                format: ExportFormat = "onnx") -> Path:
    """Export the model of a checkpoint's ``bundle`` as INT8 ONNX (``output`` defaults to ``<checkpoint>.int8.onnx``),
    or that model converted to OpenVINO (``format`` ``openvino``: ``.int8.xml``), with its description beside it, if
    its validation images allow (see :func:`refuse_a_large_drop`); the model checked is the one written. The
    training and validation images are exactly those of the model's run (its bundle's data options)."""
    check(calibration_images >= 1, f"--calibration_images must be at least 1, got {calibration_images}")
    check(max_accuracy_drop >= 0, f"--max_accuracy_drop must be 0 or more points, got {max_accuracy_drop}")
    check(format in RUNS, f"--quantize int8 quantizes an ONNX model (or its OpenVINO conversion): drop --format "
                          f"{format} or give onnx or openvino")
    target = output or bundle.path.with_suffix(".int8" + SUFFIXES[format])
    check_output_suffix(target, format)
    source = bundle.labelled_source()
    source.prepare()
    batches = calibration_batches(bundle, source, calibration_images)
    used = sum(len(batch) for batch in batches)
    target.parent.mkdir(parents=True, exist_ok=True)
    preprocessing = bundle.preprocessing
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        float_model = export_model(ShippedClassifier.of(bundle), Path(scratch) / "float.onnx",
                                   preprocessing.geometry.size, preprocessing.channels)
        candidate = quantize(float_model, Path(scratch) / "int8.onnx", batches)
        if format == "openvino":  # OpenVINO reads the QDQ pairs and runs its own integer kernels
            candidate = to_openvino(candidate, Path(scratch) / "int8.xml")
        measured = compare(OnnxPredictor(bundle, float_model), RUNS[format](bundle, candidate), source,
                           bundle.task, bundle)
        refuse_a_large_drop(measured, max_accuracy_drop, keep_accuracy_drop, more_images=used == calibration_images)
        if format == "openvino":
            candidate.with_suffix(".bin").replace(target.with_suffix(".bin"))
        candidate.replace(target)
    print(f"INT8 {measured.summary()}")
    written = write_description(target, bundle, {**the_files_part(bundle, format),
                                                 "quantization": measured.as_metadata(used)})
    print(f"exported {bundle.path} to {target} (description: {written})")
    return target
