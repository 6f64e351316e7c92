"""What every runtime of a trained model answers to: :class:`Predictor`, ``uint8`` crops in (as the model's view
cuts them), :class:`Outputs` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..bundle import ModelBundle
from ..data import EvaluationView


@dataclass(frozen=True)
class Outputs:
    """What a model makes of a batch, a row per image: the probabilities of its answers, the logits divided by the
    temperature (whose activation the probabilities are), and, when asked, the pooled features its classifier
    reads."""

    probabilities: Tensor
    logits: Tensor
    features: Tensor | None = None


class Predictor(ABC):
    """A trained model in one runtime. Every runtime reads an image as ``predict`` does (the bundle's view: the same
    decoding, resize and center crop) and answers as the checkpoint does: the normalization, the temperature and the
    activation are the bundle's."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    @property
    def view(self) -> EvaluationView:
        return self.bundle.view

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.bundle.classes

    def to(self, device: torch.device | str) -> Predictor:
        """Where the model runs; a runtime that runs on the CPU only stays there."""
        return self

    @property
    def network(self) -> nn.Module | None:
        """The backbone and head in PyTorch, without normalization or temperature (what class activation maps look
        into); None where the runtime has no layers to look into."""
        return None

    @property
    def gives_features(self) -> bool:
        """Whether :meth:`run` can give the pooled features."""
        return False

    @abstractmethod
    def run(self, crops: Tensor, features: bool = False) -> Outputs:
        """The outputs of a batch of ``uint8`` crops (N, C, H, W); with ``features``, the pooled features too."""
