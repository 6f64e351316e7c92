"""The model a server shares: which file, under what name and version, and how its answers read
(:class:`ServedModel`), loaded in its runtime (:func:`load_served`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import check
from ..runtimes import Predictor, open_predictor
from ..tasks import Decision


@dataclass(frozen=True)
class ServedModel:
    """What the service says of its model in every answer, and how it reads it: ``top_k`` classes, and the unsure
    threshold ``reject_below`` when it is not the model's own (None)."""

    path: Path
    name: str
    version: str
    top_k: int
    reject_below: float | None = None

    def decision(self, model: Predictor) -> Decision:
        """The decision the answers are given by: the model's, with its unsure threshold as asked."""
        return model.bundle.decision.with_reject_below(self.reject_below)

    def describe(self, model: Predictor) -> dict[str, Any]:
        """What ``/info`` tells: the name, the version and the model's description (with its decision as served)."""
        return {"name": self.name, "version": self.version,
                **model.bundle.as_dict(), "decision": self.decision(model).as_dict(),
                **({"export": dict(model.bundle.export)} if model.bundle.export else {})}

    def answer(self, said: Any) -> dict[str, Any]:
        """The JSON answer to one image: the verdict's, with the model's name and version."""
        return {**said.as_json(), "model": {"name": self.name, "version": self.version}}


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


def load_served(path: Path, name: str | None, version: str | None, top_k: int,
                reject_below: float | None) -> tuple[ServedModel, Predictor]:
    """The model at ``path`` in its runtime (one line when it cannot be read), and how the service shares it."""
    check(top_k >= 1, f"--top_k must be at least 1, got {top_k}")
    check(path.is_file(), f"--model {path} does not exist: expected a checkpoint (.ckpt) of this project, or an "
                          "exported model with its description (.json) beside it")
    model = open_predictor(path)
    default_name, default_version = identity(path)
    return ServedModel(path, name or default_name, version or default_version, top_k, reject_below), model
