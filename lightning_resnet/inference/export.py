"""A trained model as a file other programs can run: ONNX, OpenVINO's ``.xml`` (converted from the ONNX) or a
``torch.export`` program, each carrying its preprocessing, and its description beside it.

The exported program (:class:`~lightning_resnet.runtimes.ShippedClassifier`) takes the image as ``uint8`` (already
resized and center-cropped to the training size, NCHW) and does the rest inside: normalization with the training
mean and std, the network, the calibration temperature and the task's activation. It returns probabilities,
logits and the pooled features, so a shipped file cannot disagree with the checkpoint by a forgotten normalization.
The description beside it (``<file>.json``, :mod:`lightning_resnet.bundle.exported`) is the model's bundle, with
the file's own input and outputs; every runtime (:mod:`lightning_resnet.runtimes`) reads it.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..bundle import ModelBundle, write_description
from ..errors import check
from ..runtimes import ShippedClassifier
from ..runtimes.onnx_runtime import INPUT_NAME, OUTPUT_NAMES

ExportFormat = Literal["onnx", "openvino", "torch_export"]
Quantize = Literal["int8"]
"""What ``export --quantize`` makes of the ONNX model (see :mod:`.quantization`)."""
ONNX_OPSET = 17
"""The ONNX operator set written: ONNX Runtime and OpenVINO of requirements.txt read it."""
SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "torch_export": ".pt2"}
"""The file each format writes (OpenVINO's weights go to the ``.bin`` beside its ``.xml``)."""


def export_model(model: nn.Module, output: Path, size: tuple[int, int], in_chans: int = 3,
                 format: ExportFormat = "onnx") -> Path:
    """Write ``model`` (in eval mode; ``uint8`` images of ``size``, height and width, in) to ``output``, with a
    dynamic batch dimension."""
    model = model.eval()
    example = (torch.randint(0, 256, (2, in_chans, *size), dtype=torch.uint8),)
    batch = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        # TorchScript's exporter: export of a ResNet-18 7.9 s against torch.export's 13.9 s, the same outputs
        # (benchmarks/README.md, "Measured reasons in the code"); PyTorch deprecates it, torch is pinned
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", "Constant folding - Only steps=1")  # the paper's shortcut A slices
            torch.onnx.export(model, example, str(output), dynamo=False, input_names=[INPUT_NAME],
                              output_names=list(OUTPUT_NAMES), opset_version=ONNX_OPSET,
                              dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)})
    elif format == "openvino":
        with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
            to_openvino(export_model(model, Path(scratch) / "model.onnx", size, in_chans), output)
    elif format == "torch_export":
        torch.export.save(torch.export.export(model, example, dynamic_shapes=batch), output)
    else:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(SUFFIXES)}")
    return output


def to_openvino(onnx_model: Path, output: Path) -> Path:
    """OpenVINO's ``.xml`` (and the ``.bin`` of its weights) converted from an exported ``.onnx``, its weights kept
    as they are (OpenVINO would otherwise halve float weights to 16 bits)."""
    import openvino  # only export --format openvino pays for importing it

    openvino.save_model(openvino.convert_model(str(onnx_model)), str(output), compress_to_fp16=False)
    return output


def the_files_part(bundle: ModelBundle, format: ExportFormat) -> dict[str, Any]:
    """What an exported file's description says of the file itself: its format, its input and its outputs."""
    preprocessing = bundle.preprocessing
    channels, geometry = preprocessing.channels, preprocessing.geometry
    return {
        "format": format,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", channels, *geometry.size],
            "layout": f"NCHW, {'gray' if channels == 1 else 'RGB'}, uint8 0-255",
            "preprocessing": f"{geometry.describe()}; normalization is inside the model",
        },
        "outputs": {"probabilities": bundle.task.activation,
                    "logits": "divided by the temperature (batch, num_classes)",
                    "features": "the pooled features the classifier reads (batch, features): what embed writes",
                    "unsure": "the energy score, temperature * logsumexp(logits), below decision.reject_below: the "
                              "image may be none of the classes (null: no threshold)"},
    }


def check_output_suffix(output: Path, format: ExportFormat, option: str = "--output") -> None:
    """One line when ``output`` is not named as ``format`` writes it: a program reads a file by its suffix."""
    suffix = SUFFIXES[format]
    check(output.suffix == suffix, f"{option} {output}: --format {format} writes a {suffix} file"
                                   f"{' (and its .bin beside it)' if format == 'openvino' else ''}, which programs "
                                   f"tell by its suffix: name it {output.with_suffix(suffix).name}, or leave {option} "
                                   "out")


def export_bundle(bundle: ModelBundle, format: ExportFormat = "onnx", output: Path | None = None) -> Path:
    """Export the trained model of ``bundle`` (a checkpoint's), with its description beside it; ``output`` defaults
    to the checkpoint's path with the format's suffix."""
    target = output or bundle.path.with_suffix(SUFFIXES[format])
    check_output_suffix(target, format)
    preprocessing = bundle.preprocessing
    export_model(ShippedClassifier.of(bundle), target, preprocessing.geometry.size, preprocessing.channels, format)
    written = write_description(target, bundle, the_files_part(bundle, format))
    print(f"exported {bundle.path} to {target} (description: {written})")
    return target
