"""The space file of a sweep: dotted ``fit`` keys, each ``{low, high[, log][, step]}`` or ``{choices: [...]}``,
read as Optuna's distributions, and each key checked against what ``fit`` takes before any trial runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from ...errors import UserError, check, first_line

Space = dict[str, Any]
"""Optuna's distributions by dotted ``fit`` key."""


def read_space(path: Path) -> Space:
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


def as_option(key: str, value: Any) -> list[str]:
    """``--key value`` as ``fit`` reads it (lists, mappings and booleans as JSON)."""
    return [f"--{key}", json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)]


def check_keys(space: Space, parser: ArgumentParser, args: list[str]) -> None:
    """Parse ``args`` once with each key of the space at its first value: a key ``fit`` does not take, or a value
    it refuses, is one line naming it."""
    exit_on_error, parser.exit_on_error = parser.exit_on_error, False
    try:
        for key, distribution in space.items():
            first = distribution.choices[0] if hasattr(distribution, "choices") else distribution.low
            try:
                parser.parse_args([*args, *as_option(key, first)])
            except Exception as error:  # jsonargparse's ArgumentError, or a value its type refuses
                raise UserError(f"--space: fit does not take {key}={first!r}: {first_line(error)}") from None
    finally:
        parser.exit_on_error = exit_on_error
