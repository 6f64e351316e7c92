"""A sweep's study: its storage (a journal file in the sweep folder, or a shared database), its seeded sampler and
pruner, and the loop that asks for a trial, runs it as a ``fit`` in a process of its own and tells the study how
it ended, until the study holds ``--trials`` trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UserError, first_line
from ...training.trial_report import PRUNED, PrunerKind, make_pruner, open_storage
from .space import Space, as_option

STUDY_LOG = "study.log"
SURPLUS, INTERRUPTED, FAIL_REASON = "surplus", "interrupted", "fail_reason"
"""The attributes of a trial that does not count: asked for beyond the total, or stopped by Ctrl-C; and why one
failed."""


@dataclass(frozen=True)
class SweepOptions:
    """The sweep's own options (``sweep --help``); every other option is ``fit``'s."""

    space: Path
    trials: int
    metric: str
    direction: str
    pruner: PrunerKind
    pruner_startup_trials: int
    seed: int
    storage: str | None
    study: str | None
    workers: int


class Study:
    """One study: its folder, storage, sampler and pruner, and the loop that runs trials until the total is met."""

    def __init__(self, options: SweepOptions, fit_config: Path, space: Space, folder: Path, study_name: str,
                 max_epochs: int, worker: int = 0) -> None:
        import optuna

        self.options = options
        self.fit_config = fit_config
        self.space = space
        self.folder = folder
        self.study_name = study_name
        self.max_epochs = max_epochs
        self.storage = options.storage or str(folder / STUDY_LOG)
        self.pruner = make_pruner(options.pruner, options.pruner_startup_trials, max_epochs)
        for attempt in range(3):
            try:
                self.study = optuna.create_study(
                    study_name=study_name, storage=open_storage(self.storage), load_if_exists=True,
                    sampler=optuna.samplers.TPESampler(seed=self.sampler_seed(options, worker)), pruner=self.pruner,
                    direction=options.direction)
                break
            except Exception as error:  # SQLAlchemy's and the drivers' own errors for an unreachable database
                # two sweeps starting together on a new database both create its tables: one of them loses
                if attempt == 2:
                    raise UserError(f"--storage {options.storage}: cannot open the study there: "
                                    f"{first_line(error)}") from None
                time.sleep(1 + attempt)
        before = len(self.study.get_trials(deepcopy=False))
        if before:  # a continued study: the same seed would draw its first trials again (trial 2 repeated trial 0)
            self.study.sampler = optuna.samplers.TPESampler(seed=self.sampler_seed(options, worker) + before)

    @staticmethod
    def sampler_seed(options: SweepOptions, worker: int) -> int:
        """``--seed`` plus the worker's index; with a shared ``--storage``, plus the process id too: sweeps on
        several machines with one seed would all draw the same trials. A continued study adds its trial count."""
        return options.seed + worker + (os.getpid() if options.storage else 0)

    def counted_before(self, number: int) -> int:
        """Trials numbered below ``number`` that count towards the total (finished, failed, or running)."""
        return sum(1 for trial in self.study.get_trials(deepcopy=False)
                   if trial.number < number and not trial.user_attrs.get(SURPLUS)
                   and not trial.user_attrs.get(INTERRUPTED))

    def run(self) -> None:
        """Ask, run and tell until the study holds ``--trials`` trials (other processes' included)."""
        from optuna.trial import TrialState

        while True:
            trial = self.study.ask(self.space)
            if self.counted_before(trial.number) >= self.options.trials:
                trial.set_user_attr(SURPLUS, True)
                self.study.tell(trial, state=TrialState.FAIL)
                return
            self.run_trial(trial)

    def run_trial(self, trial: Any) -> None:
        from optuna.trial import TrialState

        version = f"{self.folder.name}/trial_{trial.number}"
        report = {"class_path": "lightning_resnet.training.trial_report.TrialReport",
                  "init_args": {"storage": self.storage, "study": self.study_name, "trial_id": trial._trial_id,
                                "metric": self.options.metric, "pruner": self.options.pruner,
                                "startup_trials": self.options.pruner_startup_trials, "max_epochs": self.max_epochs}}
        command = [sys.executable, "-m", "lightning_resnet", "fit", "--config", str(self.fit_config),
                   *(word for key, value in trial.params.items() for word in as_option(key, value)),
                   "--model.calibrate", "false", "--test_after_fit", "false",
                   "--trainer.logger.init_args.version", version, f"--trainer.callbacks+={json.dumps(report)}"]
        print(f"sweep {self.study_name}: trial {trial.number} {trial.params}", flush=True)
        log = self.folder / f"trial_{trial.number}.log"
        with open(log, "w") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
            stopped = False
            try:
                code = process.wait()
            except KeyboardInterrupt:  # pass the Ctrl-C on (a terminal sends it to the trial too), and wait
                stopped = True
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                code = process.wait()
        if stopped or code in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # it does not count; the sweep stops
            trial.set_user_attr(INTERRUPTED, True)
            self.study.tell(trial, state=TrialState.FAIL)
            raise KeyboardInterrupt
        finished = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
        values = list(finished.intermediate_values.values())
        if code != 0 or not values:
            lines = log.read_text().strip().splitlines()
            reason = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
            trial.set_user_attr(FAIL_REASON, reason[:500] or f"exit code {code}")
            self.study.tell(trial, state=TrialState.FAIL)
            print(f"sweep {self.study_name}: trial {trial.number} failed: {reason}", flush=True)
        elif finished.user_attrs.get(PRUNED):
            self.study.tell(trial, state=TrialState.PRUNED)
        else:
            best = max(values) if self.options.direction == "maximize" else min(values)
            self.study.tell(trial, best)
