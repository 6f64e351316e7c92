"""Shared pieces of the benchmarks: the machine, interleaved timing, tables."""

from __future__ import annotations

import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {torch.get_num_threads()} threads, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def command() -> str:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(ROOT).as_posix() if script.is_relative_to(ROOT) else str(script)
    return " ".join(["python", shown, *sys.argv[1:]])


def interleaved(candidates: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each candidate once per round, alternating the order, and collect what each returns.

    Alternating keeps slow drifts of a shared machine (other tenants, clock changes) from
    favouring whichever candidate happens to run first.
    """
    results: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            results[name].append(candidates[name]())
    return results


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(title: str, body: str) -> None:
    print(f"\n### {title}\n\n{body}\n\nMachine: {machine()}\nCommand: `{command()}`\n", flush=True)


class StepTimes(Callback):
    """The wall-clock time at the end of every training step, for steady-state throughput."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.batch_sizes: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter())
        self.batch_sizes.append(len(batch[0]))


def steady_throughput(times: list[float], batch_sizes: list[int], skip: int) -> float:
    """Images per second of the median step after the first ``skip`` steps.

    The median step, not the mean, so that a moment of contention on a shared machine does not
    decide the figure.
    """
    durations = [later - earlier for earlier, later in zip(times[skip:], times[skip + 1 :])]
    return median(batch_sizes[skip + 1 :]) / median(durations)

