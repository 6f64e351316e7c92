"""``sweep``: a hyper-parameter study with Optuna, each trial a real ``fit`` in a process of its own.

``python -m lightning_resnet sweep --config configs/demo.yaml --space configs/sweeps/demo.yaml --trials 20``
draws the options of ``--space`` (:mod:`.space`) with a seeded TPE sampler, runs ``fit`` with them under
``logs/<experiment>/sweep_<study>/trial_<K>/``, reports ``--metric`` after every validation so the pruner can
stop a poor trial early, and takes a trial's value at its best epoch (:mod:`.study`). The study lives in a
journal file in the sweep folder (Optuna's file storage for several writing processes; its documentation warns
against SQLite there), or in the database of ``--storage`` (PostgreSQL, ...) for several machines. Running the
same command again continues the study up to ``--trials``. The sweep leaves ``trials.csv``, ``best.yaml`` and
the study's plots (:mod:`.outputs`).

Its command line is ``fit``'s with the sweep's options beside fit's: ``--config`` may hold both, and
``--print_config`` prints both; every trial runs the ``fit`` options as they were parsed here.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.cli import LightningArgumentParser
from lightning.pytorch.loggers import TensorBoardLogger

from ...errors import UserError, check, exit_with
from ...tasks import MONITORS
from ...tasks.metrics import VALIDATION_METRICS
from ...training.trial_report import PrunerKind
from ..app import ResNetCLI, cli_options
from ..compare import flatten
from ..launcher import Launcher
from ..options import add_objective_options
from .outputs import BEST_CONFIG, TRIALS_CSV, format_top, write_best_config, write_plots, write_trials_csv
from .space import check_keys, read_space
from .study import Stopped, Study, SweepOptions, settings_of

COMMAND = "sweep"
FIT_CONFIG = "fit.yaml"
"""The ``fit`` options every trial of the sweep runs with, as parsed (in the sweep folder)."""


class SweepCLI(ResNetCLI):
    """``fit``'s command line, parsed and instantiated but not run, with the sweep's options beside fit's."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.description = __doc__.splitlines()[0]
        parser.add_argument("--space", type=Path, required=True,
                            help="YAML: dotted fit keys and their distributions")
        parser.add_argument("--trials", type=int, required=True, help="trials in the study in all")
        add_objective_options(parser, "the objective, at each trial's best epoch", default=None)
        parser.add_argument("--pruner", type=PrunerKind, default="median")
        parser.add_argument("--pruner_startup_trials", type=int, default=5,
                            help="median: trials that finish before any is pruned")
        parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (each --workers thread adds "
                            "one; with --storage each process adds its id)")
        parser.add_argument("--storage", type=str | None, default=None, help="a database URL shared by several "
                            "sweeps (postgresql://user@host/db); default: a journal file in the sweep folder")
        parser.add_argument("--study", type=str | None, default=None,
                            help="the study's name (default: the space file's name)")
        parser.add_argument("--workers", type=int, default=1, help="trials run at once on this machine")


def parse(args: list[str]) -> tuple[SweepOptions, SweepCLI]:
    """The sweep's options, and ``fit``'s command line as every trial gets it (instantiated: its data checked)."""
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    options = cli_options()
    options["parser_kwargs"] = {**options["parser_kwargs"], "prog": f"python -m lightning_resnet {COMMAND}"}
    cli = SweepCLI(args=args, run=False, **options)
    config = cli.config
    sweep_options = SweepOptions(**{field.name: config[field.name] for field in fields(SweepOptions)})
    if sweep_options.metric is None:  # what fit chooses its best checkpoint by, for this data's task
        sweep_options = replace(sweep_options, metric=MONITORS[cli.datamodule.task])
    check(sweep_options.trials >= 1, f"--trials must be at least 1, got {sweep_options.trials}")
    check(sweep_options.workers >= 1, f"--workers must be at least 1, got {sweep_options.workers}")
    check(sweep_options.pruner_startup_trials >= 0,
          f"--pruner_startup_trials must be 0 or more, got {sweep_options.pruner_startup_trials}")
    return sweep_options, cli


def fit_config(cli: SweepCLI) -> dict[str, Any]:
    """The parsed ``fit`` options, less the sweep's: what each trial runs with."""
    config = yaml.safe_load(cli.parser.dump(cli.config, skip_none=False, skip_check=True))
    for field in fields(SweepOptions):
        config.pop(field.name, None)
    return config


def sweep(args: list[str]) -> Path:
    """Run (or continue) the study; returns the sweep folder. Ctrl-C and SIGTERM stop it with the study kept."""
    options, cli = parse(args)
    check(options.metric in VALIDATION_METRICS, f"--metric {options.metric}: fit reports none such after a "
                                                f"validation; expected one of {', '.join(VALIDATION_METRICS)}")
    space = read_space(options.space)
    check_keys(space, cli.parser, args)
    logger = cli.trainer.logger
    if not isinstance(logger, TensorBoardLogger):
        raise UserError(f"{COMMAND} keeps each trial's run with trainer.logger, which must be the TensorBoard logger")
    max_epochs = cli.trainer.max_epochs if cli.trainer.max_epochs and cli.trainer.max_epochs > 0 else 1
    study_name = options.study or options.space.stem
    folder = Path(logger.save_dir) / logger.name / f"sweep_{study_name}"
    folder.mkdir(parents=True, exist_ok=True)
    trial_options = fit_config(cli)
    (folder / FIT_CONFIG).write_text(yaml.safe_dump(trial_options, sort_keys=False))
    del cli
    with Launcher() as launcher:  # the trials' processes, without importing everything again for each
        workers = [Study(options, folder / FIT_CONFIG, space, folder, study_name, max_epochs, launcher, worker)
                   for worker in range(options.workers)]
        study = workers[0]
        study.check_settings(settings_of(options, space, flatten(trial_options)))
        stopped: list[Stopped] = []

        def run(worker: Study) -> None:
            try:
                worker.run()
            except Stopped as interrupt:
                stopped.append(interrupt)

        previous = signal.signal(signal.SIGTERM, raise_stopped)
        try:
            threads = [threading.Thread(target=run, args=(worker,)) for worker in workers[1:]]
            for thread in threads:
                thread.start()
            study.run()
            for thread in threads:
                thread.join()
            if stopped:
                raise stopped[0]
        except KeyboardInterrupt as interrupt:
            signum = interrupt.signum if isinstance(interrupt, Stopped) else signal.SIGINT
            print(f"sweep {study_name} {'interrupted' if signum == signal.SIGINT else 'stopped by SIGTERM'}: the study "
                  f"is kept in {study.storage}; the same command continues it", file=sys.stderr, flush=True)
            raise SystemExit(128 + signum) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
    rows = write_trials_csv(folder / TRIALS_CSV, study.study)
    finished = [row for row in rows if row["state"] == "complete"]
    if finished:
        best = study.study.best_trial
        write_best_config(folder / BEST_CONFIG, trial_options, best.params)
    plots = write_plots(study.study, folder)
    states = {state: sum(row["state"] == state for row in rows) for state in ("complete", "pruned", "fail")}
    print(f"sweep {study_name}: {len(rows)} trials ({states['complete']} complete, {states['pruned']} pruned, "
          f"{states['fail']} failed) in {folder}")
    if finished:
        print(f"best: trial {best.number}, {options.metric} {best.value:.4f} -> {folder / BEST_CONFIG}")
        print(format_top(rows, options.direction))
    print(f"wrote {folder / TRIALS_CSV}" + "".join(f", {path.name}" for path in plots))
    if not finished:
        exit_with(f"sweep {study_name}: no trial completed; the reasons are in {folder / TRIALS_CSV}", 1)
    return folder


def raise_stopped(signum: int, frame: Any) -> None:
    """SIGTERM to the sweep, as Ctrl-C: the trial under way stops as a ``fit`` does, and the study is kept."""
    raise Stopped(signum)
