"""The description beside an exported model: ``<file>.json`` (``best.onnx.json``, ``best.int8.xml.json``), the
model's :class:`~.model_bundle.ModelBundle` description with what is particular to that file (``export``: its
format, input and outputs, and an INT8 model's check against the float one). Each exported file has its own, so that
two exports of one checkpoint never share one.

An export written before the description existed has ``<stem>.json`` beside it, in the form it had then; it is read
into the same bundle.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import Geometry, Normalization
from ..errors import UserError
from ..tasks import decision_from
from .model_bundle import Architecture, ModelBundle, Preprocessing

EXPORT_KEY = "export"
"""The part of an export's description that is the file's own."""
EXPORT_COMMAND = "python -m lightning_resnet export --ckpt_path <ckpt>"


def description_file(model: Path) -> Path:
    """Where the description of the exported ``model`` is: ``<file>.json``."""
    return model.with_name(model.name + ".json")


def write_description(model: Path, bundle: ModelBundle, export: Mapping[str, Any]) -> Path:
    """Write the description of the exported ``model``: ``bundle``'s and the file's own ``export`` part."""
    path = description_file(model)
    path.write_text(json.dumps({**bundle.as_dict(), EXPORT_KEY: dict(export)}, indent=2) + "\n")
    return path


def read_exported(model: Path, option: str = "--model") -> ModelBundle:
    """The description of the exported ``model`` (its weights are in the file, which its runtime reads); one line
    naming the file when it is missing or is not what export writes."""
    path = description_file(model)
    if not path.is_file() and model.with_suffix(".json").is_file():
        path = model.with_suffix(".json")  # written before each export had its own
    if not path.is_file():
        raise UserError(f"{option} {model}: {description_file(model)} is missing: export writes it beside the model, "
                        f"with its classes and preprocessing ({EXPORT_COMMAND})")
    try:
        saved = json.loads(path.read_text())
        bundle = (ModelBundle.from_dict(saved, path=model) if "bundle_version" in saved else
                  _written_before_the_bundle(saved, model))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{path} is not the JSON that export writes beside the model "
                        f"({type(error).__name__}: {error}); export again ({EXPORT_COMMAND})") from None
    return bundle.with_export(saved.get(EXPORT_KEY) or {})


def _written_before_the_bundle(saved: Mapping[str, Any], model: Path) -> ModelBundle:
    """An export's JSON of the versions before the description: its input settings and decision at the top."""
    settings = saved["input"]
    classes = tuple(saved["class_names"])
    channels = int(settings["channels"])
    normalization = Normalization(tuple(settings.get("mean", (0.0,) * channels)),
                                  tuple(settings.get("std", (1.0,) * channels)))
    preprocessing = Preprocessing(Geometry.of(int(settings["image_size"]), "crop", float(settings["crop_fraction"])),
                                  channels, normalization)
    decision = decision_from({key: saved.get(key) for key in ("task", "temperature", "reject_below",
                                                              "label_thresholds") if key in saved}, len(classes))
    architecture = Architecture(saved.get("backbone", "unknown"), {"in_chans": channels})
    return ModelBundle(architecture, classes, preprocessing, decision, path=model)
