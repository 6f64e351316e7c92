"""What a sweep leaves in its folder: ``trials.csv``, ``best.yaml`` (a config that ``fit --config`` runs to the best
trial's result), Optuna's plots, and the table of the best trials it prints."""

from __future__ import annotations

import copy
import csv
import warnings
from pathlib import Path
from typing import Any

import yaml

from ...training.checkpoints import FIT_SECONDS
from .study import FAIL_REASON, INTERRUPTED, MACHINE, RUN, SURPLUS

TRIALS_CSV = "trials.csv"
BEST_CONFIG = "best.yaml"


def write_trials_csv(path: Path, study: Any) -> list[dict[str, Any]]:
    """One row per trial of the study, in trial order, from its storage alone (a shared study's trials ran on
    several machines): its state, value, parameters, seconds, run folder, machine and, for a failed one, why."""
    trials = study.get_trials(deepcopy=False)
    keys = sorted({key for trial in trials for key in trial.params})
    rows = []
    for trial in trials:
        surplus = trial.user_attrs.get(SURPLUS)
        duration = trial.user_attrs.get(FIT_SECONDS)  # the one "seconds" of a run, as compare reports it
        rows.append({"trial": trial.number, "state": "surplus" if surplus else trial.state.name.lower(),
                     "value": trial.value if trial.value is not None else
                     (list(trial.intermediate_values.values())[-1] if trial.intermediate_values else None),
                     **{key: trial.params.get(key) for key in keys}, "seconds": duration,
                     "folder": trial.user_attrs.get(RUN, ""), "machine": trial.user_attrs.get(MACHINE, ""),
                     "reason": trial.user_attrs.get(FAIL_REASON) or
                     ("interrupted" if trial.user_attrs.get(INTERRUPTED) else
                      "asked for once the study had --trials trials: not run" if surplus else "")})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["trial", "state", "value", *keys, "seconds", "folder", "machine",
                                                    "reason"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_best_config(path: Path, fit_config: dict[str, Any], params: dict[str, Any]) -> None:
    """The sweep's ``fit`` options with the best trial's values: ``fit --config`` runs it again here, with the
    calibration and the test after fit that the trials left out."""
    config = copy.deepcopy(fit_config)
    for key, value in params.items():
        *parents, name = key.split(".")
        node = config
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                node[parent] = {}
            node = node[parent]
        node[name] = value
    config.setdefault("model", {})["calibrate"] = True
    config["test_after_fit"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_plots(study: Any, folder: Path) -> list[Path]:
    """Optuna's optimization history, parallel coordinates and parameter importances as PNGs."""
    import matplotlib.pyplot as pyplot  # Optuna's matplotlib plots draw on pyplot figures
    import optuna
    from optuna.visualization import matplotlib as plots

    written = []
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # its "[W] ... no complete trials" lines: the plot is left out
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
    optuna.logging.set_verbosity(verbosity)
    return written


def format_top(rows: list[dict[str, Any]], direction: str, count: int = 5) -> str:
    """The ``count`` best complete trials, with their parameters."""
    finished = [row for row in rows if row["state"] == "complete"]
    finished.sort(key=lambda row: row["value"], reverse=direction == "maximize")
    keys = [key for key in (rows[0] if rows else {}) if key not in ("trial", "state", "value", "seconds", "folder",
                                                                   "machine", "reason")]
    lines = [f"{'trial':>5}  {'value':>8}  " + "  ".join(keys)]
    for row in finished[:count]:
        lines.append(f"{row['trial']:>5}  {row['value']:>8.4f}  " + "  ".join(
            f"{row[key]:.4g}" if isinstance(row[key], float) else str(row[key]) for key in keys))
    return "\n".join(lines)
