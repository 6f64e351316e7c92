"""Ctrl-C and SIGTERM during ``fit`` save ``last.ckpt``, and ``fit --ckpt_path last`` continues in the same run
folder to the weights, BatchNorm buffers, optimizer state and metrics of a run never interrupted, at every moment
an interrupt can land: a step's start, inside a callback hook, mid-forward, with loader workers, an epoch's end, the
epoch that unfreezes a frozen backbone; as a real process where the signal and the exit code are the point."""

from __future__ import annotations

import signal

import pytest
import torch

from lightning_resnet.cli import main

from ..conftest import make_image_folder, tiny_args
from .interrupters import AUGMENTED, LETTERBOXED, STEP, UninterruptedRuns, assert_resumed_exactly, run_until_interrupted

UNFREEZING = ["--model.freeze_backbone", "true", "--model.unfreeze_at_epoch", "1"]
TEACHER = "<the shared tiny fit's best checkpoint>"
TAUGHT = [*AUGMENTED, "--model.distillation.teacher", TEACHER]
POOL = "<a folder of unlabelled images>"
SEMI_SUPERVISED = [*AUGMENTED, "--data.unlabelled_dir", POOL, "--data.unlabelled_ratio", "2",
                   "--model.semi_supervised.method", "freematch"]
"""Two loaders (the unlabelled one's stream goes on across epochs) and FreeMatch's moving thresholds."""
MOMENTS = {
    # (options, loader workers, interrupter, workers on resume, the interrupted run's exit code, a process of its
    # own, mid-epoch). The uninterrupted run of each option set is trained once, with no loader worker: per-image
    # augmentation seeds make the result the same whatever the workers, which one moment changes on resume.
    "step start, augmented, drop-path, workers changed on resume": (AUGMENTED, 0, "InterruptAtStep", 2, 130, False,
                                                                    True),
    "step start, inside the unfreeze epoch": (UNFREEZING, 0, "InterruptAtStep", 0, 130, False, True),
    "step start, letterboxed into 16 x 24": ([*AUGMENTED, *LETTERBOXED], 0, "InterruptAtStep", 0, 130, False, True),
    "inside on_train_batch_end, taught by a teacher": (TAUGHT, 0, "InterruptInBatchEnd", 0, 130, False, True),
    "inside on_train_batch_end, unfreeze epoch": (UNFREEZING, 0, "InterruptInBatchEnd", 0, 130, False, True),
    "Ctrl-C mid-forward, 2 workers, a real process": (AUGMENTED, 2, "CtrlCMidForward", 2, 130, True, True),
    "SIGTERM to the process group, 2 workers": (AUGMENTED, 2, "SigtermToTheGroup", 2, 128 + signal.SIGTERM, True,
                                                True),
    "an epoch's end": (AUGMENTED, 0, "InterruptAfterEpoch", 0, 130, False, False),
    "SIGTERM to the process group, semi-supervised, 2 workers a loader": (SEMI_SUPERVISED, 2, "SigtermToTheGroup", 2,
                                                                         128 + signal.SIGTERM, True, True),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[UninterruptedRuns, object]:
    root = tmp_path_factory.mktemp("resume")
    make_image_folder(root / "pool", classes=3, per_class=7, seed=21)  # 21: the stream starts a new pass mid-epoch
    return UninterruptedRuns(root), make_image_folder(root / "images", classes=3, per_class=10)


@pytest.mark.parametrize("moment", [pytest.param(name, marks=pytest.mark.slow)
                                    if MOMENTS[name][5] or MOMENTS[name][1] or MOMENTS[name][3]
                                    or "letterboxed" in name or "semi" in name else name
                                    for name in MOMENTS])  # a real process, loader workers, a second data set: slow
def test_an_interrupt_at_any_moment_resumes_to_the_uninterrupted_runs_weights_buffers_and_optimizer(
        uninterrupted, trained_once, tmp_path, monkeypatch, moment):
    runs, images = uninterrupted
    options, workers, interrupter, workers_on_resume, exit_code, own_process, mid_epoch = MOMENTS[moment]
    teacher = str(next((trained_once / "tiny/version_0/checkpoints").glob("best-*.ckpt")))
    replaced = {TEACHER: teacher, POOL: str(images.parent / "pool")}
    options = [replaced.get(option, option) for option in options]
    common = ["--trainer.max_epochs", "3", "--data.batch_size", "4", *options]
    straight = runs.of(images, common)
    monkeypatch.chdir(tmp_path)
    interrupted = tiny_args(images, *common, "--data.num_workers", str(workers))
    run_until_interrupted(tmp_path, interrupted, interrupter, exit_code, own_process)
    saved = torch.load(tmp_path / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    # 6 steps an epoch: inside the second epoch, or at its end
    assert (STEP <= saved["global_step"] < 12) if mid_epoch else saved["global_step"] == 12
    resumed = main([*interrupted, "--data.num_workers", str(workers_on_resume), "--ckpt_path", "last"])
    assert_resumed_exactly(straight, tmp_path / "logs/tiny/version_0", resumed)
    assert not (tmp_path / "logs/tiny/version_1").exists()  # continued in the run's own folder
