"""A run that fails ends within seconds, with its message and exit code, and leaves no process of its group behind:
loader workers (which ignore SIGTERM), DDP ranks, a sweep's trials. Real processes: the process group is the point."""

from __future__ import annotations

import os
import signal
import time

from lightning.pytorch import Callback

from ..conftest import start_cli, tiny_args

FAIL_AT = "--trainer.callbacks+=tests.cli.test_child_processes.FailAt"


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


def ended_with_its_group(process, timeout: float) -> tuple[int, str]:
    """Wait at most ``timeout`` seconds for ``process`` (started with ``start_new_session``); then its exit code and
    stderr, once no process of its group is left (what it started is ended with it, not merely orphaned)."""
    started = time.monotonic()
    _, error = process.communicate(timeout=timeout)
    while time.monotonic() - started < timeout:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return process.returncode, error
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"processes of the group were left running: {error[-2000:]}")


def test_failures_after_the_loader_workers_started_end_the_process_and_its_workers(workdir):
    """The three moments with 2 loader workers each, run at once: a trainer option Lightning refuses once the
    training loader has started its workers, a training step that fails and a validation that fails."""
    workers = ["--data.num_workers", "2", "--data.batch_size", "4", "--trainer.max_epochs", "2"]
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


def test_one_failing_process_of_two_ends_both(workdir):
    """Under DDP the other process would wait in its next collective for the one that failed, 30 minutes."""
    process = start_cli(workdir, *tiny_args(workdir / "images", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                                            "--data.batch_size", "4", "--trainer.max_epochs", "2", FAIL_AT,
                                            "--trainer.callbacks.rank", "1"), start_new_session=True)
    code, error = ended_with_its_group(process, timeout=120)
    assert code != 0 and "a failing on_train_batch_end" in error, error[-3000:]


def test_sigterm_to_a_sweeps_group_mid_trial_stops_it_with_the_study_kept(workdir):
    space = workdir / "space.yaml"
    space.write_text("model.label_smoothing: {low: 0.0, high: 0.2}\n")
    args = tiny_args(workdir / "images", "--trainer.max_epochs", "3", "--data.batch_size", "4",
                     "--trainer.callbacks+=tests.cli.test_child_processes.SlowSteps", subcommand="sweep")
    process = start_cli(workdir, *args, "--space", str(space), "--trials", "2", start_new_session=True)
    first_epoch = workdir / "logs/tiny/sweep_space/trial_0/checkpoints/last.ckpt"
    deadline = time.monotonic() + 120
    while not first_epoch.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGTERM)
    code, error = ended_with_its_group(process, timeout=60)
    assert code == 128 + signal.SIGTERM and "the same command continues it" in error, error[-2000:]
    assert "interrupted: saved" in (workdir / "logs/tiny/sweep_space/trial_0.log").read_text()  # the trial saved


class SlowSteps(Callback):
    """A tenth of a second per step, so that a signal lands in the middle of a trial."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(0.1)
