"""A trained model's one home: :class:`~.model_bundle.ModelBundle`, its description and weights, and
:func:`read_bundle`, the one reader of a trained model, a checkpoint of ``fit`` (:mod:`.checkpoint`) or an export
(:mod:`.exported`) alike.

``model_bundle`` (the description: architecture, classes, preprocessing, decision, provenance) <- ``checkpoint``
(where a checkpoint keeps it, and the checkpoints written before it) and ``exported`` (the JSON beside an export).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .checkpoint import bundle_of_checkpoint, read_checkpoint
from .exported import description_file, read_exported, write_description
from .model_bundle import BUNDLE_KEY, Architecture, ModelBundle, Preprocessing, Provenance, package_versions

EXPORTED_SUFFIXES = (".onnx", ".xml", ".pt2")
"""The files ``export`` writes, each with its description beside it."""


def read_bundle(path: str | Path, option: str = "--ckpt_path") -> ModelBundle:
    """The trained model at ``path``: an exported file (its description, the weights staying in the file) or a
    checkpoint of ``fit``; one line naming ``option`` when it is neither."""
    path = Path(path).expanduser()
    if path.suffix in EXPORTED_SUFFIXES:
        if not path.is_file():
            raise UserError(f"{option} {path} does not exist: expected an exported model with its description "
                            f"{description_file(path).name} beside it, or a checkpoint (.ckpt) of this project")
        return read_exported(path, option)
    return bundle_of_checkpoint(read_checkpoint(path, option), path, option)


__all__ = [
    "BUNDLE_KEY",
    "EXPORTED_SUFFIXES",
    "Architecture",
    "ModelBundle",
    "Preprocessing",
    "Provenance",
    "description_file",
    "package_versions",
    "read_bundle",
    "read_checkpoint",
    "write_description",
]
