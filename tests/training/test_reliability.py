"""Real-world folders, interruptions, safe checkpoints, faults, several processes and safe loading."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.plugins.io import TorchCheckpointIO
from PIL import Image, ImageFile

from lightning_resnet import ImageClassifier
from lightning_resnet.cli import main
from lightning_resnet.data import ImageFolderDataModule, load_image, unreadable_reason
from lightning_resnet.reports import TrainingReport

from ..conftest import ENV, datamodule, make_image_folder, start_cli, tiny_args


def cli_error(capsys, args: list[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_code:
        main(args)
    return exit_code.value.code, capsys.readouterr().err




# ----- bad data ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing", "a file", "no class folders"])
def test_bad_data_dir_is_one_line_naming_the_path_and_layout(workdir, capsys, case):
    target = workdir / "bad"
    if case == "a file":
        target.write_text("not a folder")
    elif case == "no class folders":
        target.mkdir()
        (target / "loose.jpg").write_bytes(b"")
    code, error = cli_error(capsys, tiny_args(target, "--trainer.fast_dev_run", "true"))
    assert code == 2
    assert error.count("\n") == 1 and "Traceback" not in error
    assert str(target) in error and f"expected {target}/<class name>/<image files>" in error


def test_a_real_process_prints_no_traceback(workdir):
    process = start_cli(workdir, *tiny_args(workdir / "nowhere", "--trainer.fast_dev_run", "true"))
    _, error = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in error and error.strip().splitlines()[-1].startswith("error: data folder")


def test_an_unknown_backbone_is_one_line_listing_the_names(workdir, capsys):
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.backbone", "resnet99"))
    assert code == 2 and error.count("\n") == 1
    assert "unknown backbone 'resnet99'; valid names: resnet18, resnet34" in error


def test_an_empty_class_folder_is_warned_about_and_left_out(image_folder):
    (image_folder / "class_9").mkdir()
    with pytest.warns(UserWarning, match="left out 1 empty class folder.*class_9"):
        assert datamodule(image_folder).class_names == ["class_0", "class_1", "class_2"]


def test_stray_hidden_and_upper_case_files(image_folder):
    folder = image_folder / "class_0"
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / "notes.txt").write_text("photographer's notes")
    (image_folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(folder / "UPPER.JPG")
    Image.new("RGB", (12, 12), (1, 2, 3)).save(folder / "Mixed.Png", format="PNG")
    data = datamodule(image_folder)
    paths = {Path(path).name for path, _ in data.source.split()[0] + data.source.split()[1]}
    assert {"UPPER.JPG", "Mixed.Png"} <= paths
    assert not {".DS_Store", "._001.png", "notes.txt"} & paths
    assert data.class_names == ["class_0", "class_1", "class_2"]


def broken_files(folder: Path) -> dict[str, str]:
    """A zero-byte, a truncated JPEG, a truncated PNG and a text file named as an image."""
    good = folder / "001.png"
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    png = good.read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image")
    return {"cut.jpg": "truncated JPEG", "cut.png": "truncated PNG", "zero.jpg": "empty file", "text.png": ""}


def test_broken_files_are_found_at_setup_listed_once_and_left_out(image_folder, monkeypatch):
    expected = broken_files(image_folder / "class_1")

    def no_full_decode(self, *args, **kwargs):
        raise AssertionError("the start-up check decoded a whole image")

    Image.init()  # import every format plugin first: some build small images when imported
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_full_decode)
    with pytest.warns(UserWarning) as caught:
        data = datamodule(image_folder, group_duplicates=False)  # the check alone: no hashes, no decoding
        train, val = data.source.split()
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1 and "left out 4 unreadable image(s) of 35" in messages[0]
    for name, reason in expected.items():
        assert name in messages[0] and reason in messages[0]
    kept = {Path(path).name for path, _ in train + val}
    assert "whole.jpg" in kept and not set(expected) & kept
    assert unreadable_reason(str(image_folder / "class_1" / "whole.jpg")) is None


def test_a_file_that_breaks_later_is_skipped_and_counted(image_folder):
    data = datamodule(image_folder, batch_size=6)
    data.setup("fit")
    Path(data.train_set.samples[0][0]).write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped unreadable image .*: "):
        for _ in range(2):
            batches = list(data.train_dataloader())
            assert all(len(images) == 6 for images, _ in batches)  # replaced by another sample
    assert data.skipped_images == 2
    for sample in data.val_set.samples[:2]:
        Path(sample[0]).write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        images = torch.cat([batch[0] for batch in data.val_dataloader()])
    assert len(images) == len(data.val_set) - 2
    assert data.skipped_images == 4


class BreakAFile(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            Path(trainer.datamodule.train_set.samples[3][0]).write_bytes(b"")


def test_fit_survives_a_file_that_breaks_in_a_worker_and_logs_the_count(image_folder):
    model = ImageClassifier(backbone="resnet18", num_classes=3, backbone_options={"stem": "cifar"})
    data = ImageFolderDataModule(data_dir=str(image_folder), image_size=32, batch_size=8, num_workers=1)
    trainer = Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=image_folder.parent,
                      callbacks=[BreakAFile(), TrainingReport()])  # which logs the count
    trainer.fit(model, datamodule=data)
    assert trainer.state.finished
    assert trainer.callback_metrics["data/skipped_images"] == 2  # read once in each of epochs 1 and 2


def test_small_images_are_scaled_up(tmp_path):
    make_image_folder(tmp_path / "tiny", classes=2, per_class=5, size=(5, 3))
    data = datamodule(tmp_path / "tiny", image_size=32, train_augment="standard")
    data.setup("fit")
    assert data.train_set[0][0].shape == (3, 32, 32) and data.val_set[0][0].shape == (3, 32, 32)


def test_class_count_mismatch_names_both(trained, workdir, capsys):
    make_image_folder(workdir / "four", classes=4, per_class=3)
    last = trained / "checkpoints" / "last.ckpt"
    code, error = cli_error(capsys, tiny_args(workdir / "four", "--ckpt_path", str(last), subcommand="validate"))
    assert code == 2 and "has 4 class folders and the model 3 classes: class_3 are not among" in error


# ----- interruptions --------------------------------------------------------------------------------


class SlowAfterFirstEpoch(Callback):
    """From the third step of the second epoch on, writes ``in_second_epoch`` in the working folder and makes
    each step slow: a signal sent once the file is there lands mid-epoch, whatever the machine's speed."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch >= 1 and batch_idx >= 2:
            Path("in_second_epoch").touch()
            time.sleep(0.5)


def interruptible() -> None:
    """Ctrl-C reaches the child as from a terminal, even when the tests run where SIGINT is ignored
    (a background job of a non-interactive shell), which a child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_fit_leaves_a_loadable_last_checkpoint_to_resume(workdir, signal_number):
    args = tiny_args(workdir / "images", "--trainer.max_epochs", "3", "--data.batch_size", "4")
    process = start_cli(workdir, *args, "--trainer.callbacks+=tests.training.test_reliability.SlowAfterFirstEpoch",
                              preexec_fn=interruptible)
    last = workdir / "logs/tiny/version_0/checkpoints/last.ckpt"
    ready = workdir / "in_second_epoch"
    deadline = time.time() + 180
    while not ready.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert ready.exists() and last.exists(), process.communicate()[1][-2000:]
    process.send_signal(signal_number)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
    saved = torch.load(last, weights_only=True)
    assert "interrupted: saved" in error
    assert 6 < saved["global_step"] < 12  # past the first epoch's 6 steps, inside the second
    cli = main([*args, "--ckpt_path", "last"])
    assert cli.trainer.global_step == 3 * 6  # 24 training images, batches of 4, three epochs
    assert not (workdir / "logs/tiny/version_1").exists()


# "temperature" and "reject_below" are not trained: fit ends by choosing them on the best epoch's validation
# logits, which a run resumed after its best epoch never saw (they then stay 1 and 0; see inference/calibration.py)
FITTED_AFTER_TRAINING = ("temperature", "reject_below")


class InterruptAfterEpoch(Callback):
    """Presses Ctrl-C at the end of an epoch (for the resume test)."""

    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise KeyboardInterrupt


def test_resume_at_an_epoch_boundary_ends_like_an_uninterrupted_run(workdir):
    common = ["--trainer.max_epochs", "3", "--data.train_augment", "standard",
              "--model.backbone_options", "{stem: cifar, drop_path_rate: 0.1}"]
    straight = main(tiny_args(workdir / "images", *common, "--trainer.logger.init_args.name", "straight"))
    interrupted = tiny_args(workdir / "images", *common, "--trainer.logger.init_args.name", "resumed")
    with pytest.raises(SystemExit):
        main([*interrupted, "--trainer.callbacks+=tests.training.test_reliability.InterruptAfterEpoch"])
    resumed = main([*interrupted, "--ckpt_path", "last"])
    first = straight.model.state_dict()
    second = resumed.model.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first if key not in FITTED_AFTER_TRAINING)
    for key in ("val/acc", "val/loss", "train/acc"):
        assert float(straight.trainer.callback_metrics[key]) == float(resumed.trainer.callback_metrics[key])


class InterruptAtStep(Callback):
    """Presses Ctrl-C at the start of training step 8: the third of six in the second epoch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 8:
            raise KeyboardInterrupt


class InterruptInBatchEnd(Callback):
    """A KeyboardInterrupt raised inside on_train_batch_end, after step 8's optimizer step (as a second
    Ctrl-C, which stops at once, can land)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 8:
            raise KeyboardInterrupt


class CtrlCMidForward(Callback):
    """A real SIGINT to this process in the middle of step 8's forward pass (between two stages)."""

    def on_train_start(self, trainer, pl_module):
        def signal_once(module, inputs):
            if pl_module.training and trainer.global_step == 8 and not getattr(self, "sent", False):
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)

        pl_module.model.layer2.register_forward_pre_hook(signal_once)


class SigtermToTheGroup(Callback):
    """SIGTERM to the whole process group, loader workers included, as a cluster scheduler sends it."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 8:
            os.killpg(os.getpgrp(), signal.SIGTERM)


AUGMENTED = ["--data.train_augment", "standard", "--model.backbone_options", "{stem: cifar, drop_path_rate: 0.1}"]
MOMENTS = {
    # (options, interrupter, options on resume, the interrupted run's exit code, run as a process of its own)
    # per-image augmentation seeds: the resumed run may even use another number of loader workers
    "step start, augmented, drop-path, workers changed": (AUGMENTED, "InterruptAtStep", ["--data.num_workers", "1"],
                                                          130, False),
    "step start, inside the unfreeze epoch": (["--model.freeze_backbone", "true", "--model.unfreeze_at_epoch", "1"],
                                              "InterruptAtStep", [], 130, False),
    "inside on_train_batch_end": (AUGMENTED, "InterruptInBatchEnd", [], 130, False),
    "inside on_train_batch_end, unfreeze epoch": (["--model.freeze_backbone", "true", "--model.unfreeze_at_epoch",
                                                   "1"], "InterruptInBatchEnd", [], 130, False),
    "Ctrl-C mid-forward, 2 workers": ([*AUGMENTED, "--data.num_workers", "2"], "CtrlCMidForward", [], 130, False),
    "SIGTERM to the process group, 2 workers": ([*AUGMENTED, "--data.num_workers", "2"], "SigtermToTheGroup", [],
                                                128 + signal.SIGTERM, True),
}


def run_until_interrupted(cwd: Path, args: list[str], interrupter: str, exit_code: int, own_process: bool) -> None:
    """``args`` with the callback ``interrupter`` of this module added; the run must stop with ``exit_code``. A
    signal to the whole process group needs a real process of its own, started in ``cwd``."""
    stop = f"--trainer.callbacks+=tests.training.test_reliability.{interrupter}"
    if own_process:
        process = start_cli(cwd, *args, stop, start_new_session=True)
        _, error = process.communicate(timeout=300)
        assert process.returncode == exit_code and "Traceback" not in error, error[-3000:]
    else:
        with pytest.raises(SystemExit) as stopped:
            main([*args, stop])
        assert stopped.value.code == exit_code


def final_state(run: Path) -> tuple[dict, dict]:
    """The weights and buffers, and the optimizer state, of a run's final ``last.ckpt``."""
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return saved["state_dict"], saved["optimizer_states"][0]


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_an_interrupt_at_any_moment_resumes_to_the_uninterrupted_runs_weights_buffers_and_optimizer(workdir, moment):
    options, interrupter, on_resume, exit_code, own_process = MOMENTS[moment]
    common = ["--trainer.max_epochs", "3", "--data.batch_size", "4", *options]
    straight = main(tiny_args(workdir / "images", *common, "--trainer.logger.init_args.name", "straight"))
    interrupted = tiny_args(workdir / "images", *common, "--trainer.logger.init_args.name", "resumed")
    run_until_interrupted(workdir, interrupted, interrupter, exit_code, own_process)
    saved = torch.load(workdir / "logs/resumed/version_0/checkpoints/last.ckpt", weights_only=True)
    assert 6 < saved["global_step"] < 12  # interrupted mid-epoch, not at a boundary
    resumed = main([*interrupted, *on_resume, "--ckpt_path", "last"])
    assert resumed.trainer.global_step == straight.trainer.global_step == 3 * 6
    (weights, optimizer), (weights_again, optimizer_again) = (final_state(workdir / "logs" / name / "version_0")
                                                              for name in ("straight", "resumed"))
    differing = {key for key in weights if not torch.equal(weights[key], weights_again[key])}
    assert differing <= set(FITTED_AFTER_TRAINING)
    assert optimizer["state"].keys() == optimizer_again["state"].keys()
    for key, state in optimizer["state"].items():
        assert all(torch.equal(value, optimizer_again["state"][key][name]) for name, value in state.items())
    for key in ("val/acc", "val/loss", "train/acc"):
        assert float(straight.trainer.callback_metrics[key]) == float(resumed.trainer.callback_metrics[key])


# ----- safe checkpoint writes -------------------------------------------------------------------


def test_the_command_line_keeps_lightnings_checkpoint_writer(workdir):
    cli = main(tiny_args(workdir / "images", "--trainer.fast_dev_run", "true"))
    assert type(cli.trainer.strategy.checkpoint_io) is TorchCheckpointIO


def test_a_process_killed_mid_write_leaves_the_old_checkpoint_whole(tmp_path):
    """Lightning's writer (an fsspec transaction) keeps ``last.ckpt`` whole when a write dies.

    The child may write at most 1 MB to any file; the kernel kills it (SIGXFSZ) part-way through
    a 4 MB checkpoint. A writer that wrote straight into ``last.ckpt`` would leave it cut short.
    """
    target = tmp_path / "checkpoints" / "last.ckpt"
    TorchCheckpointIO().save_checkpoint({"epoch": 1, "weights": torch.zeros(1000)}, target)
    script = textwrap.dedent(f"""
        import resource, signal, torch
        from lightning.pytorch import Trainer
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default is to die
        trainer = Trainer(accelerator="cpu", logger=False)
        trainer.strategy.checkpoint_io.save_checkpoint({{"epoch": 2, "weights": torch.ones(10**6)}}, {str(target)!r})
    """)
    (tmp_path / "tmp").mkdir()
    env = {**ENV, "TMPDIR": str(tmp_path / "tmp")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGXFSZ, result.stderr.decode()[-2000:]
    checkpoint = torch.load(target, weights_only=True)
    assert checkpoint["epoch"] == 1 and torch.equal(checkpoint["weights"], torch.zeros(1000))
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]


# ----- numerical faults --------------------------------------------------------------------------


class PoisonWeightsAtEpoch(Callback):
    def __init__(self, epoch: int = 1):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            with torch.no_grad():
                pl_module.model.fc.weight.fill_(float("nan"))


def test_a_non_finite_loss_stops_with_a_message_and_keeps_the_good_checkpoints(workdir, capsys):
    code, error = cli_error(capsys, tiny_args(
        workdir / "images", "--trainer.max_epochs", "3",
        "--trainer.callbacks+=tests.training.test_reliability.PoisonWeightsAtEpoch"))
    assert code == 1 and error.count("\n") == 1
    assert "the training loss is nan at epoch 1" in error and "last good checkpoints are kept in" in error
    folder = workdir / "logs/tiny/version_0/checkpoints"
    for path in folder.glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=True)
        assert checkpoint["global_step"] == 3  # the end of epoch 0
        assert all(torch.isfinite(tensor).all() for key, tensor in checkpoint["state_dict"].items()
                   if key != "reject_below")  # -inf until calibration chooses it: no threshold


# ----- several processes ---------------------------------------------------------------------------


# ----- safe loading -------------------------------------------------------------------------------


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_checkpoint_that_would_run_code_is_refused(trained, workdir, capsys):
    marker = workdir / "code_ran"
    evil = workdir / "evil.ckpt"
    checkpoint = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["payload"] = RunsCode(marker)
    torch.save(checkpoint, evil)
    for subcommand in ("fit", "predict"):
        code, error = cli_error(capsys, tiny_args(workdir / "images", "--ckpt_path", str(evil),
                                                  "--data.predict_dir", str(workdir / "holdout"),
                                                  subcommand=subcommand))
        assert code == 1 and "refusing a checkpoint" in error and "Traceback" not in error
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--model.pretrained", str(evil),
                                              "--trainer.fast_dev_run", "true"))
    assert "refusing to load" in error
    assert not marker.exists()


def test_nothing_reaches_the_network(workdir, monkeypatch):
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    cli = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1"))
    assert cli.trainer.state.finished
    assert not [address for address in attempts if not str(address).startswith(("127.", "/"))]


def test_load_image_reads_what_the_check_accepts(image_folder):
    for path in image_folder.rglob("*.*"):
        assert unreadable_reason(str(path)) is None
        assert load_image(path).shape[0] == 3
