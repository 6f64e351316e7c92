"""A run that fails ends within seconds, with its message and exit code, and leaves no process of its group behind:
loader workers (which ignore SIGTERM), DDP ranks, cross-validation's launcher and folds. Real processes: the process
group and the exit code are the point. (A sweep's trials: tests/cli/test_sweep.py stops a sweep with SIGTERM to its
group.)"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest
from lightning.pytorch import Callback

from ..conftest import ended_with_its_group, start_cli, tiny_args
from .test_errors import CASES, command, error_lines, folder  # noqa: F401, F811  (folder: the cases' fixture)

pytestmark = pytest.mark.slow  # real processes, failed on purpose

FAIL_AT = "--trainer.callbacks+=tests.cli.test_child_processes.FailAt"


class SlowSteps(Callback):
    """A tenth of a second per step: a fold still training when the test kills its command."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(0.1)


class FailAt(Callback):
    """Raises in ``hook`` at its second batch (the loader workers are running by then), in process ``rank`` only."""

    def __init__(self, hook: str = "on_train_batch_end", rank: int = 0) -> None:
        self.hook = hook
        self.rank = rank

    def _fail(self, trainer, hook: str, batch_idx: int) -> None:
        if hook == self.hook and batch_idx == 1 and trainer.global_rank == self.rank:
            raise RuntimeError(f"a failing {hook}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._fail(trainer, "on_train_batch_end", batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._fail(trainer, "on_validation_batch_end", batch_idx)


REAL_PROCESS_CASES = ["an unknown key in a config", "a truncated checkpoint"]
"""The parser's and Lightning's loading error of tests/cli/test_errors.py, as a user meets them from ``python -m
lightning_resnet``: one line, exit code 2, no traceback. (test_errors.py runs every case, a constructor's among them,
through the same ``main`` in the tests' process; each real process here costs ~4.5 s of start-up.)"""


def test_failures_end_the_process_and_its_workers_within_seconds_with_one_line(workdir, folder):  # noqa: F811
    """Run at once: the three moments with 2 loader workers each (a trainer option Lightning refuses once the
    training loader has started its workers, a training step that fails and a validation that fails), one failing
    process of two under DDP, user errors of each kind before any worker starts, a cross-validation whose fold fails
    in a step, and one whose command is killed (SIGKILL: it runs nothing more) while its fold trains."""
    errors = {case: start_cli(folder, *command(case), env={"XDG_CACHE_HOME": str(folder / "cache")},
                              start_new_session=True) for case in REAL_PROCESS_CASES}
    # under DDP the other process would wait in its next collective for the one that failed, 30 minutes
    ddp = start_cli(workdir, *tiny_args(workdir / "images", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                                        "--data.batch_size", "4", "--trainer.max_epochs", "2", FAIL_AT,
                                        "--trainer.callbacks.rank", "1", "--trainer.logger.init_args.name", "ddp"),
                    start_new_session=True)
    workers = ["--data.num_workers", "2", "--data.batch_size", "4", "--trainer.max_epochs", "2"]

    def cross_validation(name: str, *options: str):
        return start_cli(workdir, *tiny_args(workdir / "images", *workers, "--data.num_folds", "2", *options,
                                             "--trainer.logger.init_args.name", name, subcommand="cross_validate"),
                         start_new_session=True)

    failing_fold = cross_validation("cv_failing", FAIL_AT, "--trainer.callbacks.hook", "on_train_batch_end")
    killed = cross_validation("cv_killed", "--trainer.max_epochs", "50",
                              "--trainer.callbacks+=tests.cli.test_child_processes.SlowSteps")
    cases = {
        "refused": (["--trainer.limit_val_batches", "0.0001"], 2, "limit_val_batches"),
        "training step": ([FAIL_AT, "--trainer.callbacks.hook", "on_train_batch_end"], 1,
                          "a failing on_train_batch_end"),
        "validation": ([FAIL_AT, "--trainer.callbacks.hook", "on_validation_batch_end"], 1,
                       "a failing on_validation_batch_end"),
    }
    processes = {name: start_cli(workdir, *tiny_args(workdir / "images", *workers, *options,
                                                     "--trainer.logger.init_args.name", name),
                                 start_new_session=True)
                 for name, (options, _, _) in cases.items()}
    for name, process in processes.items():
        code, error = ended_with_its_group(process, timeout=60)
        _, expected_code, words = cases[name]
        assert code == expected_code and words in error, (name, error[-2000:])
    for case, process in errors.items():
        code, error = ended_with_its_group(process, timeout=60)
        words = next(words for name, _, words in CASES if name == case)
        lines = error_lines(error)
        assert code == 2 and "Traceback" not in error, error[-2000:]
        assert len(lines) == 1 and all(word in lines[0] for word in words), (case, lines)
    code, error = ended_with_its_group(ddp, timeout=120)
    assert code != 0 and "a failing on_train_batch_end" in error, error[-3000:]
    code, error = ended_with_its_group(failing_fold, timeout=60)
    assert code == 1 and "a failing on_train_batch_end" in error, error[-2000:]
    deadline = time.monotonic() + 120  # the launcher, then its fork the fold, then the fold's loader workers
    while len(psutil.Process(killed.pid).children(recursive=True)) < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(psutil.Process(killed.pid).children(recursive=True)) >= 4
    os.kill(killed.pid, signal.SIGKILL)
    code, _ = ended_with_its_group(killed, timeout=15)
    assert code == -signal.SIGKILL
