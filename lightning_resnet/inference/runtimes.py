"""The programs that run an exported model on the CPU: ONNX Runtime for a ``.onnx``, OpenVINO for a ``.xml``
(``export --format openvino``). Each takes a batch of ``uint8`` crops and returns the probabilities and the
calibrated logits, as the exported program computes them; each is imported only by the command that runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import UserError
from .export import INPUT_NAME, OUTPUT_NAMES

Runtime = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""A compiled exported model: ``uint8`` crops (NCHW) in; probabilities and logits out."""
RUNTIMES = {".onnx": "ONNX Runtime", ".xml": "OpenVINO"}
"""Each exported file's suffix, and what runs it."""


def onnx_runtime(model: Path, option: str) -> Runtime:
    import onnxruntime  # only the commands that run an exported model pay for importing it

    try:
        session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own classes for unreadable or invalid files
        raise UserError(f"{option} {model} is not a readable ONNX model ({' '.join(str(error).split())[:200]})") \
            from None

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities, logits = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
        return np.asarray(probabilities), np.asarray(logits)

    return run


def openvino_runtime(model: Path, option: str) -> Runtime:
    """The ``.xml`` (its weights in the ``.bin`` beside it) compiled for the CPU in 32-bit float: OpenVINO would
    otherwise run a float model in bfloat16 on a CPU that has it, and answer other than the checkpoint does."""
    import openvino

    try:
        compiled = openvino.Core().compile_model(str(model), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception as error:  # OpenVINO raises RuntimeError for unreadable files and missing weights
        raise UserError(f"{option} {model} is not a readable OpenVINO model with its .bin beside it "
                        f"({' '.join(str(error).split())[:200]})") from None
    outputs = [compiled.output(name) for name in OUTPUT_NAMES]

    def run(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        answered = compiled({INPUT_NAME: images})
        return tuple(np.asarray(answered[output]) for output in outputs)  # type: ignore[return-value]

    return run


def open_runtime(model: Path, option: str = "--model") -> Runtime:
    """The runtime of ``model`` by its suffix (:data:`RUNTIMES`); one line for any other file."""
    opener = {".onnx": onnx_runtime, ".xml": openvino_runtime}.get(model.suffix)
    if opener is None:
        raise UserError(f"{option} {model}: expected an exported model ({', '.join(RUNTIMES)})")
    return opener(model, option)
