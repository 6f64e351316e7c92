"""A trained model run: one :class:`~.base.Predictor` per runtime, chosen by the file (:data:`RUNTIMES`), and one
loop that runs any of them over images (:mod:`.over_images`).

``base`` (the protocol: crops in, :class:`~.base.Outputs` out) <- ``torch_runtime`` (a checkpoint in PyTorch, and the
module every export ships), ``onnx_runtime`` (ONNX Runtime), ``openvino_runtime`` (OpenVINO); ``over_images``. A new
runtime is a file here and a line in :data:`RUNTIMES`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import Outputs, Predictor
from .onnx_runtime import OnnxPredictor
from .openvino_runtime import OpenVinoPredictor
from .over_images import Predictions, predict_images
from .torch_runtime import ShippedClassifier, TorchPredictor

RUNTIMES: dict[str, tuple[type[Predictor], str]] = {
    ".ckpt": (TorchPredictor, "PyTorch"),
    ".onnx": (OnnxPredictor, "ONNX Runtime"),
    ".xml": (OpenVinoPredictor, "OpenVINO"),
}
"""Each file's suffix, the predictor that runs it and the name of its runtime."""
EXPORTED = {suffix: name for suffix, (_, name) in RUNTIMES.items() if suffix != ".ckpt"}
"""The exported files' suffixes, and what runs each."""


def open_predictor(path: str | Path, option: str = "--model", exported_only: bool = False) -> Predictor:
    """The trained model at ``path`` in its runtime (:data:`RUNTIMES`, by its suffix; a file of another suffix is
    read as a checkpoint), or one line naming ``option``; with ``exported_only``, an exported model only."""
    path = Path(path).expanduser()
    kinds = EXPORTED if exported_only else RUNTIMES
    if exported_only and path.suffix not in kinds:
        raise UserError(f"{option} {path}: expected an exported model ({', '.join(kinds)})"
                        + (f"; {path.name} is a checkpoint: export it first, or give it to predict"
                           if path.suffix == ".ckpt" else ""))
    predictor, _ = RUNTIMES.get(path.suffix, RUNTIMES[".ckpt"])
    return predictor.open(path, option)


__all__ = [
    "EXPORTED",
    "RUNTIMES",
    "OnnxPredictor",
    "OpenVinoPredictor",
    "Outputs",
    "Predictions",
    "Predictor",
    "ShippedClassifier",
    "TorchPredictor",
    "open_predictor",
    "predict_images",
]
