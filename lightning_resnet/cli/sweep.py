"""``sweep``: a hyper-parameter study with Optuna, each trial a real ``fit`` in a process of its own.

``python -m lightning_resnet sweep --config configs/demo.yaml --space configs/sweeps/demo.yaml --trials 20``
draws the options of ``--space`` (dotted ``fit`` keys, each ``{low, high[, log][, step]}`` or
``{choices: [...]}``) with a seeded TPE sampler, runs ``fit`` with them under
``logs/<experiment>/sweep_<study>/trial_<K>/``, reports ``--metric`` after every validation so the
pruner can stop a poor trial early, and takes a trial's value at its best epoch. The study lives
in a journal file in the sweep folder (Optuna's file storage for several writing processes; its
documentation warns against SQLite there), or in the database of ``--storage`` (PostgreSQL, ...)
for several machines. Running the same command again continues the study up to ``--trials``.
The sweep leaves ``trials.csv``, ``best.yaml`` (a config that ``fit --config`` runs to the best
trial's result) and the study's plots.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, NoReturn

import yaml
from lightning.pytorch.loggers import TensorBoardLogger

from ..errors import UserError, check, exit_with, first_line
from ..training.metrics import MONITOR, MONITOR_MODE
from ..training.trial_report import PRUNED, make_pruner, open_storage
from .app import ResNetCLI, cli_options

COMMAND = "sweep"
TRIALS_CSV = "trials.csv"
BEST_CONFIG = "best.yaml"
STUDY_LOG = "study.log"
SURPLUS, INTERRUPTED, FAIL_REASON = "surplus", "interrupted", "fail_reason"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        exit_with(message, 2, usage=self.prog)


def parse(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's own options, and the rest: ``fit``'s, given to every trial."""
    parser = _Parser(prog=f"python -m lightning_resnet {COMMAND}", description=__doc__.splitlines()[0],
                     epilog="Every other option is fit's (python -m lightning_resnet fit --help) and applies to "
                            "every trial.")
    parser.add_argument("--space", type=Path, required=True, help="YAML: dotted fit keys and their distributions")
    parser.add_argument("--trials", type=int, required=True, help="trials in the study in all")
    parser.add_argument("--metric", default=MONITOR, help=f"the objective, at each trial's best epoch ({MONITOR})")
    parser.add_argument("--direction", choices=("maximize", "minimize"),
                        default="maximize" if MONITOR_MODE == "max" else "minimize")
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    parser.add_argument("--pruner_startup_trials", type=int, default=5,
                        help="median: trials that finish before any is pruned")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (each --workers thread adds one; "
                        "with --storage each process adds its id)")
    parser.add_argument("--storage", default=None, help="a database URL shared by several sweeps "
                        "(postgresql://user@host/db); default: a journal file in the sweep folder")
    parser.add_argument("--study", default=None, help="the study's name (default: the space file's name)")
    parser.add_argument("--workers", type=int, default=1, help="trials run at once on this machine")
    options, fit_args = parser.parse_known_args(args)
    check(options.trials >= 1, f"--trials must be at least 1, got {options.trials}")
    check(options.workers >= 1, f"--workers must be at least 1, got {options.workers}")
    check(options.pruner_startup_trials >= 0, f"--pruner_startup_trials must be 0 or more, got "
                                              f"{options.pruner_startup_trials}")
    return options, fit_args


def read_space(path: Path) -> dict[str, Any]:
    """The distributions of the space file, by dotted key; one line naming the key for a bad one."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    check(path.is_file(), f"--space {path} does not exist: expected a YAML file of dotted fit keys")
    try:
        entries = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserError(f"--space {path} is not YAML: {first_line(error)}") from None
    check(isinstance(entries, dict) and entries, f"--space {path}: expected a mapping of dotted fit keys")
    space = {}
    for key, entry in entries.items():
        where = f"--space {path}: {key}"
        check(isinstance(entry, dict), f"{where}: expected {{low, high}} or {{choices: [...]}}, got {entry!r}")
        if "choices" in entry:
            check(set(entry) == {"choices"} and isinstance(entry["choices"], list) and entry["choices"],
                  f"{where}: choices must be a non-empty list and nothing else, got {entry!r}")
            space[key] = CategoricalDistribution(entry["choices"])
            continue
        unknown = set(entry) - {"low", "high", "log", "step"}
        check({"low", "high"} <= set(entry) and not unknown,
              f"{where}: expected low and high (and log or step) or choices, got {entry!r}")
        low, high = entry["low"], entry["high"]
        check(isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high,
              f"{where}: the range is empty: low must be below high, got low={low}, high={high}")
        whole = all(isinstance(value, int) for value in (low, high, entry.get("step", 1)))
        try:
            distribution = (IntDistribution(low, high, log=entry.get("log", False), step=entry.get("step", 1))
                            if whole else FloatDistribution(low, high, log=entry.get("log", False),
                                                            step=entry.get("step")))
        except ValueError as error:
            raise UserError(f"{where}: {first_line(error)}") from None
        space[key] = distribution
    return space


def _option(key: str, value: Any) -> list[str]:
    return [f"--{key}", json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)]


def check_keys(space: dict[str, Any], fit_args: list[str]) -> ResNetCLI:
    """Parse the fit command line once with each key at its first value: a key fit does not take is one line.
    Returns the command line as fit builds it, without running it."""
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    cli = ResNetCLI(args=fit_args, run=False, **cli_options())
    parser = cli.parser
    parser.exit_on_error = False
    for key, distribution in space.items():
        first = distribution.choices[0] if hasattr(distribution, "choices") else distribution.low
        try:
            parser.parse_args([*fit_args, *_option(key, first)])
        except Exception as error:  # jsonargparse's ArgumentError, or a value its type refuses
            raise UserError(f"--space: fit does not take {key}={first!r}: {first_line(error)}") from None
    return cli


class Sweep:
    """One study: its folder, storage, sampler and pruner, and the loop that runs trials until the total is met."""

    def __init__(self, options: argparse.Namespace, fit_args: list[str], space: dict[str, Any], folder: Path,
                 study_name: str, max_epochs: int, worker: int = 0) -> None:
        import optuna

        self.options = options
        self.fit_args = fit_args
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
    def sampler_seed(options: argparse.Namespace, worker: int) -> int:
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
        command = [sys.executable, "-m", "lightning_resnet", "fit", *self.fit_args,
                   *(word for key, value in trial.params.items() for word in _option(key, value)),
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


def write_trials_csv(path: Path, study: Any, folder: Path) -> list[dict[str, Any]]:
    """One row per trial of the study that counts (not the surplus asks), in trial order."""
    trials = [trial for trial in study.get_trials(deepcopy=False) if not trial.user_attrs.get(SURPLUS)]
    keys = sorted({key for trial in trials for key in trial.params})
    rows = []
    for trial in trials:
        duration = trial.duration.total_seconds() if trial.duration else None
        rows.append({"trial": trial.number, "state": trial.state.name.lower(),
                     "value": trial.value if trial.value is not None else
                     (list(trial.intermediate_values.values())[-1] if trial.intermediate_values else None),
                     **{key: trial.params.get(key) for key in keys}, "seconds": duration,
                     "folder": str(folder / f"trial_{trial.number}"),
                     "reason": trial.user_attrs.get(FAIL_REASON) or ("interrupted" if trial.user_attrs.get(
                         INTERRUPTED) else "")})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["trial", "state", "value", *keys, "seconds", "folder", "reason"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_best_config(path: Path, trial_folder: Path) -> None:
    """The best trial's own config, less what belonged to the sweep: ``fit --config`` runs it again."""
    config = yaml.safe_load((trial_folder / "config.yaml").read_text())
    callbacks = config.get("trainer", {}).get("callbacks") or []
    config["trainer"]["callbacks"] = [callback for callback in callbacks
                                      if "TrialReport" not in str(callback.get("class_path", ""))] or None
    config["trainer"]["logger"]["init_args"]["version"] = None
    config["model"]["calibrate"] = True
    config["test_after_fit"] = True
    config.pop("ckpt_path", None)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's optimization history, parallel coordinates and parameter importances as PNGs."""
    import matplotlib.pyplot as pyplot  # Optuna's matplotlib plots draw on pyplot figures
    import optuna
    from optuna.visualization import matplotlib as plots

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        for name, plot in (("optimization_history", plots.plot_optimization_history),
                           ("parallel_coordinate", plots.plot_parallel_coordinate),
                           ("param_importances", plots.plot_param_importances)):
            try:
                axes = plot(study)
            except (ValueError, RuntimeError):
                continue  # too few finished trials for this plot
            figure = (axes[0] if hasattr(axes, "__len__") else axes).get_figure()
            figure.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
            written.append(folder / f"{name}.png")
            pyplot.close(figure)
    return written


def format_top(rows: list[dict[str, Any]], direction: str, count: int = 5) -> str:
    finished = [row for row in rows if row["state"] == "complete"]
    finished.sort(key=lambda row: row["value"], reverse=direction == "maximize")
    keys = [key for key in (rows[0] if rows else {}) if key not in ("trial", "state", "value", "seconds", "folder",
                                                                   "reason")]
    lines = [f"{'trial':>5}  {'value':>8}  " + "  ".join(keys)]
    for row in finished[:count]:
        lines.append(f"{row['trial']:>5}  {row['value']:>8.4f}  " + "  ".join(
            f"{row[key]:.4g}" if isinstance(row[key], float) else str(row[key]) for key in keys))
    return "\n".join(lines)


def sweep(args: list[str]) -> Path:
    """Run (or continue) the study; returns the sweep folder."""
    if any(arg in ("-h", "--help") for arg in args):
        parse(["--help"])
    options, fit_args = parse(args)
    space = read_space(options.space)
    cli = check_keys(space, fit_args)
    logger = cli.trainer.logger
    if not isinstance(logger, TensorBoardLogger):
        raise UserError(f"{COMMAND} keeps each trial's run with trainer.logger, which must be the TensorBoard logger")
    max_epochs = cli.trainer.max_epochs if cli.trainer.max_epochs and cli.trainer.max_epochs > 0 else 1
    study_name = options.study or options.space.stem
    folder = Path(logger.save_dir) / logger.name / f"sweep_{study_name}"
    folder.mkdir(parents=True, exist_ok=True)
    del cli
    workers = [Sweep(options, fit_args, space, folder, study_name, max_epochs, worker)
               for worker in range(options.workers)]
    study = workers[0]
    interrupted = threading.Event()

    def run(worker: Sweep) -> None:
        try:
            worker.run()
        except KeyboardInterrupt:
            interrupted.set()

    try:
        threads = [threading.Thread(target=run, args=(worker,)) for worker in workers[1:]]
        for thread in threads:
            thread.start()
        study.run()
        for thread in threads:
            thread.join()
        if interrupted.is_set():
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        print(f"sweep {study_name} interrupted: the study is kept in {study.storage}; "
              "the same command continues it", file=sys.stderr)
        raise SystemExit(130) from None
    rows = write_trials_csv(folder / TRIALS_CSV, study.study, folder)
    finished = [row for row in rows if row["state"] == "complete"]
    if finished:
        best = study.study.best_trial
        write_best_config(folder / BEST_CONFIG, folder / f"trial_{best.number}")
    plots = write_plots(study.study, folder)
    states = {state: sum(row["state"] == state for row in rows) for state in ("complete", "pruned", "fail")}
    print(f"sweep {study_name}: {len(rows)} trials ({states['complete']} complete, {states['pruned']} pruned, "
          f"{states['fail']} failed) in {folder}")
    if finished:
        print(f"best: trial {best.number}, {options.metric} {best.value:.4f} -> {folder / BEST_CONFIG}")
        print(format_top(rows, options.direction))
    print(f"wrote {folder / TRIALS_CSV}" + "".join(f", {path.name}" for path in plots))
    return folder

