"""A trained model looking at many images at once: each readable image's features (the pooled vector its classifier
reads) and calibrated logits, read as ``predict`` reads them. What ``pseudo_label`` and ``suggest`` decide from."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import ImageSamples
from ..data.loaders import LoaderSettings, prediction_loader
from ..training.trained_model import TrainedModel


@dataclass(frozen=True)
class Looked:
    """What the model made of each readable image of ``paths``, row by row; ``unreadable``: the others."""

    paths: tuple[str, ...]
    features: Tensor
    calibrated_logits: Tensor
    """The logits divided by the model's temperature: their softmax is the calibrated probability."""
    unreadable: tuple[str, ...]

    @property
    def probabilities(self) -> Tensor:
        return self.calibrated_logits.softmax(dim=1)


@torch.no_grad()
def look_at(trained: TrainedModel, paths: list[str], batch_size: int = 64, num_workers: int = 0) -> Looked:
    """Read ``paths`` with the model's view (in ``num_workers`` loader processes) and run its network on them."""
    network = trained.network()
    samples = ImageSamples([(path, path) for path in paths], trained.view)
    loader = prediction_loader(samples, LoaderSettings(batch_size, num_workers, seed=0))
    seen, features, logits = [], [], []
    for batch in loader:
        if batch is None:
            continue
        images, names = batch
        pooled = network.forward_features(trained.normalization(images))
        seen.extend(names)
        features.append(pooled)
        logits.append(network.forward_head(pooled) / trained.temperature)
    read = set(seen)
    width = network.num_features
    return Looked(tuple(seen), torch.cat(features) if features else torch.empty(0, width),
                  torch.cat(logits) if logits else torch.empty(0, len(trained.class_names)),
                  tuple(path for path in paths if path not in read))
