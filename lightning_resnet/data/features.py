"""Cached backbone features of image files: the file ``model.cache_features`` writes, as the datasets read it.

One ``torch.save`` file per backbone, view and normalization (see
:mod:`~lightning_resnet.training.feature_cache`): ``paths`` (sorted), ``stamps`` (each file's size and
modification time when it was read) and ``features`` (a row per path). A loader worker loads it
memory-mapped, so the workers of a run share its pages instead of copying it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from .cache import write_atomically

Stamp = tuple[int, int]
"""A file's size and modification time (ns): a changed file is read again."""


def stamp(path: str) -> Stamp:
    status = os.stat(path)
    return status.st_size, status.st_mtime_ns


class CachedFeatures:
    """The features of a cache file, by image path."""

    def __init__(self, file: Path) -> None:
        self.file = file
        saved = torch.load(file, weights_only=True, mmap=True)
        self.paths: list[str] = saved["paths"]
        self.stamps: list[Stamp] = [tuple(s) for s in saved["stamps"]]
        self.features: Tensor = saved["features"]
        self.row_of = {path: row for row, path in enumerate(self.paths)}

    def __call__(self, path: str) -> Tensor:
        return self.features[self.row_of[path]].clone()


def save_features(file: Path, features: dict[str, tuple[Stamp, Tensor]]) -> None:
    """Write ``{path: (stamp, row)}`` to ``file`` (atomically: a reader never sees half of it)."""
    paths = sorted(features)
    saved = {"paths": paths, "stamps": [list(features[p][0]) for p in paths],
             "features": torch.stack([features[p][1] for p in paths])}
    write_atomically(file, lambda temporary: torch.save(saved, temporary))
