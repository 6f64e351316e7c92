"""A trained model as ``serve``, ``demo`` and ``predict_onnx`` run it: a checkpoint (its network in torch, wrapped
as ``export`` ships it) or an exported ``.onnx`` or ``.xml`` with its JSON (:mod:`.exported`).

Both read an image as ``predict`` does (the checkpoint's evaluation view: the same decoding,
resize and center crop), take the ``uint8`` crops and return calibrated probabilities, so that
they answer as ``predict`` does; both carry the metadata ``export`` writes (classes, input size,
normalization, temperature, unsure threshold).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data import CenterView, Normalization
from ..errors import UserError
from ..training.trained_model import TrainedModel
from .export import shipped, shipped_metadata
from .exported import ExportedClassifier
from .runtimes import RUNTIMES


class CheckpointClassifier:
    """A checkpoint of this project, run in torch as it ships; :meth:`classify` runs a batch of crops."""

    def __init__(self, path: Path, option: str = "--model") -> None:
        trained = TrainedModel.read(path, option)
        self.shipped = shipped(trained)
        self.metadata = shipped_metadata(trained)
        self.class_names: list[str] = list(trained.class_names)
        self.view: CenterView = trained.view
        self.temperature = trained.temperature
        self.reject_below = trained.reject_below
        self.label_thresholds = trained.label_thresholds
        self.normalization: Normalization = trained.normalization

    @property
    def network(self) -> nn.Module:
        """The backbone and head, without normalization or temperature (what class activation maps look into)."""
        return self.shipped.network

    def to(self, device: torch.device | str) -> CheckpointClassifier:
        self.shipped.to(device)
        return self

    def classify(self, images: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The probabilities and calibrated logits of ``uint8`` crops as :attr:`view` makes them (a row per image)."""
        device = self.shipped.shift.device
        with torch.inference_mode():
            probabilities, logits = self.shipped(torch.stack(list(images)).to(device))
        return probabilities.cpu(), logits.cpu()

    def embed(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The probabilities and the penultimate layer's pooled features (``network.num_features`` wide) of crops."""
        device = self.shipped.shift.device
        with torch.inference_mode():
            probabilities, _, features = self.shipped.embed(images.to(device))
        return probabilities.cpu(), features.cpu()


ShippedModel = CheckpointClassifier | ExportedClassifier
"""Either form of a trained model; both have ``class_names``, ``view``, ``temperature``, ``reject_below``,
``metadata`` and ``classify``."""


def load_classifier(path: Path, option: str = "--model") -> ShippedModel:
    """The model at ``path``: an exported ``.onnx`` or ``.xml`` (with its ``.json``) or a checkpoint; one line
    when it is neither."""
    if not path.is_file():
        raise UserError(f"{option} {path} does not exist: expected a checkpoint (.ckpt) of this project, or an "
                        f"exported model ({' or '.join(RUNTIMES)}) with its .json beside it")
    if path.suffix in RUNTIMES:
        return ExportedClassifier(path, option)
    return CheckpointClassifier(path, option)


def describe(model: ShippedModel, name: str, version: str) -> dict[str, Any]:
    """The model's metadata with its ``name`` and ``version``: what ``serve`` tells at ``/info``."""
    return {"name": name, "version": version, **model.metadata}


def identity(path: Path) -> tuple[str, str]:
    """The model's default name and version: the experiment it was trained in (``logs/<experiment>/version_N/
    checkpoints/``), else the file's name; and the first 12 hex digits of the file's SHA-256, which changes
    exactly when the file does."""
    parts = path.resolve().parts
    trained_in = len(parts) >= 4 and parts[-2] == "checkpoints" and parts[-3].startswith("version_")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return (parts[-4] if trained_in else path.stem), digest.hexdigest()[:12]
