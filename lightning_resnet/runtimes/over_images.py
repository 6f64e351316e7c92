"""The one loop that runs a trained model over many images: any :class:`~.base.Predictor`, images read in batches as
``predict`` reads them (in loader processes when asked), the outputs of every readable image kept in order.
``predict_onnx``, ``suggest``, ``pseudo_label``, the out-of-fold predictions of ``cross_validate``, the INT8 check of
``export`` and the feature cache of a frozen backbone all run it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data import ImageSamples
from ..data.loaders import LoaderSettings, prediction_loader
from .base import Predictor


@dataclass(frozen=True)
class Predictions:
    """What the model made of each readable image, row by row, with its key (its path, or what the data set gives);
    ``unreadable``: the images given that could not be read."""

    keys: tuple[Any, ...]
    probabilities: Tensor
    logits: Tensor
    """Divided by the model's temperature: their activation is the probabilities."""
    features: Tensor | None
    unreadable: tuple[Any, ...]


def predict_images(predictor: Predictor, images: Sequence[str] | Dataset, batch_size: int = 64,
                   num_workers: int = 0, features: bool = False) -> Predictions:
    """Run ``predictor`` over ``images``: paths, read through its view, or a data set of ``(crop, key)`` samples
    (one that gives None for an image it cannot read). With ``features``, the pooled features too."""
    dataset = images if isinstance(images, Dataset) else ImageSamples([(path, path) for path in images],
                                                                     predictor.view)
    loader = prediction_loader(dataset, LoaderSettings(batch_size, num_workers, seed=0))
    keys: list[Any] = []
    parts: dict[str, list[Tensor]] = {"probabilities": [], "logits": [], "features": []}
    for batch in loader:
        if batch is None:  # every image of the batch was unreadable
            continue
        crops, batch_keys = batch
        outputs = predictor.run(crops, features)
        keys.extend(batch_keys.tolist() if isinstance(batch_keys, Tensor) else batch_keys)
        parts["probabilities"].append(outputs.probabilities)
        parts["logits"].append(outputs.logits)
        if outputs.features is not None:
            parts["features"].append(outputs.features)
    width = len(predictor.class_names)
    read = set(keys) if not isinstance(images, Dataset) else set()
    unreadable = tuple(path for path in images if path not in read) if not isinstance(images, Dataset) else ()
    return Predictions(tuple(keys), _joined(parts["probabilities"], width), _joined(parts["logits"], width),
                       torch.cat(parts["features"]) if parts["features"] else None, unreadable)


def _joined(parts: list[Tensor], width: int) -> Tensor:
    return torch.cat(parts) if parts else torch.empty(0, width)
