"""A run's checkpoints: which one is best, ``last.ckpt`` on Ctrl-C and SIGTERM, rewriting one safely, and the
random state that makes resume exact. What a checkpoint says of the trained model is its bundle
(:mod:`lightning_resnet.bundle`).

Writes need nothing of ours to be safe: Lightning's ``TorchCheckpointIO`` writes each checkpoint
through an fsspec transaction (a temporary file, then a move into place), and :func:`rewrite_checkpoint`
goes through the same writer.
"""

from __future__ import annotations

import os
import random
import shlex
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from ..hints import shown
from ..stages import VAL
from ..tasks import MONITOR, MONITORS
from ..tasks.metrics import LOSS, metric_key

EPOCH_METRICS = "epoch_metrics"
"""The checkpoint key of the validation metrics of the epoch it was written at (the module writes them)."""
VAL_LOSS = metric_key(VAL, LOSS)
FIT_SECONDS = "fit_seconds"
"""The checkpoint key of the run's wall seconds of ``fit`` when it was written, every part of a resumed run included:
the one "seconds" of a run, which ``compare`` and ``sweep``'s ``trials.csv`` report."""
SEMI_SUPERVISED_STATE = "semi_supervised_state"
"""The checkpoint key of a semi-supervised method's statistics (FreeMatch's thresholds), for an exact resume; no part
of the trained model's weights."""


@dataclass(frozen=True)
class BestCheckpoint:
    """The checkpoint ``ModelCheckpoint`` chose by a score of :data:`~.metrics.MONITORS`, that score and its name."""

    path: Path
    score: float
    monitor: str = MONITOR


class AccuracyThenLossCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` on :data:`~.metrics.MONITOR`, whose ties go to the lower validation loss.

    Lightning keeps the first epoch to reach a score; on a small validation set many epochs tie, and the lower loss
    tested better (benchmarks/README.md, "Which checkpoint is best on a small validation set").
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.val_losses: dict[str, float] = {}
        """The validation loss of each kept checkpoint, by path."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """A multi-label model is chosen by :data:`~.metrics.MONITORS`' score for it (``val/mAP``) where the
        default, ``val/acc``, was left; before a resumed run's state is read, whose key names the monitor."""
        task = getattr(pl_module, "hparams", {}).get("task")
        if self.monitor == MONITOR and task in MONITORS and MONITORS[task] != MONITOR:
            name = MONITORS[task].split("/")[-1]
            self.monitor = MONITORS[task]
            if self.filename:
                self.filename = self.filename.replace(f"-acc{{{MONITOR}", f"-{name}{{{self.monitor}")
        super().setup(trainer, pl_module, stage)

    @property
    def state_key(self) -> str:
        # the key runs written before this class had, so that resuming them and best_checkpoint_of_run find it
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def check_monitor_top_k(self, trainer: Trainer, current: torch.Tensor | None = None) -> bool:
        full = self.save_top_k != -1 and len(self.best_k_models) >= self.save_top_k
        if current is None or not full or bool(current != self.best_k_models[self.kth_best_model_path]):
            return super().check_monitor_top_k(trainer, current)
        loss = trainer.callback_metrics.get(VAL_LOSS)
        lower = loss is not None and float(loss) < self.val_losses.get(self.kth_best_model_path, float("inf"))
        return trainer.strategy.reduce_boolean_decision(lower)

    def _update_best_and_save(self, current: torch.Tensor, trainer: Trainer,
                              monitor_candidates: dict[str, torch.Tensor]) -> None:
        super()._update_best_and_save(current, trainer, monitor_candidates)
        loss = monitor_candidates.get(VAL_LOSS)
        new = float("inf") if loss is None else float(loss)
        self.val_losses = {path: self.val_losses.get(path, new) for path in self.best_k_models}
        sign = 1.0 if self.mode == "max" else -1.0
        ranked = sorted(self.best_k_models,  # worst first
                        key=lambda path: (sign * float(self.best_k_models[path]), -self.val_losses[path]))
        self.kth_best_model_path, self.best_model_path = ranked[0], ranked[-1]
        self.kth_value, self.best_model_score = self.best_k_models[ranked[0]], self.best_k_models[ranked[-1]]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "val_losses": self.val_losses}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.val_losses = dict(state_dict.get("val_losses", {}))


def best_checkpoint(trainer: Trainer) -> BestCheckpoint | None:
    """The run's best checkpoint, as its ``ModelCheckpoint`` on :data:`~.metrics.MONITOR` chose it; None
    before one is written (or without validation). The one place that answers "which checkpoint is best"."""
    for callback in trainer.checkpoint_callbacks:
        # a score, not only a path: resumed into another run folder, Lightning restores the old best's path alone
        if (isinstance(callback, ModelCheckpoint) and callback.monitor in MONITORS.values()
                and callback.best_model_path and callback.best_model_score is not None):
            return BestCheckpoint(Path(callback.best_model_path), float(callback.best_model_score), callback.monitor)
    return None


def newest_run(experiment: Path) -> Path | None:
    """The run folder of ``experiment`` whose ``last.ckpt`` was written last, or None."""
    candidates = sorted(experiment.glob("version_*/checkpoints/last.ckpt"), key=lambda path: path.stat().st_mtime)
    return candidates[-1].parent.parent if candidates else None


def best_checkpoint_of_run(folder: Path) -> BestCheckpoint | None:
    """The best checkpoint of a finished run folder, from the ``ModelCheckpoint`` state its ``last.ckpt`` holds."""
    last = folder / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    states = torch.load(last, map_location="cpu", weights_only=True).get("callbacks", {})
    for key, state in states.items():
        monitored = any(f"'monitor': '{monitor}'" in key for monitor in MONITORS.values())
        if key.startswith("ModelCheckpoint") and monitored and state.get("best_model_path"):
            path = Path(state["best_model_path"])
            beside = last.parent / path.name  # the run folder may have been moved or copied since
            return BestCheckpoint(path if path.is_file() or not beside.is_file() else beside,
                                  float(state["best_model_score"]), state.get("monitor", MONITOR))
    return None


def epoch_metrics(checkpoint: Path) -> dict[str, float]:
    """The validation metrics of the epoch ``checkpoint`` was written at."""
    return dict(torch.load(checkpoint, map_location="cpu", weights_only=True).get(EPOCH_METRICS, {}))


def rewrite_checkpoint(trainer: Trainer, path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read ``path``, apply ``change`` to it and write it back through the trainer's checkpoint writer (atomic)."""
    io = trainer.strategy.checkpoint_io
    checkpoint = io.load_checkpoint(path, map_location="cpu", weights_only=True)
    change(checkpoint)
    io.save_checkpoint(checkpoint, path)


class InterruptCheckpoint(Callback):
    """Ctrl-C or SIGTERM during ``fit`` stop the run at a step boundary and save its state as ``last.ckpt``
    beside its other checkpoints; ``fit --ckpt_path last`` then continues exactly where it stopped.

    Ctrl-C no longer interrupts a step half-way (a forward pass cut short has already moved the
    BatchNorm statistics, and is then run again on resume): the first one is noted, every process
    agrees at the start of the next step, and the run stops there; a second Ctrl-C stops at once.
    SIGTERM is Lightning's to handle the same way (it stops after the step). Other errors save
    nothing, so that a run stopped by a fault (a non-finite loss) keeps its last good checkpoints.

    Not Lightning's ``OnExceptionCheckpoint``: with one of those present, Lightning 2.6 turns every
    ``fit`` without ``ckpt_path`` into a resume from its file, so a fresh run could pick up a stray
    ``last.ckpt``.
    """

    def __init__(self, filename: str = "last") -> None:
        self.filename = filename
        self.requested = False
        self._previous_handler: Any = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._note_interrupt)

    def _note_interrupt(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step and saving last.ckpt (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            raise KeyboardInterrupt

    def _restore_handler(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore_handler()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore_handler()
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        folder = getattr(trainer.checkpoint_callback, "dirpath", None) or os.path.join(
            trainer.default_root_dir, "checkpoints"
        )
        path = os.path.join(folder, f"{self.filename}.ckpt")
        trainer.save_checkpoint(path)
        rank_zero_info(f"interrupted: saved {path}; continue with the same command and {resume_options(trainer, path)}")


def resume_options(trainer: Trainer, path: str) -> str:
    """The options that continue an interrupted run in its own folder: ``--ckpt_path last`` names the newest
    ``version_N`` of the experiment; a run elsewhere (a fold, a trial) is named by its checkpoint and folder."""
    logger = trainer.logger
    version = getattr(logger, "version", None)
    if isinstance(version, int) or str(version).startswith("version_"):
        return "--ckpt_path last"
    return f"--ckpt_path {shown(path)} --trainer.logger.init_args.version {shlex.quote(str(version))}"


class RandomState(Callback):
    """Keeps the random generators' states in every checkpoint of ``fit`` and continues them on resume,
    so that a resumed run draws what the uninterrupted one would have (dropout, drop-path, Mixup)."""

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            # types that torch.load(weights_only=True) reads back
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        if state_dict["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
        kind, keys, position, has_gauss, gauss = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        random.setstate(tuple(tuple(part) if isinstance(part, list) else part for part in state_dict["python"]))
