"""Checkpoints that survive the run being killed: atomic writes and a save on Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import OnExceptionCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each local checkpoint to a temporary file in its own folder, then renames it into place.

    A process killed while writing leaves the previous ``last.ckpt`` or best checkpoint whole, and
    at most a ``.tmp`` file beside it. Lightning's own writer goes through an fsspec transaction
    whose temporary file lives in the system's temp folder, so that its final move is a copy, not a
    rename, whenever ``/tmp`` is another file system than the logs (tmpfs, network storage).
    Remote paths (``s3://`` and the like) keep Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().save_checkpoint(checkpoint, path, storage_options)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class InterruptCheckpoint(OnExceptionCheckpoint):
    """On Ctrl-C or SIGTERM, saves the run's state as ``last.ckpt`` in the run's checkpoint folder.

    ``fit --ckpt_path last`` then continues from where the run stopped. Other errors save nothing,
    so that a run stopped by a fault (a non-finite loss) keeps its last good checkpoints.
    """

    def __init__(self, filename: str = "last") -> None:
        super().__init__(dirpath=".", filename=filename)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.dirpath:
            self.dirpath = trainer.checkpoint_callback.dirpath
        else:
            self.dirpath = trainer.default_root_dir

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, (KeyboardInterrupt, SIGTERMException)) and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.ckpt_path)
            rank_zero_info(f"interrupted: saved {self.ckpt_path}; continue with --ckpt_path last")

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Keep the file: unlike Lightning's default, it is the run's ``last.ckpt``."""
