"""The moments a run is interrupted at, as callbacks a test adds with ``--trainer.callbacks+=``, and what the exact
resume tests share: the uninterrupted runs, trained once per option set and data set, and the comparison of final
states. Used by the folder's resume test and the converted data set's (tests/data/test_streaming.py)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from lightning_resnet.cli import main

from ..conftest import start_cli, tiny_args

HERE = "tests.training.interrupters"
LETTERBOXED = ["--data.image_size", "[16, 24]", "--data.resize", "pad"]
"""A rectangular input that images are letterboxed into (training's boxes of the image's own shape)."""
AUGMENTED = ["--data.train_augment", "standard",
             "--model.backbone_options", "{stem: cifar, channels: [16, 32, 64, 128], drop_path_rate: 0.1}"]
"""Per-sample augmentation seeds and stochastic depth (on tiny_args' quarter-width network): what an exact resume
must reproduce."""
FITTED_AFTER_TRAINING = ("temperature", "reject_below")
"""Not trained: fit ends by choosing them on the best epoch's validation logits, which a run resumed after its
best epoch never saw (they then stay 1 and no threshold; see inference/calibration.py)."""
STEP = 8
"""The global step the mid-epoch moments interrupt at: the third of six in the second epoch (24 images, batches
of 4)."""


class InterruptAtStep(Callback):
    """Ctrl-C at the start of training step 8, as the interrupt callback raises it."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == STEP:
            raise KeyboardInterrupt


class InterruptInBatchEnd(Callback):
    """A KeyboardInterrupt raised inside on_train_batch_end, after step 8's optimizer step (as a second
    Ctrl-C, which stops at once, can land)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == STEP:
            raise KeyboardInterrupt


class CtrlCMidForward(Callback):
    """A real SIGINT to this process in the middle of step 8's forward pass (between two stages)."""

    def on_train_start(self, trainer, pl_module):
        def signal_once(module, inputs):
            if pl_module.training and trainer.global_step == STEP and not getattr(self, "sent", False):
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

        pl_module.model.layer2.register_forward_pre_hook(signal_once)


class SigtermToTheGroup(Callback):
    """SIGTERM to the whole process group, loader workers included, as a cluster scheduler sends it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == STEP:
            os.killpg(os.getpgrp(), signal.SIGTERM)


class InterruptAfterEpoch(Callback):
    """Ctrl-C at the end of the second epoch."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def interruptible() -> None:
    """Ctrl-C reaches a child as from a terminal, even when the tests run where SIGINT is ignored (a background job
    of a non-interactive shell), which a child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_until_interrupted(cwd: Path, args: list[str], interrupter: str, exit_code: int, own_process: bool) -> None:
    """``args`` with the callback ``interrupter`` of this module added; the run must stop with ``exit_code``, having
    said where it saved. A signal, and the exit code a shell sees, need a real process of its own, started in
    ``cwd`` in a session of its own (its group is the one a signal to the group reaches)."""
    stop = f"--trainer.callbacks+={HERE}.{interrupter}"
    if own_process:
        process = start_cli(cwd, *args, stop, start_new_session=True, preexec_fn=interruptible)
        _, error = process.communicate(timeout=300)
        assert process.returncode == exit_code and "Traceback" not in error, error[-3000:]
        assert "interrupted: saved" in error and "--ckpt_path last" in error, error[-3000:]
    else:
        with pytest.raises(SystemExit) as stopped:
            main([*args, stop])
        assert stopped.value.code == exit_code


def final_state(run: Path) -> tuple[dict, dict]:
    """The weights and buffers, and the optimizer state, of a run's final ``last.ckpt``."""
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return saved["state_dict"], saved["optimizer_states"][0]


@dataclass(frozen=True)
class Finished:
    """What an uninterrupted run ended with."""

    weights: dict
    optimizer: dict
    metrics: dict[str, float]
    global_step: int


class UninterruptedRuns:
    """Each uninterrupted run trained once, in a folder of its own, however many moments compare with it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.finished: dict[tuple, Finished] = {}

    def of(self, data_dir: Path, options: list[str]) -> Finished:
        key = (str(data_dir), tuple(options))
        if key not in self.finished:
            name = f"uninterrupted_{len(self.finished)}"
            with pytest.MonkeyPatch.context() as patch:
                patch.chdir(self.root)
                run = main(tiny_args(data_dir, *options, "--trainer.logger.init_args.name", name))
            weights, optimizer = final_state(self.root / "logs" / name / "version_0")
            metrics = {key: float(run.trainer.callback_metrics[key]) for key in ("val/acc", "val/loss", "train/acc")}
            self.finished[key] = Finished(weights, optimizer, metrics, run.trainer.global_step)
        return self.finished[key]


def assert_resumed_exactly(straight: Finished, resumed_run: Path, resumed) -> None:
    """The resumed run ended with the uninterrupted one's weights, buffers, optimizer state and metrics."""
    weights, optimizer = final_state(resumed_run)
    assert resumed.trainer.global_step == straight.global_step
    differing = {key for key in weights if not torch.equal(weights[key], straight.weights[key])}
    assert differing <= set(FITTED_AFTER_TRAINING)
    assert optimizer["state"].keys() == straight.optimizer["state"].keys()
    for key, state in straight.optimizer["state"].items():
        assert all(torch.equal(value, optimizer["state"][key][name]) for name, value in state.items())
    for key, value in straight.metrics.items():
        assert float(resumed.trainer.callback_metrics[key]) == value
