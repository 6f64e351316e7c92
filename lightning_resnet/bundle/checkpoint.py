"""A trained model in a checkpoint of ``fit``: its description under :data:`~.model_bundle.BUNDLE_KEY`, its weights
in the state dict (the module's network, ``model.*``).

A checkpoint written before the description existed is read from what it had instead (the model's and the data
module's hyper-parameters, the data module's state, the calibration's tensors in the state dict), into the same
:class:`~.model_bundle.ModelBundle`.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..data import Geometry, Normalization
from ..data.normalization import chosen_normalization
from ..errors import UserError
from ..models import would_run_code
from ..models.weights import strip_prefixes
from ..tasks import MULTICLASS, Decision, decision_from
from .model_bundle import BUNDLE_KEY, Architecture, ModelBundle, Preprocessing, Provenance

NETWORK_PREFIX = "model."
"""Where the module keeps its network in a checkpoint's state dict (``ImageClassifier.model``)."""
DATA_STATE = "ImageFolderDataModule"
"""Where Lightning keeps the data module's state (its measured normalization) in a checkpoint."""
DECISION_TENSORS = ("temperature", "reject_below", "label_thresholds")
"""The decision as checkpoints kept it in their state dicts before the description existed."""


def read_checkpoint(path: str | Path, option: str = "--ckpt_path") -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors on the CPU); one line naming ``option`` when it is no checkpoint."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        if isinstance(error, pickle.UnpicklingError) and would_run_code(error):
            raise  # refused by weights_only=True: the command line says so
        if isinstance(error, FileNotFoundError):
            raise UserError(f"{option} {path} does not exist: expected a checkpoint (.ckpt) of this project") from None
        if isinstance(error, IsADirectoryError):
            raise UserError(f"{option} {path} is a folder: expected a checkpoint file (.ckpt) of this project") \
                from None
        raise UserError(f"{option} {path} is not a checkpoint: {what_the_file_is(Path(path))}") from None


def what_the_file_is(path: Path) -> str:
    """What a file that torch could not load looks like, in words."""
    with open(path, "rb") as handle:
        start = handle.read(4096)
    if not start:
        return "the file is empty"
    if start.startswith(b"PK\x03\x04"):
        return "a zip archive torch could not read whole (truncated or damaged?)"
    try:
        start.decode("utf-8")
    except UnicodeDecodeError:
        return "not a file torch.save wrote (truncated or damaged?)"
    return "it is a text file, not one torch.save wrote"


def bundle_of_checkpoint(checkpoint: Mapping[str, Any], path: Path, option: str = "--ckpt_path") -> ModelBundle:
    """The trained model of a checkpoint of ``fit`` (read with :func:`read_checkpoint`); one line naming ``option``
    when it is a checkpoint of something else."""
    model = dict(checkpoint.get("hyper_parameters") or {})
    state = checkpoint.get("state_dict") or {}
    weights = strip_prefixes({key[len(NETWORK_PREFIX):]: value for key, value in state.items()
                              if key.startswith(NETWORK_PREFIX)})
    if of_pretraining(checkpoint):
        raise UserError(f"{option} {path} is a checkpoint of pretrain (a backbone taught without labels, no "
                        "classifier); this needs a checkpoint of fit: fine-tune one from it with fit "
                        "--model.pretrained <its run folder>/backbone.safetensors")
    if "backbone" not in model or not weights:
        raise UserError(f"{option} {path} is a checkpoint, but not of this project's classifier (no model.backbone "
                        "or network weights in it): expected a checkpoint of fit")
    if "architecture" in checkpoint.get(BUNDLE_KEY, {}):
        return ModelBundle.from_dict(checkpoint[BUNDLE_KEY], weights, path)
    return _written_before_the_bundle(checkpoint, model, weights, path, option)


def of_pretraining(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a checkpoint is one ``pretrain`` wrote (a backbone and its self-supervised method, no classifier)."""
    model = checkpoint.get("hyper_parameters") or {}
    return "method" in model and "backbone" in model


def decision_in(checkpoint: Mapping[str, Any], num_classes: int) -> Decision:
    """The decision a checkpoint holds (the model's task with nothing fitted when it holds none)."""
    if BUNDLE_KEY in checkpoint:
        return decision_from(checkpoint[BUNDLE_KEY]["decision"], num_classes)
    model = checkpoint.get("hyper_parameters") or {}
    return decision_from(_decision_tensors(checkpoint.get("state_dict") or {}, model.get("task", MULTICLASS)),
                         num_classes)


def without_decision_tensors(state: dict[str, Tensor]) -> None:
    """Take the decision's tensors of a checkpoint written before the description out of its state dict, which the
    model's then matches."""
    for key in DECISION_TENSORS:
        state.pop(key, None)


def set_decision(checkpoint: dict[str, Any], decision: Decision) -> None:
    """Write ``decision`` into a checkpoint's description (what calibration does at the end of ``fit``); a checkpoint
    written without this project's data module, which has no description, keeps the decision alone."""
    checkpoint[BUNDLE_KEY] = {**checkpoint.get(BUNDLE_KEY, {}), "decision": decision.as_dict()}


def _decision_tensors(state: Mapping[str, Tensor], task: str) -> dict[str, Any]:
    reject_below = state.get("reject_below")
    thresholds = state.get("label_thresholds")
    return {"task": task,
            "temperature": float(state["temperature"]) if "temperature" in state else 1.0,
            "reject_below": float(reject_below) if reject_below is not None and math.isfinite(reject_below) else None,
            "label_thresholds": thresholds.tolist() if thresholds is not None else None}


def _written_before_the_bundle(checkpoint: Mapping[str, Any], model: dict[str, Any], weights: dict[str, Tensor],
                               path: Path, option: str) -> ModelBundle:
    """A checkpoint of the versions before the description: the same facts, where they were kept then."""
    model.pop("_instantiator", None)
    data = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    data.pop("_instantiator", None)
    options = dict(model.get("backbone_options") or {})
    architecture = Architecture(model["backbone"], options)
    names = checkpoint.get("class_names") or model.get("class_names") or [
        str(index) for index in range(int(model.get("num_classes", 0)))]
    saved = checkpoint.get(DATA_STATE) or {}
    if "mean" in saved:
        normalization = Normalization(tuple(saved["mean"]), tuple(saved["std"]))
    elif data.get("normalize") != "auto":
        given = data.get("weights_normalization")
        normalization = chosen_normalization(data.get("normalize"), architecture.channels, given and Normalization(
            tuple(given[0]), tuple(given[1])))
    else:
        raise UserError(f"{option} {path} holds no normalization statistics (data.normalize auto, measured on "
                        "the training split): it was not written by fit")
    geometry = Geometry.of(data.get("image_size", 224), data.get("resize") or "crop",
                           float(data.get("crop_fraction", 0.875)), int(data.get("pad_fill", 0)))
    preprocessing = Preprocessing(geometry, architecture.channels, normalization)
    decision = decision_in(checkpoint, len(names))
    return ModelBundle(architecture, tuple(names), preprocessing, decision, Provenance(data, model), weights, path)
