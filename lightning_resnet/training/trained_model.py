"""A checkpoint of this project as a model ready to use, read in one place: the network with its trained weights,
the classes, how its images are read (size, crop, channels, normalization), the calibration temperature and the
unsure threshold, and the options it was trained with.

``--ckpt_path`` (the options a checkpoint decides), ``export``, ``serve``, ``demo`` and the fold models of
``cross_validate`` all read a checkpoint through :meth:`TrainedModel.read`; nothing else opens one for use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..data import (
    DIGITS_DATA,
    CenterView,
    ImageFolderDataModule,
    ImageSource,
    Normalization,
    SourceOptions,
    SplitRule,
    eval_view,
    open_source,
)
from ..data.normalization import chosen_normalization
from ..errors import UserError, check
from ..models import ResNet, create_model
from ..models.weights import strip_prefixes
from ..tasks import MULTICLASS, MULTILABEL, Task
from .checkpoints import read_checkpoint

NETWORK_PREFIX = "model."
"""Where the module keeps its network in a checkpoint's state dict (``ImageClassifier.model``)."""


@dataclass(frozen=True)
class TrainedModel:
    """What a checkpoint holds, as a model is used: see the module's docstring."""

    path: Path
    backbone: str
    backbone_options: dict[str, Any]
    class_names: tuple[str, ...]
    image_size: int
    crop_fraction: float
    channels: int
    normalization: Normalization
    temperature: float
    reject_below: float
    """The energy score below which a prediction is unsure (``-inf``: nothing is)."""
    task: Task
    label_thresholds: tuple[float, ...] | None
    """A multi-label model's: each label's probability from which it is predicted; None for one class per image."""
    model_options: dict[str, Any] = field(repr=False)
    """The model's options as it was trained (``model.*``)."""
    data_options: dict[str, Any] = field(repr=False)
    """The data module's options as it was trained (``data.*``)."""
    weights: dict[str, Tensor] = field(repr=False)
    """The network's state dict."""

    @classmethod
    def read(cls, path: str | Path, option: str = "--ckpt_path") -> TrainedModel:
        """The checkpoint at ``path``; one line naming ``option`` when it is no checkpoint of this project."""
        checkpoint = read_checkpoint(path, option)
        model = dict(checkpoint.get("hyper_parameters") or {})
        model.pop("_instantiator", None)
        data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
        state = checkpoint.get("state_dict") or {}
        if "backbone" not in model or not any(key.startswith(NETWORK_PREFIX) for key in state):
            raise UserError(f"{option} {path} is a checkpoint, but not of this project's model (no model.backbone "
                            "or network weights in it)")
        options = dict(model.get("backbone_options") or {})
        channels = int(options.get("in_chans", 3))
        names = checkpoint.get("class_names") or model.get("class_names") or [
            str(index) for index in range(int(model.get("num_classes", 0)))]
        saved = checkpoint.get(ImageFolderDataModule.__qualname__) or {}
        if "mean" in saved:
            normalization = Normalization(tuple(saved["mean"]), tuple(saved["std"]))
        elif data.get("normalize") != "auto":
            weights = data.get("weights_normalization")
            normalization = chosen_normalization(data.get("normalize"), channels, weights and Normalization(
                tuple(weights[0]), tuple(weights[1])))
        else:
            raise UserError(f"{option} {path} holds no normalization statistics (data.normalize auto, measured on "
                            "the training split): it was not written by fit")
        reject_below = state.get("reject_below")
        thresholds = state.get("label_thresholds")
        return cls(
            path=Path(path),
            backbone=model["backbone"],
            backbone_options=options,
            class_names=tuple(names),
            image_size=int(data.get("image_size", 224)),
            crop_fraction=float(data.get("crop_fraction", 0.875)),
            channels=channels,
            normalization=normalization,
            temperature=float(state["temperature"]) if "temperature" in state else 1.0,
            reject_below=float(reject_below) if reject_below is not None else -math.inf,
            task=model.get("task", MULTICLASS),
            label_thresholds=tuple(thresholds.tolist()) if thresholds is not None else None,
            model_options=model,
            data_options=data,
            weights=strip_prefixes({key[len(NETWORK_PREFIX):]: value for key, value in state.items()
                                    if key.startswith(NETWORK_PREFIX)}),
        )

    @property
    def multilabel(self) -> bool:
        return self.task == MULTILABEL

    def refuse_label_sets(self, command: str) -> None:
        """One line when this is a multi-label model, which ``command`` does not take yet."""
        check(not self.multilabel, f"{command} does not take a multi-label model yet: {self.path} gives each image "
                                   "a set of labels (fit, validate, test, predict, export, predict_onnx, serve and "
                                   "demo take it)")

    @property
    def view(self) -> CenterView:
        """How the model reads an image, as ``predict`` does: resize, then center-crop ``image_size``."""
        return eval_view(self.image_size, self.crop_fraction, self.channels)

    def network(self) -> ResNet:
        """The backbone and head with the trained weights, in eval mode (without normalization or temperature)."""
        network = create_model(self.backbone, num_classes=len(self.class_names), **self.backbone_options)
        network.load_state_dict(self.weights, strict=True)
        return network.eval()

    def labelled_source(self) -> ImageSource:
        """The labelled images the model was trained and validated on, split as its run split them."""
        options = self.data_options
        rule = SplitRule(options.get("val_fraction", 0.2), options.get("seed", 42), options.get("num_folds"),
                         options.get("fold", 0))
        return open_source(SourceOptions(options.get("data_dir", DIGITS_DATA), rule,
                                         class_names=self.class_names, labels=options.get("labels")))
