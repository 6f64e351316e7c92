"""``compare``: runs side by side, from what they already wrote: each run's ``config.yaml`` and the validation
scores its best checkpoint carries (those of the epoch ``ModelCheckpoint`` chose it at).

``python -m lightning_resnet compare logs/demo`` lists every run under the folders given (plain runs,
cross-validation folds) as one row each, sorted by ``--metric`` at the run's best epoch, with only the config keys
that differ between the runs; runs whose configs differ by ``seed_everything`` alone are one row with the mean ±
standard deviation and their count. The table is also written to ``compare.csv`` in the folder the folders given
share (``--output`` chooses another file). ``compare RUN_A RUN_B`` (two run folders) prints what differs between
them: config keys and scores.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from jsonargparse import Namespace

from ..errors import UserError, check
from ..training.checkpoints import FIT_SECONDS, best_checkpoint_of_run, epoch_metrics
from .options import CommandParser, add_objective_options

COMMAND = "compare"
COMPARE_CSV = "compare.csv"
SEED_KEY = "seed_everything"
RUN_SPECIFIC = ("trainer.logger.init_args.version", "ckpt_path", "trainer.enable_model_summary")
"""Keys that differ between any two runs without saying anything about their results (cross_validate prints the
layer table for its first fold only)."""


@dataclass(frozen=True)
class Run:
    """A run folder, its config as dotted keys, the scores of its best epoch, its epochs and its seconds (the wall
    time of its ``fit``, every part of a resumed run included; NaN for a run written before they were kept)."""

    folder: Path
    config: dict[str, Any]
    scores: dict[str, float]
    epochs: int
    seconds: float


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    parser.add_argument("folders", type=Path, nargs="+", help="experiment, run or cross-validation folders")
    add_objective_options(parser, "the score to sort by")
    parser.add_argument("--output", type=Path | None, default=None,
                        help=f"the table's CSV file (default: {COMPARE_CSV} in the folder the folders given share)")
    return parser.parse_args(args)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"backbone": "resnet18"}}`` as ``{"model.backbone": "resnet18"}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_run(folder: Path) -> Run:
    """One run folder (it holds ``config.yaml`` and ``checkpoints/last.ckpt``); one line when it has no scores."""
    check((folder / "checkpoints").is_dir(),
          f"{folder} is not a fit run (it has no checkpoints/; validate, test, predict and lr_find write runs "
          "of their own): give two fit runs, such as those `compare logs/<experiment>` lists")
    best = best_checkpoint_of_run(folder)
    if best is None or not best.path.is_file():
        raise UserError(f"{folder} has no validated checkpoint yet (checkpoints/last.ckpt naming a best one): "
                        "is the run still in its first epoch, or was it run without validation?")
    config = flatten(yaml.safe_load((folder / "config.yaml").read_text()) or {})
    callbacks = [callback for callback in config.get("trainer.callbacks") or []
                 if not str(callback.get("class_path", "")).endswith(".TrialReport")]  # a sweep's, one per trial
    config["trainer.callbacks"] = callbacks or None
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return Run(folder, config, epoch_metrics(best.path), int(last.get("epoch", 0)) + 1,
               float(last.get(FIT_SECONDS, math.nan)))


def find_runs(folders: list[Path]) -> list[Path]:
    """Every run folder under ``folders`` (a folder with ``config.yaml`` and ``checkpoints/``), sorted."""
    runs = []
    for folder in folders:
        check(folder.is_dir(), f"{folder} is not a folder: expected an experiment or run folder under logs/")
        found = sorted(config.parent for config in folder.rglob("config.yaml")
                       if (config.parent / "checkpoints").is_dir())
        check(bool(found), f"{folder} holds no run (a folder with config.yaml and checkpoints/); "
                           "give logs/<experiment> or one of its version_N folders")
        runs.extend(found)
    return sorted(dict.fromkeys(runs))


def differing_keys(runs: list[Run]) -> list[str]:
    """The config keys whose values are not the same in every run, less the run-specific ones."""
    keys = sorted({key for run in runs for key in run.config} - set(RUN_SPECIFIC))
    return [key for key in keys if len({repr(run.config.get(key)) for run in runs}) > 1]


def rows(runs: list[Run], metric: str, keys: list[str], descending: bool) -> list[dict[str, Any]]:
    """One row per group of runs whose configs differ by the seed alone; sorted by ``metric``."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        identity = repr([(key, run.config.get(key)) for key in keys if key != SEED_KEY])
        groups.setdefault(identity, []).append(run)
    table = []
    for members in groups.values():
        values = [run.scores.get(metric) for run in members]
        known = [value for value in values if value is not None]
        row = {"run": ", ".join(str(run.folder) for run in members), "runs": len(members)}
        row |= {key: members[0].config.get(key) for key in keys if key != SEED_KEY or len(members) == 1}
        row[metric] = statistics.fmean(known) if known else None
        row[f"{metric} std"] = statistics.stdev(known) if len(known) > 1 else None
        for name in sorted({name for run in members for name in run.scores} - {metric}):
            scores = [run.scores[name] for run in members if name in run.scores]
            row[name] = statistics.fmean(scores) if scores else None
        row["epochs"] = statistics.fmean(run.epochs for run in members)
        row["seconds"] = statistics.fmean(run.seconds for run in members)
        table.append(row)
    missing = [row for row in table if row[metric] is None]
    ranked = sorted((row for row in table if row[metric] is not None), key=lambda row: row[metric],
                    reverse=descending)
    return ranked + missing


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(table: list[dict[str, Any]], metric: str) -> str:
    columns = list(dict.fromkeys(key for row in table for key in row))
    widths = {column: max(len(column), *(len(_shown(row.get(column))) for row in table)) for column in columns}
    lines = ["  ".join(f"{column:<{widths[column]}}" for column in columns)]
    lines += ["  ".join(f"{_shown(row.get(column)):<{widths[column]}}" for column in columns) for row in table]
    return f"{len(table)} row(s), best {metric} first\n" + "\n".join(lines)


def format_difference(first: Run, second: Run) -> str:
    """What differs between two runs: config keys, then scores (second minus first)."""
    keys = differing_keys([first, second])
    lines = [f"A = {first.folder}", f"B = {second.folder}", "config:" if keys else "config: the same"]
    lines += [f"  {key}: {_shown(first.config.get(key))} -> {_shown(second.config.get(key))}" for key in keys]
    lines.append("scores at each run's best epoch:")
    for name in sorted(set(first.scores) | set(second.scores)):
        a, b = first.scores.get(name), second.scores.get(name)
        change = f" ({b - a:+.4f})" if a is not None and b is not None else ""
        lines.append(f"  {name}: {_shown(a)} -> {_shown(b)}{change}")
    lines.append(f"epochs: {first.epochs} -> {second.epochs}; seconds: {first.seconds:.0f} -> {second.seconds:.0f}")
    return "\n".join(lines)


def write_csv(path: Path, table: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in table for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)


def compare(args: list[str]) -> str:
    """Print (and return) the comparison of the runs under the folders given."""
    options = parse(args)
    is_two_runs = len(options.folders) == 2 and all((folder / "config.yaml").is_file() for folder in options.folders)
    if is_two_runs:
        printed = format_difference(read_run(options.folders[0]), read_run(options.folders[1]))
    else:
        runs = [read_run(folder) for folder in find_runs(options.folders)]
        table = rows(runs, options.metric, differing_keys(runs), options.direction == "maximize")
        output = options.output or Path(os.path.commonpath([folder.resolve() for folder in options.folders])) / \
            COMPARE_CSV
        output.parent.mkdir(parents=True, exist_ok=True)
        write_csv(output, table)
        printed = f"{format_table(table, options.metric)}\nwritten to {output}"
    print(printed)
    return printed
