"""A ``fit`` run as one trial of an Optuna study: each validation's score is reported to the trial, and the run
stops at the end of the epoch when the study's pruner says so (see ``python -m lightning_resnet sweep``).

The sweep process owns the trial and tells the study how it ended; this callback, in the ``fit``
process, only reports. Optuna is imported here, in the trial's process, not by ``fit`` otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer

from ..tasks import MONITOR
from .checkpoints import FIT_SECONDS

PrunerKind = Literal["median", "hyperband", "none"]
PRUNED = "pruned"
"""The trial attribute the run sets when the pruner stopped it."""


def open_storage(storage: str) -> Any:
    """A database URL as it is (PostgreSQL, MySQL, ...), or the path of a journal file shared by the processes."""
    import optuna

    if "://" in storage:
        return storage
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


def make_pruner(kind: PrunerKind, startup_trials: int, max_epochs: int) -> Any:
    """The study's pruner; the sweep and every trial build the same one from the same arguments."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs))
    return optuna.pruners.NopPruner()


class TrialReport(Callback):
    """Reports ``metric`` after each validation to trial ``trial_id`` of ``study``; stops the run when pruned.

    Only the first process reports and asks; its answer is broadcast, so that every DDP process stops
    at the same epoch.
    """

    def __init__(self, storage: str, study: str, trial_id: int, metric: str = MONITOR,
                 pruner: PrunerKind = "median", startup_trials: int = 5, max_epochs: int = 1) -> None:
        self.storage = storage
        self.study = study
        self.trial_id = trial_id
        self.metric = metric
        self.pruner = pruner
        self.startup_trials = startup_trials
        self.max_epochs = max_epochs
        self._trial: Any = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero:
            return
        import optuna

        study = optuna.load_study(study_name=self.study, storage=open_storage(self.storage),
                                  pruner=make_pruner(self.pruner, self.startup_trials, self.max_epochs))
        # the sweep asked for the trial; Optuna offers no other way to report to it from another process
        self._trial = optuna.trial.Trial(study, self.trial_id)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        prune = False
        value = trainer.callback_metrics.get(self.metric)
        if trainer.is_global_zero and self._trial is not None and value is not None:
            self._trial.report(float(value), trainer.current_epoch)
            prune = self._trial.should_prune()
            if prune:
                self._trial.set_user_attr(PRUNED, True)
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        seconds = getattr(pl_module, "saved_fit_seconds", None)  # what the run's last checkpoint holds
        if trainer.is_global_zero and self._trial is not None and seconds is not None:
            self._trial.set_user_attr(FIT_SECONDS, seconds)
