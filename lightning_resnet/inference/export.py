"""A checkpoint as a file other programs can run: ONNX, OpenVINO's ``.xml`` (converted from the ONNX) or a
``torch.export`` program, each carrying its preprocessing.

The exported program takes the image as ``uint8`` (already resized and center-cropped to the
training size, NCHW) and does the rest inside: normalization with the training mean and std,
the network, the calibration temperature and the softmax. It returns probabilities and logits,
so a shipped file cannot disagree with the checkpoint by a forgotten normalization. The JSON
beside it keeps the class names, the resize-and-crop rule and the unsure threshold; ``predict_onnx``
(see :mod:`lightning_resnet.inference.exported`) applies that rule to a folder with ONNX Runtime or OpenVINO.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..data import Normalization
from ..training.trained_model import TrainedModel
from .unsure import as_metadata

ExportFormat = Literal["onnx", "openvino", "torch_export"]
Quantize = Literal["int8"]
"""What ``export --quantize`` makes of the ONNX model (see :mod:`.quantization`)."""
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torch_export": ".pt2"}
INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "logits")


class ShippedClassifier(nn.Module):
    """The network as it ships: ``uint8`` images in; probabilities (the softmax, or with ``multilabel`` each label's
    sigmoid) and calibrated logits out."""

    def __init__(self, network: nn.Module, normalization: Normalization, temperature: float,
                 multilabel: bool = False) -> None:
        super().__init__()
        self.network = network
        shift, scale = normalization.shift_and_scale()
        self.register_buffer("shift", shift.clone())
        self.register_buffer("scale", scale.clone())
        self.temperature = float(temperature)
        self.multilabel = multilabel

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits = self.network((images.float() - self.shift) * self.scale) / self.temperature
        return self.probabilities(logits), logits

    def embed(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`forward`'s probabilities and logits, and the pooled features the classifier reads them from."""
        features = self.network.forward_features((images.float() - self.shift) * self.scale)
        logits = self.network.forward_head(features) / self.temperature
        return self.probabilities(logits), logits, features

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.sigmoid() if self.multilabel else logits.softmax(dim=1)


def export_model(model: nn.Module, output: Path, image_size: int, in_chans: int = 3,
                 format: ExportFormat = "onnx") -> Path:
    """Write ``model`` (in eval mode; ``uint8`` images in) to ``output``, with a dynamic batch dimension."""
    model = model.eval()
    example = (torch.randint(0, 256, (2, in_chans, image_size, image_size), dtype=torch.uint8),)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        program = torch.onnx.export(model, example, dynamo=True, input_names=[INPUT_NAME],
                                    output_names=list(OUTPUT_NAMES), dynamic_shapes=dynamic, verbose=False)
        program.save(str(output))
    elif format == "openvino":
        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            to_openvino(export_model(model, Path(scratch) / "model.onnx", image_size, in_chans), output)
    elif format == "torch_export":
        torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), output)
    else:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(SUFFIXES)}")
    return output


def to_openvino(onnx_model: Path, output: Path) -> Path:
    """OpenVINO's ``.xml`` (and the ``.bin`` of its weights) converted from an exported ``.onnx``, its weights kept
    as they are (OpenVINO would otherwise halve float weights to 16 bits)."""
    import openvino  # only export --format openvino pays for importing it

    openvino.save_model(openvino.convert_model(str(onnx_model)), str(output), compress_to_fp16=False)
    return output


def shipped_metadata(trained: TrainedModel) -> dict[str, Any]:
    """What a shipped model needs besides its weights: how to prepare its input and read its outputs (the JSON
    beside an export, and what ``serve`` tells at ``/info``)."""
    view = trained.view
    return {
        "backbone": trained.backbone,
        "class_names": list(trained.class_names),
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", trained.channels, trained.image_size, trained.image_size],
            "layout": f"NCHW, {'gray' if trained.channels == 1 else 'RGB'}, uint8 0-255",
            "preprocessing": (f"resize the shorter side to {view.resize_size} px (bilinear, antialiased), "
                              f"center-crop {trained.image_size} px; normalization is inside the model"),
            "image_size": trained.image_size,
            "crop_fraction": trained.crop_fraction,
            "channels": trained.channels,
            "mean": list(trained.normalization.mean),
            "std": list(trained.normalization.std),
        },
        "temperature": trained.temperature,
        "reject_below": as_metadata(trained.reject_below),
        "task": trained.task,
        "label_thresholds": list(trained.label_thresholds) if trained.label_thresholds else None,
        "outputs": {"probabilities": "each label's sigmoid of its logit (batch, num_labels): the labels at or above "
                                     "their label_thresholds are the image's" if trained.multilabel else
                                     "softmax of the logits (batch, num_classes)",
                    "logits": "divided by the temperature (batch, num_classes)",
                    "unsure": "the energy score, temperature * logsumexp(logits), below reject_below: the image may "
                              "be none of the classes (null: no threshold)"},
    }


def write_metadata(output: Path, metadata: dict[str, Any]) -> Path:
    """The JSON beside an exported model (:func:`shipped_metadata`)."""
    path = output.with_suffix(".json")
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def shipped(trained: TrainedModel) -> ShippedClassifier:
    """The network of ``trained`` as it ships: normalization, temperature and softmax inside, in eval mode."""
    return ShippedClassifier(trained.network(), trained.normalization, trained.temperature, trained.multilabel).eval()


def export_checkpoint(ckpt_path: str | Path, format: ExportFormat = "onnx", output: str | Path | None = None) -> Path:
    """Export the model of a checkpoint of this project, with its metadata JSON beside it.

    ``output`` defaults to the checkpoint's path with the format's suffix.
    """
    trained = TrainedModel.read(ckpt_path)
    target = Path(output) if output else Path(ckpt_path).with_suffix(SUFFIXES[format])
    export_model(shipped(trained), target, trained.image_size, trained.channels, format)
    written = write_metadata(target, shipped_metadata(trained))
    print(f"exported {ckpt_path} to {target} (metadata: {written})")
    return target
