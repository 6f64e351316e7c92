"""An exported ``.xml`` (its weights in the ``.bin`` beside it) in OpenVINO, on the CPU (``export --format
openvino``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..bundle import ModelBundle, read_bundle
from ..errors import UserError
from .base import Outputs, Predictor
from .onnx_runtime import INPUT_NAME, OUTPUT_NAMES, without_features


class OpenVinoPredictor(Predictor):
    """Compiled for the CPU in 32-bit float: OpenVINO would otherwise run a float model in bfloat16 on a CPU that has
    it, and answer other than the checkpoint does."""

    def __init__(self, bundle: ModelBundle, path: Path, option: str = "--model") -> None:
        super().__init__(bundle)
        import openvino  # only the commands that run an .xml pay for importing it

        try:
            self.compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        except Exception as error:  # OpenVINO raises RuntimeError for unreadable files and missing weights
            raise UserError(f"{option} {path} is not a readable OpenVINO model with its .bin beside it "
                            f"({' '.join(str(error).split())[:200]})") from None
        self.path, self.option = path, option
        names = {name for output in self.compiled.outputs for name in output.get_names()}
        self.outputs = [self.compiled.output(name) for name in OUTPUT_NAMES if name in names]

    @classmethod
    def open(cls, path: Path, option: str) -> OpenVinoPredictor:
        return cls(read_bundle(path, option), path, option)

    @property
    def gives_features(self) -> bool:
        return len(self.outputs) == len(OUTPUT_NAMES)

    def run(self, crops: Tensor, features: bool = False) -> Outputs:
        if features and not self.gives_features:
            raise without_features(self.path, self.option)
        answered = self.compiled({INPUT_NAME: crops.numpy()})
        probabilities, logits, *pooled = (torch.from_numpy(np.asarray(answered[output]))
                                          for output in self.outputs[: 3 if features else 2])
        return Outputs(probabilities, logits, pooled[0] if pooled else None)
