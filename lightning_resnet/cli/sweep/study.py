"""A sweep's study: its storage (a journal file in the sweep folder, or a shared database), its seeded sampler and
pruner, the settings it was started with, and the loop that asks for a trial, runs it as a ``fit`` in a process of
its own and tells the study how it ended, until the study holds ``--trials`` trials.

What a sweep reports of a trial comes from the study's storage alone (its parameters, state, value, the folder and
machine it ran on), so that a study shared by several machines reports every trial on each of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UserError, first_line
from ...training.trial_report import PRUNED, PrunerKind, make_pruner, open_storage
from ..launcher import Launcher
from .space import Space, as_option

STUDY_LOG = "study.log"
SURPLUS, INTERRUPTED, FAIL_REASON = "surplus", "interrupted", "fail_reason"
"""The attributes of a trial that does not count: asked for beyond the total, or stopped by Ctrl-C or SIGTERM; and
why one failed."""
RUN, MACHINE = "run", "machine"
"""The attributes of a trial that say where it ran: its run folder, and the machine's name."""
SETTINGS = "settings"
"""The study's attribute that keeps what it was started with (see :meth:`Study.check_settings`)."""
WHERE_IT_RUNS = ("trainer.logger", "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
                 "trainer.enable_progress_bar", "trainer.enable_model_summary", "data.num_workers")
"""Options that say where and how visibly a trial runs, not what it trains: they may differ between the processes
and machines of one study."""
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


@contextlib.contextmanager
def one_asker_at_a_time(storage: str, study: str) -> Iterator[None]:
    """While this process counts the study's trials and asks for one, no other process of the study does, so that
    together they ask for exactly ``--trials``: a file lock beside a journal file, an advisory lock of a PostgreSQL
    database. Another database has none: two processes counting at the same moment may then ask for one trial more
    than the total, which is told as failed and marked ``surplus``."""
    if "://" not in storage:
        from filelock import FileLock

        # not "<journal>.lock": Optuna's JournalFileOpenLock takes that name, waited 30 s on it and forced it open
        with FileLock(f"{storage}.asking.lock"):
            yield
        return
    if not storage.startswith(("postgresql", "postgres")):
        yield
        return
    import psycopg

    key = int.from_bytes(hashlib.blake2b(study.encode(), digest_size=8).digest(), "big", signed=True)
    with psycopg.connect(re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", storage), autocommit=True) as database:
        database.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            database.execute("SELECT pg_advisory_unlock(%s)", (key,))


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM to the sweep: the trial under way is stopped as the signal stops a ``fit``, and the study
    is kept for the same command to continue."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.signum = signum


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


def settings_of(options: SweepOptions, space: Space, fit_options: dict[str, Any]) -> dict[str, Any]:
    """What a study is started with and must be continued with: the space, the objective, the pruner and the
    dotted ``fit`` options but those of :data:`WHERE_IT_RUNS`."""
    from optuna.distributions import distribution_to_json

    fit = {key: value for key, value in fit_options.items()
           if not any(key == place or key.startswith(f"{place}.") for place in WHERE_IT_RUNS)}
    return {"space": {key: json.loads(distribution_to_json(value)) for key, value in space.items()},
            "metric": options.metric, "direction": options.direction, "pruner": options.pruner,
            "pruner_startup_trials": options.pruner_startup_trials, "fit": fit}


def failure_reason(log: str, code: int, metric: str) -> str:
    """Why a trial failed, in a line: its error line, else the last line of its traceback, else its exit code."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    error = next((line for line in reversed(lines) if line.startswith("error:")), None)
    error = error or next((line for line in reversed(lines) if _EXCEPTION_LINE.match(line)), None)
    if error:
        return error[:500]
    if code == 0:
        return f"{metric} was never reported: the trial ran no validation"
    return f"exit code {code}"


class Study:
    """One study: its folder, storage, sampler and pruner, and the loop that runs trials until the total is met."""

    def __init__(self, options: SweepOptions, fit_config: Path, space: Space, folder: Path, study_name: str,
                 max_epochs: int, launcher: Launcher, worker: int = 0) -> None:
        import optuna

        self.launcher = launcher
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

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Keep ``settings`` in a new study; in a continued one, refuse other settings in one line naming the first
        difference: its trials would not be comparable with the ones before."""
        kept = self.study.user_attrs.get(SETTINGS)
        if kept is None:
            self.study.set_user_attr(SETTINGS, settings)
            return
        for section in ("space", "metric", "direction", "pruner", "pruner_startup_trials"):
            if kept.get(section) != settings[section]:
                self._refuse(f"--{section}", kept.get(section), settings[section])
        started, now = kept.get("fit", {}), settings["fit"]
        for key in sorted(set(started) | set(now)):
            if started.get(key) != now.get(key):
                self._refuse(key, started.get(key), now.get(key))

    def _refuse(self, what: str, started: Any, now: Any) -> None:
        name = self.study_name
        raise UserError(f"--study {name} was started with {what} {json.dumps(started)}, here {json.dumps(now)}: "
                        f"continue it with the options it was started with, or start a new study (--study {name}_2)")

    def counted(self, below: int | None = None) -> int:
        """The trials (numbered below ``below``) that count towards the total: finished, failed, or running."""
        return sum(1 for trial in self.study.get_trials(deepcopy=False)
                   if (below is None or trial.number < below) and not trial.user_attrs.get(SURPLUS)
                   and not trial.user_attrs.get(INTERRUPTED))

    def run(self) -> None:
        """Count, then ask, run and tell, until the study holds ``--trials`` trials (other processes' included): a
        trial is asked for only when one is missing, so that none is asked for and not run (as Optuna's own
        ``optimize(n_trials=...)`` never asks for one more than its total)."""
        from optuna.trial import TrialState

        while True:
            with one_asker_at_a_time(self.storage, self.study_name):
                if self.counted() >= self.options.trials:
                    return
                trial = self.study.ask(self.space)
            if self.counted(below=trial.number) >= self.options.trials:  # a database no lock covers: two at once
                trial.set_user_attr(SURPLUS, True)
                self.study.tell(trial, state=TrialState.FAIL)
                return
            self.run_trial(trial)

    def run_trial(self, trial: Any) -> None:
        from optuna.trial import TrialState

        run = self.folder / f"trial_{trial.number}"
        trial.set_user_attr(RUN, str(run.resolve()))
        trial.set_user_attr(MACHINE, socket.gethostname())
        report = {"class_path": "lightning_resnet.training.trial_report.TrialReport",
                  "init_args": {"storage": self.storage, "study": self.study_name, "trial_id": trial._trial_id,
                                "metric": self.options.metric, "pruner": self.options.pruner,
                                "startup_trials": self.options.pruner_startup_trials, "max_epochs": self.max_epochs}}
        command = ["fit", "--config", str(self.fit_config),
                   *(word for key, value in trial.params.items() for word in as_option(key, value)),
                   "--model.calibrate", "false", "--test_after_fit", "false",
                   "--trainer.logger.init_args.version", f"{self.folder.name}/{run.name}",
                   f"--trainer.callbacks+={json.dumps(report)}"]
        print(f"sweep {self.study_name}: trial {trial.number} {trial.params}", flush=True)
        log = self.folder / f"trial_{trial.number}.log"
        started = time.monotonic()
        with open(log, "w") as output:
            process = self.launcher.start(command, stdout=output.fileno(), stderr=output.fileno())
            stopped: Stopped | None = None
            try:
                code = process.wait()
            except KeyboardInterrupt as interrupt:  # pass the signal on (a terminal sends it to the trial too), wait
                stopped = interrupt if isinstance(interrupt, Stopped) else Stopped()
                if process.poll() is None:
                    process.send_signal(stopped.signum)
                code = process.wait()
        if stopped or code in (128 + signal.SIGINT, 128 + signal.SIGTERM):  # it does not count; the sweep stops
            trial.set_user_attr(INTERRUPTED, True)
            self.study.tell(trial, state=TrialState.FAIL)
            raise stopped or Stopped(code - 128)
        finished = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
        values = list(finished.intermediate_values.values())
        seconds = time.monotonic() - started
        if code != 0 or not values:
            reason = failure_reason(log.read_text(errors="replace"), code, self.options.metric)
            trial.set_user_attr(FAIL_REASON, reason)
            self.study.tell(trial, state=TrialState.FAIL)
            ending = f"failed: {reason}"
        elif finished.user_attrs.get(PRUNED):
            self.study.tell(trial, state=TrialState.PRUNED)
            ending = f"pruned after {len(values)} epoch(s), {self.options.metric} {values[-1]:.4f}"
        else:
            best = max(values) if self.options.direction == "maximize" else min(values)
            self.study.tell(trial, best)
            ending = f"complete, {self.options.metric} {best:.4f}"
        print(f"sweep {self.study_name}: trial {trial.number} {ending} ({seconds:.0f} s; log: {log})", flush=True)
