"""Images like an image: the pooled features a trained model gives every image of a folder (``embed``), kept in one
``.npz`` file, and the nearest of them to a query by cosine distance (``similar``, ``serve``'s ``/similar``).

The file is numpy's: ``saved = numpy.load("embeddings.npz")``, then ``saved["features"]`` (one float32 row per image)
and ``saved["paths"]`` (its image); ``saved["model"]`` names the model that computed them, whose features a query
must be compared in. The search is FAISS's exact inner-product index over the rows scaled to unit length (cosine
similarity): exact, so an image's own copy always comes first; measured against usearch and scikit-learn in
benchmarks/README.md, "Similar images".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError, check

EMBEDDINGS_SUFFIX = ".embeddings.npz"


@dataclass(frozen=True)
class Embeddings:
    """Every readable image's pooled features (a row each, float32), the model that computed them (its file), and the
    images of the folder that could not be read."""

    paths: tuple[str, ...]
    features: np.ndarray
    model: str
    unreadable: tuple[str, ...] = ()

    def save(self, file: Path) -> Path:
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file, "wb") as handle:  # savez appends .npz to a name given without it: the handle keeps the name
            np.savez(handle, paths=np.array(self.paths, dtype=str), features=self.features.astype(np.float32),
                     model=np.array(self.model), unreadable=np.array(self.unreadable, dtype=str))
        return file

    @classmethod
    def load(cls, file: Path, option: str = "--embeddings") -> Embeddings:
        """The embeddings ``embed`` wrote to ``file``, or one line naming ``option``."""
        check(file.is_file(), f"{option} {file} does not exist: write it with embed first")
        try:
            with np.load(file, allow_pickle=False) as saved:
                paths, features, model = saved["paths"], saved["features"], str(saved["model"])
                unreadable = saved["unreadable"] if "unreadable" in saved else np.array([], dtype=str)
        except (OSError, ValueError, KeyError) as error:
            raise UserError(f"{option} {file} is not a file of embed's (a .npz with paths, features and model: "
                            f"{' '.join(str(error).split())[:120]})") from None
        check(features.ndim == 2 and len(features) == len(paths) and len(paths) > 0,
              f"{option} {file} holds {len(paths)} paths and features of shape {features.shape}: expected a row "
              "per path, and at least one")
        return cls(tuple(paths.tolist()), features.astype(np.float32, copy=False), model, tuple(unreadable.tolist()))


@dataclass(frozen=True)
class Neighbour:
    """One of a query's nearest images: its rank (1 is the nearest), path and cosine distance (0: the same
    direction, 1: unrelated, 2: opposite)."""

    rank: int
    path: str
    distance: float


class NearestImages:
    """An exact cosine-distance index of ``embeddings``' rows (FAISS's flat inner-product index)."""

    def __init__(self, embeddings: Embeddings) -> None:
        import faiss  # only the commands that search pay for importing it

        self.paths = embeddings.paths
        self.index = faiss.IndexFlatIP(embeddings.features.shape[1])
        self.index.add(unit_rows(embeddings.features))

    @property
    def dimensions(self) -> int:
        return self.index.d

    def search(self, queries: np.ndarray, k: int) -> list[list[Neighbour]]:
        """The ``k`` nearest images of each row of ``queries`` (fewer when the index holds fewer), nearest first."""
        k = min(k, len(self.paths))
        similarities, rows = self.index.search(unit_rows(queries), k)
        return [[Neighbour(rank + 1, self.paths[row], float(max(0.0, 1.0 - similarity)))
                 for rank, (similarity, row) in enumerate(zip(found, found_rows)) if row >= 0]
                for found, found_rows in zip(similarities, rows)]


def unit_rows(features: np.ndarray) -> np.ndarray:
    """``features`` (rows) scaled to unit length, float32 and contiguous as FAISS takes them; an all-zero row stays
    zero."""
    rows = np.ascontiguousarray(features, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.ascontiguousarray(rows / np.maximum(norms, 1e-12))


def embeddings_file(model: Path) -> Path:
    """Where ``embed`` writes by default: ``<model file>.embeddings.npz`` beside the model."""
    return model.with_name(model.name + EMBEDDINGS_SUFFIX)
