"""A trained model in PyTorch: the network of a checkpoint (or of a run in progress), wrapped as it ships
(:class:`ShippedClassifier`), on the CPU or a GPU."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..bundle import ModelBundle, read_bundle
from ..data import Normalization
from ..tasks import Task
from .base import Outputs, Predictor


class ShippedClassifier(nn.Module):
    """The network as it ships: ``uint8`` images in; the probabilities (the task's activation), the calibrated logits
    and the pooled features the classifier reads (what ``embed`` writes) out. What ``export`` writes in every
    format, and what the PyTorch runtime runs."""

    def __init__(self, network: nn.Module, normalization: Normalization, temperature: float, task: Task) -> None:
        super().__init__()
        self.network = network
        shift, scale = normalization.shift_and_scale()
        self.register_buffer("shift", shift.clone())
        self.register_buffer("scale", scale.clone())
        self.temperature = float(temperature)
        self.task = task

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features = self.network.forward_features((images.float() - self.shift) * self.scale)
        logits = self.network.forward_head(features) / self.temperature
        return self.task.probabilities(logits), logits, features

    @classmethod
    def of(cls, bundle: ModelBundle, network: nn.Module | None = None) -> ShippedClassifier:
        """``bundle``'s network (or ``network``, another with its architecture) as it ships, in eval mode."""
        decision = bundle.decision
        return cls(network if network is not None else bundle.network(), bundle.preprocessing.normalization,
                   decision.temperature, decision.task).eval()


class TorchPredictor(Predictor):
    """A checkpoint's network in PyTorch; or, given ``network``, a network in training read as ``bundle``
    describes (the feature cache's frozen backbone)."""

    def __init__(self, bundle: ModelBundle, network: nn.Module | None = None) -> None:
        super().__init__(bundle)
        self.shipped = ShippedClassifier.of(bundle, network)

    @classmethod
    def open(cls, path, option: str) -> TorchPredictor:
        return cls(read_bundle(path, option))

    @property
    def network(self) -> nn.Module:
        """The backbone and head, without normalization or temperature (what class activation maps look into)."""
        return self.shipped.network

    @property
    def device(self) -> torch.device:
        return self.shipped.shift.device

    @property
    def gives_features(self) -> bool:
        return True

    def to(self, device: torch.device | str) -> TorchPredictor:
        self.shipped.to(device)
        return self

    def run(self, crops: Tensor, features: bool = False) -> Outputs:
        with torch.inference_mode():
            probabilities, logits, pooled = self.shipped(crops.to(self.device))
        return Outputs(probabilities.cpu(), logits.cpu(), pooled.float().cpu() if features else None)

    def head(self, features: Tensor) -> Outputs:
        """The outputs of pooled ``features`` computed before (a feature cache's), through the classifier alone."""
        with torch.inference_mode():
            logits = self.network.forward_head(features.to(self.device)) / self.shipped.temperature
            return Outputs(self.shipped.task.probabilities(logits).cpu(), logits.cpu(), features)
