"""Resuming a run: a ``last.ckpt`` that survives Ctrl-C and SIGTERM, and the random state that makes resume exact.

Writes need nothing of ours to be safe: Lightning's ``TorchCheckpointIO`` writes each checkpoint
through an fsspec transaction (a temporary file, then a move into place), which
``tests/test_reliability.py`` checks by killing a process half-way through a write.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class InterruptCheckpoint(Callback):
    """On Ctrl-C or SIGTERM during ``fit``, saves the run's state as ``last.ckpt`` beside its other checkpoints.

    ``fit --ckpt_path last`` then continues from where the run stopped. Other errors save nothing,
    so that a run stopped by a fault (a non-finite loss) keeps its last good checkpoints.

    Not Lightning's ``OnExceptionCheckpoint``: with one of those present, Lightning 2.6 turns every
    ``fit`` without ``ckpt_path`` into a resume from its file, so a fresh run could pick up a stray
    ``last.ckpt``.
    """

    def __init__(self, filename: str = "last") -> None:
        self.filename = filename

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or os.path.join(
            trainer.default_root_dir, "checkpoints"
        )
        path = os.path.join(folder, f"{self.filename}.ckpt")
        trainer.save_checkpoint(path)
        rank_zero_info(f"interrupted: saved {path}; continue with --ckpt_path last")


RNG_STATES = "rng_states"
"""The checkpoint key of :func:`rng_states`."""


def rng_states() -> dict[str, Any]:
    """The random generators' states, in types that ``torch.load(weights_only=True)`` reads back."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Continue every random stream where :func:`rng_states` recorded it."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(tuple(tuple(part) if isinstance(part, list) else part for part in states["python"]))
