"""An exported model as ``predict_onnx``, ``serve`` and ``demo`` run it: the ``.onnx`` (ONNX Runtime) or ``.xml``
(OpenVINO, :mod:`.runtimes`) and the JSON beside it, read once; images in, probabilities out, reading each image as
``predict`` does (the same decoding, resize and center crop)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data import eval_view
from ..errors import UserError
from .runtimes import RUNTIMES, open_runtime
from .unsure import threshold_of

EXPORT_COMMAND = "python -m lightning_resnet export --ckpt_path <ckpt>"


class ExportedClassifier:
    """An exported model with its metadata JSON; :meth:`classify` runs a batch of crops."""

    def __init__(self, model: Path, option: str = "--model") -> None:
        metadata_path = model.with_suffix(".json")
        if not model.is_file():
            raise UserError(f"{option} {model} does not exist: expected an exported model "
                            f"({' or '.join(RUNTIMES)}) with its .json beside it ({EXPORT_COMMAND})")
        if not metadata_path.is_file():
            raise UserError(f"{option} {model}: {metadata_path} is missing: export writes it beside the model, with "
                            f"its classes and preprocessing ({EXPORT_COMMAND})")
        try:
            metadata = json.loads(metadata_path.read_text())
            settings = metadata["input"]
            self.class_names: list[str] = list(metadata["class_names"])
            self.view = eval_view(settings["image_size"], settings["crop_fraction"], settings["channels"])
            self.temperature = float(metadata["temperature"])
            self.reject_below = threshold_of(metadata.get("reject_below"))  # exports before the threshold: none
            thresholds = metadata.get("label_thresholds")  # a multi-label model's (exports before them: none)
            self.label_thresholds: tuple[float, ...] | None = tuple(map(float, thresholds)) if thresholds else None
        except (ValueError, KeyError, TypeError) as error:
            raise UserError(f"{metadata_path} is not the JSON that export writes beside the model "
                            f"({type(error).__name__}: {error}); export again ({EXPORT_COMMAND})") from None
        self.metadata = metadata
        self.runtime = open_runtime(model, option)

    def classify(self, images: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The probabilities and calibrated logits of ``uint8`` crops as :attr:`view` makes them (a row per image)."""
        probabilities, logits = self.runtime(torch.stack(list(images)).numpy())
        return torch.from_numpy(np.asarray(probabilities)), torch.from_numpy(np.asarray(logits))
