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
OUTPUT_NAMES = ("probabilities", "logits")


class OnnxPredictor(Predictor):
    def __init__(self, bundle: ModelBundle, path: Path, option: str = "--model") -> None:
        super().__init__(bundle)
        import onnxruntime  # only the commands that run an exported model pay for importing it

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own classes for unreadable or invalid files
            raise UserError(f"{option} {path} is not a readable ONNX model "
                            f"({' '.join(str(error).split())[:200]})") from None

    @classmethod
    def open(cls, path: Path, option: str) -> OnnxPredictor:
        return cls(read_bundle(path, option), path, option)

    def run(self, crops: Tensor, features: bool = False) -> Outputs:
        probabilities, logits = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: crops.numpy()})
        return Outputs(torch.from_numpy(np.asarray(probabilities)), torch.from_numpy(np.asarray(logits)))
