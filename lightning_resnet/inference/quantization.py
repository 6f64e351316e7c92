"""INT8 export: ONNX Runtime's static quantization of an exported model, calibrated on training images and checked
against the float model on the validation images before it is written (``export --quantize int8``).

Weights are quantized to signed 8 bits per output channel and activations to unsigned 8 bits per tensor, in the QDQ
format (QuantizeLinear and DequantizeLinear pairs that ONNX Runtime fuses into integer kernels). Unsigned
activations, not ONNX Runtime's signed default: a ResNet-50 at 224 px, batch 32, ran 2.9x the float model's images/s
with them on this AVX-512 VNNI CPU and 0.7x with signed ones. The activations' ranges come from the calibration
images read in the evaluation view (resize, center crop), the view every shipped model reads. The normalization,
the temperature and the softmax stay inside the program, in float as in the float export: the probabilities still
sum to 1.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import ImageSource
from ..data.loaders import LoaderSettings
from ..errors import UserError, check
from ..stages import VAL
from ..training.trained_model import TrainedModel
from .export import (
    INPUT_NAME,
    SUFFIXES,
    ExportFormat,
    export_model,
    shipped,
    shipped_metadata,
    to_openvino,
    write_metadata,
)
from .runtimes import open_runtime

CALIBRATION_BATCH = 32
QUANTIZED_OPERATIONS = ["Conv", "Gemm", "MatMul", "Add", "Relu", "MaxPool", "GlobalAveragePool"]
"""The network's operations; not the temperature's division or the softmax after it."""


@dataclass(frozen=True)
class QuantizationCheck:
    """The float and the INT8 model on the same validation images."""

    images: int
    float_accuracy: float
    int8_accuracy: float
    agreement: float
    """The fraction of images where both give the same class."""

    @property
    def points_lost(self) -> float:
        """Accuracy points (of 100) the INT8 model loses against the float one (negative: it gains)."""
        return 100.0 * (self.float_accuracy - self.int8_accuracy)

    def as_metadata(self, calibration_images: int) -> dict[str, float | int | str]:
        return {"weights": "int8, per output channel", "activations": "uint8, per tensor (static, QDQ)",
                "calibration_images": calibration_images, "validation_images": self.images,
                "float_accuracy": round(self.float_accuracy, 6), "int8_accuracy": round(self.int8_accuracy, 6),
                "top1_agreement": round(self.agreement, 6)}

    def summary(self) -> str:
        gained = 100 * (self.int8_accuracy - self.float_accuracy)  # +0.00 rather than -0.00 when equal
        return (f"on {self.images} validation images: float accuracy {self.float_accuracy:.4f}, INT8 "
                f"{self.int8_accuracy:.4f} ({gained:+.2f} points), same class for {100 * self.agreement:.1f} %")


def calibration_batches(trained: TrainedModel, source: ImageSource, count: int) -> list[np.ndarray]:
    """``count`` training images (a random choice, fixed by the run's seed) in the evaluation view, in batches."""
    seed = int(trained.data_options.get("seed", 42))
    images = source.training_set(trained.view, None, LoaderSettings(CALIBRATION_BATCH, 0, seed), 1)
    check(len(images) > 0, f"data.data_dir {source.location}: no training images to calibrate INT8 on")
    chosen = sorted(random.Random(seed).sample(range(len(images)), min(count, len(images))))
    crops = np.stack([images[index][0].numpy() for index in chosen])
    return [crops[start : start + CALIBRATION_BATCH] for start in range(0, len(crops), CALIBRATION_BATCH)]


def validation_images(trained: TrainedModel, source: ImageSource) -> tuple[np.ndarray, np.ndarray]:
    """The validation part of the checkpoint's run, in the evaluation view, and its class indices."""
    part = source.evaluation_set(VAL, trained.view)
    check(len(part) > 0, f"data.data_dir {source.location} has no validation images (data.val_fraction "
                         f"{trained.data_options.get('val_fraction')}): the INT8 model is checked against the "
                         "float one on them")
    samples = [part[index] for index in range(len(part))]
    return np.stack([crop.numpy() for crop, _ in samples]), np.array([int(label) for _, label in samples])


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


def predicted_classes(model: Path, images: np.ndarray) -> np.ndarray:
    run = open_runtime(model)
    return np.concatenate([run(images[start : start + 256])[0] for start in range(0, len(images), 256)]).argmax(1)


def compare(float_model: Path, int8_model: Path, images: np.ndarray, labels: np.ndarray) -> QuantizationCheck:
    """Both models' accuracy on ``images`` and how often they give the same class."""
    float_classes, int8_classes = predicted_classes(float_model, images), predicted_classes(int8_model, images)
    return QuantizationCheck(len(labels), float((float_classes == labels).mean()),
                             float((int8_classes == labels).mean()), float((float_classes == int8_classes).mean()))


def refuse_a_large_drop(measured: QuantizationCheck, max_accuracy_drop: float, keep: bool) -> None:
    """One line, nothing written, when INT8 loses more than ``max_accuracy_drop`` points and keeping was not asked."""
    if measured.points_lost > max_accuracy_drop and not keep:
        raise UserError(f"--max_accuracy_drop {max_accuracy_drop}: the INT8 model loses {measured.points_lost:.2f} "
                        f"points {measured.summary()}; nothing written (more --calibration_images may help; "
                        "--keep_accuracy_drop true writes it anyway)")


def export_int8_checkpoint(ckpt_path: str | Path, output: str | Path | None = None, calibration_images: int = 256,
                           max_accuracy_drop: float = 1.0, keep_accuracy_drop: bool = False,
                           format: ExportFormat = "onnx") -> Path:
    """Export the checkpoint's model as INT8 ONNX (``output`` defaults to ``<checkpoint>.int8.onnx``), or that
    model converted to OpenVINO (``format`` ``openvino``: ``.int8.xml``), with the metadata JSON beside it, if its
    validation images allow (see :func:`refuse_a_large_drop`); the model checked is the one written."""
    check(calibration_images >= 1, f"--calibration_images must be at least 1, got {calibration_images}")
    check(max_accuracy_drop >= 0, f"--max_accuracy_drop must be 0 or more points, got {max_accuracy_drop}")
    trained = TrainedModel.read(ckpt_path)
    trained.refuse_label_sets("export --quantize int8")
    target = Path(output) if output else Path(ckpt_path).with_suffix(".int8" + SUFFIXES[format])
    source = trained.labelled_source()
    source.prepare()
    images, labels = validation_images(trained, source)
    batches = calibration_batches(trained, source, calibration_images)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        float_model = export_model(shipped(trained), Path(scratch) / "float.onnx", trained.image_size,
                                   trained.channels)
        candidate = quantize(float_model, Path(scratch) / "int8.onnx", batches)
        if format == "openvino":  # OpenVINO reads the QDQ pairs and runs its own integer kernels
            candidate = to_openvino(candidate, Path(scratch) / "int8.xml")
        measured = compare(float_model, candidate, images, labels)
        refuse_a_large_drop(measured, max_accuracy_drop, keep_accuracy_drop)
        if format == "openvino":
            candidate.with_suffix(".bin").replace(target.with_suffix(".bin"))
        candidate.replace(target)
    print(f"INT8 {measured.summary()}")
    written = write_metadata(target, {**shipped_metadata(trained),
                                      "quantization": measured.as_metadata(calibration_images)})
    print(f"exported {ckpt_path} to {target} (metadata: {written})")
    return target
