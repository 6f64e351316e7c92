"""Where a run's files and figures go: its folder and its TensorBoard writer."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run: the logger's ``version_N`` folder, or the trainer's root without a logger.

    Every process must call this together: ``trainer.log_dir`` is broadcast from process 0.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


def tensorboard(trainer: Trainer):
    """The ``SummaryWriter`` of the run's TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None
