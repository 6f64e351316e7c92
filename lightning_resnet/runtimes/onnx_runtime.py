"""An exported ``.onnx`` in ONNX Runtime, on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..bundle import ModelBundle, read_bundle
from ..errors import UserError
from .base import Outputs, Predictor

INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "logits", "features")
"""What an exported model answers; a file exported before features were among them answers the first two."""


def without_features(path: Path, option: str) -> UserError:
    return UserError(f"{option} {path} was exported before exports gave the pooled features: export its checkpoint "
                     "again")


class OnnxPredictor(Predictor):
    def __init__(self, bundle: ModelBundle, path: Path, option: str = "--model") -> None:
        super().__init__(bundle)
        import onnxruntime  # only the commands that run an exported model pay for importing it

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own classes for unreadable or invalid files
            raise UserError(f"{option} {path} is not a readable ONNX model "
                            f"({' '.join(str(error).split())[:200]})") from None
        self.path, self.option = path, option
        self.names = [output.name for output in self.session.get_outputs()]

    @classmethod
    def open(cls, path: Path, option: str) -> OnnxPredictor:
        return cls(read_bundle(path, option), path, option)

    @property
    def gives_features(self) -> bool:
        return "features" in self.names

    def run(self, crops: Tensor, features: bool = False) -> Outputs:
        if features and not self.gives_features:
            raise without_features(self.path, self.option)
        answered = self.session.run(list(OUTPUT_NAMES[: 3 if features else 2]), {INPUT_NAME: crops.numpy()})
        probabilities, logits, *pooled = (torch.from_numpy(np.asarray(answer)) for answer in answered)
        return Outputs(probabilities, logits, pooled[0] if pooled else None)
