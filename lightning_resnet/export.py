"""A checkpoint as a file other programs can run: ONNX or a ``torch.export`` program.

Beside the model, a JSON file records what a caller needs to feed it and read it: the class
names in output order, the input size and the normalization.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .data import ImageFolderDataModule
from .module import ImageClassifier

ExportFormat = Literal["onnx", "torch_export"]
SUFFIXES = {"onnx": ".onnx", "torch_export": ".pt2"}


def export_model(model: nn.Module, output: Path, image_size: int, in_chans: int = 3,
                 format: ExportFormat = "onnx") -> Path:
    """Write ``model`` (in eval mode) to ``output``, with a dynamic batch dimension.

    The input is a float tensor ``(batch, in_chans, image_size, image_size)`` already normalized;
    the output is the logits ``(batch, num_classes)``.
    """
    model = model.eval()
    example = (torch.randn(2, in_chans, image_size, image_size),)
    dynamic = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "onnx":
        program = torch.onnx.export(model, example, dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=dynamic, verbose=False)
        program.save(str(output))
    elif format == "torch_export":
        torch.export.save(torch.export.export(model, example, dynamic_shapes=dynamic), output)
    else:
        raise ValueError(f"unknown export format {format!r}: expected one of {', '.join(SUFFIXES)}")
    return output


def write_metadata(output: Path, class_names: Sequence[str], mean: Sequence[float], std: Sequence[float],
                   image_size: int, resize_size: int, in_chans: int, backbone: str) -> Path:
    """The JSON beside an exported model: how to prepare its input and name its outputs."""
    metadata = {
        "backbone": backbone,
        "class_names": list(class_names),
        "input": {
            "shape": ["batch", in_chans, image_size, image_size],
            "layout": f"NCHW, {'gray' if in_chans == 1 else 'RGB'}, float32",
            "preprocessing": (f"resize the shorter side to {resize_size} px, center-crop {image_size} px, "
                              "scale to [0, 1], then (x - mean) / std per channel"),
            "mean": list(mean),
            "std": list(std),
        },
        "output": "logits (batch, num_classes); softmax for probabilities",
    }
    path = output.with_suffix(".json")
    path.write_text(json.dumps(metadata, indent=2) + "\n")
    return path


def export_checkpoint(ckpt_path: str | Path, format: ExportFormat = "onnx", output: str | Path | None = None) -> Path:
    """Export the model of a checkpoint of this project, with its metadata JSON beside it.

    The model and the data settings (size, normalization, class names) are rebuilt from the
    checkpoint by Lightning. ``output`` defaults to the checkpoint's path with the format's suffix.
    """
    model = ImageClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    data = ImageFolderDataModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    target = Path(output) if output else Path(ckpt_path).with_suffix(SUFFIXES[format])
    in_chans = (model.hparams.backbone_options or {}).get("in_chans", 3)
    export_model(model.model, target, data.image_size, in_chans, format)
    metadata = write_metadata(target, model.class_names, data.mean, data.std, data.image_size, data.resize_size,
                              in_chans, model.hparams.backbone)
    print(f"exported {ckpt_path} to {target} (metadata: {metadata})")
    return target
