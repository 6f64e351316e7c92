"""A trained model, described once: :class:`ModelBundle`.

The architecture and its options, the classes, the preprocessing (how an image becomes the network's input), the
decision (the task, the temperature, the unsure threshold, each label's threshold) and where it came from (every data
option that decides the run's images and split, the run folder, the package versions), with the weights. A
checkpoint keeps the description under :data:`BUNDLE_KEY` beside its state dict; an export keeps it as the JSON beside
the exported file (:mod:`.exported`). :func:`~.read_bundle` reads either, and nothing else reads a trained model.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from ..data import EvaluationView, Geometry, ImageSource, Normalization, SourceOptions, eval_view, open_source
from ..errors import UserError
from ..models import ResNet, create_model
from ..tasks import Decision, Task, decision_from

BUNDLE_KEY = "model_bundle"
"""Where a checkpoint keeps its model's description."""
BUNDLE_VERSION = 1
"""The version of the description this code writes; it reads this one and the checkpoints and exports written
before there was a description (version 0)."""
RECORDED_PACKAGES = ("torch", "torchvision", "lightning", "timm", "onnxruntime")


@dataclass(frozen=True)
class Architecture:
    """The network: a registered backbone by name and its keyword options."""

    backbone: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        """The image channels the network takes."""
        return int(self.options.get("in_chans", 3))

    def as_dict(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "options": dict(self.options)}


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input: the evaluation view (the image fitted to the input size as
    ``geometry`` says: ``crop``, ``squish`` or ``pad``; ``channels``), then ``normalization`` of the ``uint8`` crop."""

    geometry: Geometry
    channels: int
    normalization: Normalization

    @property
    def view(self) -> EvaluationView:
        return eval_view(self.geometry, self.channels)

    def as_dict(self) -> dict[str, Any]:
        geometry = self.geometry
        return {"image_size": geometry.image_size, "crop_fraction": geometry.crop_fraction, "channels": self.channels,
                "resize": geometry.resize, "pad_fill": geometry.fill, "interpolation": "bilinear",
                "mean": list(self.normalization.mean), "std": list(self.normalization.std)}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> Preprocessing:
        """What :meth:`as_dict` wrote; a model from before ``resize`` was ``crop``ped."""
        geometry = Geometry.of(saved["image_size"], saved.get("resize", "crop"), float(saved["crop_fraction"]),
                               int(saved.get("pad_fill", 0)))
        return cls(geometry, int(saved["channels"]), Normalization(tuple(saved["mean"]), tuple(saved["std"])))


@dataclass(frozen=True)
class Provenance:
    """Where the model came from: the data module's and the model's options as the run was given them (the data
    options decide which images it trained and validated on: :meth:`ModelBundle.labelled_source`), its run folder
    and the versions of the packages it ran with."""

    data: Mapping[str, Any] = field(default_factory=dict)
    model: Mapping[str, Any] = field(default_factory=dict)
    run: str | None = None
    packages: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"data": dict(self.data), "model": dict(self.model), "run": self.run, "packages": dict(self.packages)}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> Provenance:
        return cls(dict(saved.get("data") or {}), dict(saved.get("model") or {}), saved.get("run"),
                   dict(saved.get("packages") or {}))


def package_versions() -> dict[str, str]:
    """The versions of :data:`RECORDED_PACKAGES` installed here."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class ModelBundle:
    """A trained model: see the module's docstring."""

    architecture: Architecture
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    decision: Decision
    provenance: Provenance = field(default_factory=Provenance)
    weights: Mapping[str, Tensor] = field(default_factory=dict, repr=False)
    """The network's state dict; empty for the description of an export, whose file holds the weights."""
    path: Path | None = None
    """The file it was read from."""
    export: Mapping[str, Any] = field(default_factory=dict)
    """What is particular to an exported file (its format, input, outputs, an INT8 check); empty for a checkpoint."""

    @property
    def task(self) -> Task:
        return self.decision.task

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def view(self) -> EvaluationView:
        """How the model reads an image, as ``predict`` does."""
        return self.preprocessing.view

    def network(self) -> ResNet:
        """The backbone and head with the trained weights, in eval mode (without normalization or temperature)."""
        if not self.weights:
            raise UserError(f"{self.path} describes an exported model: its weights are in the exported file, which "
                            "only its runtime reads; give the checkpoint (.ckpt) it was exported from")
        network = create_model(self.architecture.backbone, num_classes=self.num_classes,
                               **dict(self.architecture.options))
        network.load_state_dict(dict(self.weights), strict=True)
        return network.eval()

    def labelled_source(self) -> ImageSource:
        """The labelled images the model was trained and validated on, split exactly as its run split them: the
        run's own data options, every one that decides the images and the split."""
        return open_source(SourceOptions.from_data_options({**self.provenance.data, "class_names": self.classes}))

    def with_decision(self, decision: Decision) -> ModelBundle:
        return replace(self, decision=decision)

    def with_export(self, export: Mapping[str, Any]) -> ModelBundle:
        return replace(self, export=dict(export))

    def as_dict(self) -> dict[str, Any]:
        """The description (no weights), as plain data: what a checkpoint keeps under :data:`BUNDLE_KEY` and an
        export's JSON holds."""
        return {"bundle_version": BUNDLE_VERSION, "architecture": self.architecture.as_dict(),
                "classes": list(self.classes), "preprocessing": self.preprocessing.as_dict(),
                "decision": self.decision.as_dict(), "provenance": self.provenance.as_dict()}

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any], weights: Mapping[str, Tensor] | None = None,
                  path: Path | None = None) -> ModelBundle:
        """The description :meth:`as_dict` wrote; one line naming ``path`` when it is of a later version."""
        version = int(saved.get("bundle_version", 0))
        if version > BUNDLE_VERSION:
            raise UserError(f"{path} holds a model description of version {version}, written by a later version of "
                            f"lightning_resnet than this one (which reads up to {BUNDLE_VERSION}): upgrade it")
        classes = tuple(saved["classes"])
        architecture = saved["architecture"]
        return cls(Architecture(architecture["backbone"], dict(architecture.get("options") or {})), classes,
                   Preprocessing.from_dict(saved["preprocessing"]), decision_from(saved["decision"], len(classes)),
                   Provenance.from_dict(saved.get("provenance") or {}), dict(weights or {}), path)
