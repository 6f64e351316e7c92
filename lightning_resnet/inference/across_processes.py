"""Values that every training process holds a share of, joined (DDP); the identity in one process."""

from __future__ import annotations

import math

import torch
from lightning.pytorch import Trainer
from torch import Tensor


def gather(trainer: Trainer, values: Tensor) -> Tensor:
    """The 1-d ``values`` of every process joined (their lengths may differ)."""
    if trainer.world_size == 1:
        return values
    lengths = trainer.strategy.all_gather(torch.tensor([len(values)], device=values.device)).flatten()
    padded = torch.full((int(lengths.max()),), math.nan, dtype=values.dtype, device=values.device)
    padded[: len(values)] = values
    joined = trainer.strategy.all_gather(padded).flatten()
    return joined[~joined.isnan()]
