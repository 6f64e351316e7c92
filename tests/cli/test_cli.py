"""``python -m lightning_resnet``: fit, validate, test, predict, resume and configs, end to end."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from lightning_resnet.cli import main
from lightning_resnet.cli.commands import COMMANDS

from ..conftest import QUARTER_WIDTH, ROOT, description_of, make_image_folder, tiny_args

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def test_fit_writes_checkpoints_logs_and_config(trained):
    checkpoints = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints
    assert any(name.startswith("best-epoch") for name in checkpoints)
    assert list(trained.glob("events.out.tfevents.*"))
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["model"]["backbone"] == "resnet18" and config["data"]["image_size"] == 16
    last = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1
    assert last["hyper_parameters"]["num_classes"] == 3
    assert last["class_names"] == ["class_0", "class_1", "class_2"]
    assert "val/acc" in str(last["callbacks"])


def test_last_checkpoint_is_the_latest_epoch_even_without_improvement(workdir):
    make_image_folder(workdir / "easy", classes=2, per_class=10)
    main(tiny_args(workdir / "easy", "--trainer.max_epochs", "3"))
    folder = workdir / "logs/tiny/version_0/checkpoints"
    last = torch.load(folder / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * 2  # 16 training images, batches of 8
    best = torch.load(next(folder.glob("best-*.ckpt")), weights_only=True)
    assert best["global_step"] <= last["global_step"]
    assert sorted(p.name for p in folder.iterdir())[-1] == "last.ckpt" and len(list(folder.iterdir())) == 2


def test_the_class_count_is_linked_from_the_data(workdir):
    make_image_folder(workdir / "five", classes=5, per_class=4)
    cli = main(tiny_args(workdir / "five", "--trainer.fast_dev_run", "true"))
    assert cli.model.num_classes == 5 and cli.model.model.fc.out_features == 5
    assert cli.model.class_names == [f"class_{i}" for i in range(5)]


@pytest.mark.slow  # 1.8-2.9 s in make check's fresh-clone run (pyproject.toml's marker: 1.7 s or more)
def test_validate_test_and_predict_from_the_checkpoint(trained, workdir):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best), subcommand="validate"))
    assert 0.0 <= cli.trainer.callback_metrics["val/acc"] <= 1.0
    assert {"val/acc", "val/f1", "val/loss"} <= set(cli.trainer.callback_metrics)
    assert "val/acc_top5" not in cli.trainer.callback_metrics  # 3 classes: every image is in its top 5

    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.test_dir", str(workdir / "holdout"),
                         subcommand="test"))
    assert {"test/acc", "test/f1", "test/loss"} <= set(cli.trainer.callback_metrics)

    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", str(workdir / "holdout"),
                         subcommand="predict"))
    batches = cli.trainer.predict_loop.predictions
    probabilities = torch.cat([batch["probabilities"] for batch in batches])
    assert probabilities.shape == (9, 3)
    assert torch.allclose(probabilities.sum(1), torch.ones(9))


def test_predict_needs_no_training_folder(trained, workdir):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    image = next((workdir / "holdout" / "class_2").iterdir())
    cli = main(tiny_args(workdir / "gone", "--ckpt_path", str(best), "--data.predict_dir", str(image),
                         subcommand="predict"))
    assert cli.model.class_names == ["class_0", "class_1", "class_2"]
    assert cli.trainer.predict_loop.predictions[0]["probabilities"].shape == (1, 3)


def test_resume_from_last_continues_in_the_same_run(trained, workdir):
    main(tiny_args(workdir / "images", "--trainer.max_epochs", "3", "--ckpt_path", "last"))
    assert not (workdir / "logs" / "tiny" / "version_1").exists()
    last = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 3 * 3  # 24 training images, batches of 8, three epochs
    assert (trained / "config.yaml").is_file()


def test_a_fit_without_ckpt_path_starts_afresh_beside_a_stray_last_checkpoint(trained, workdir):
    shutil.copy(trained / "checkpoints" / "last.ckpt", workdir / "last.ckpt")
    cli = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1"))
    assert cli.trainer.global_step == 3  # one epoch from scratch; resuming would have ended at step 6
    assert (workdir / "logs" / "tiny" / "version_1").is_dir()


def test_optimizer_and_schedule_come_from_the_command_line(workdir):
    cli = main(tiny_args(workdir / "images", "--trainer.fast_dev_run", "true",
                         "--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.05",
                         "--model.optimizer.momentum", "0.9", "--model.lr_scheduler", "onecycle"))
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "OneCycleLR"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses(config, workdir):
    command = "pretrain" if config.stem.startswith("pretrain_") else "fit"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_code:
        main([command, "--config", str(config), "--print_config"])
    assert exit_code.value.code == 0
    parsed = yaml.safe_load(printed.getvalue())
    if command == "fit":
        assert parsed["checkpoint"]["monitor"] == "val/acc"
    assert parsed["last_checkpoint"]["filename"] == "last" and parsed["last_checkpoint"]["monitor"] is None
    assert parsed["trainer"]["logger"]["init_args"]["save_dir"] == "logs"


def test_the_gpu_recipe_on_a_machine_without_one_says_what_to_change(workdir, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["fit", "--config", str(ROOT / "configs" / "resnet50_imagenet.yaml"),
              "--data.data_dir", str(workdir / "images")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1
    assert "--trainer.accelerator cpu" in lines[0]


def test_an_integer_limit_stays_a_number_of_batches(workdir):
    args = tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1",
                     "--trainer.limit_val_batches", "2", "--data.batch_size", "4")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        main([*args, "--print_config"])
    trainer_config = yaml.safe_load(printed.getvalue())["trainer"]
    assert trainer_config["limit_train_batches"] == 1 and isinstance(trainer_config["limit_train_batches"], int)
    cli = main(args)
    assert cli.trainer.global_step == 1 and cli.trainer.num_val_batches == [2]


@pytest.mark.slow
def test_a_gray_model_trains_and_exports_one_channel(workdir):
    gray = ["--model.backbone_options", json.dumps({**QUARTER_WIDTH, "in_chans": 1}), "--data.normalize", "auto"]
    cli = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", *gray))
    assert cli.datamodule.channels == 1 and cli.model.model.conv1.in_channels == 1
    assert len(cli.datamodule.normalization.mean) == len(cli.datamodule.normalization.std) == 1
    batch = next(iter(cli.datamodule.val_dataloader()))
    assert batch[0].shape[1:] == (1, 16, 16)
    last = workdir / "logs/tiny/version_0/checkpoints/last.ckpt"
    main(["export", "--ckpt_path", str(last)])
    described = description_of(last.with_suffix(".onnx"))
    metadata = {**described["export"]["input"], **described["preprocessing"]}
    assert metadata["shape"][1] == 1 and len(metadata["mean"]) == len(metadata["std"]) == 1
    assert "gray" in metadata["layout"]


def test_predict_follows_linked_folders_as_fit_does(trained, workdir):
    elsewhere = make_image_folder(workdir / "elsewhere", classes=1, per_class=2)
    inputs = workdir / "inputs"
    inputs.mkdir()
    (inputs / "linked").symlink_to(elsewhere / "class_0", target_is_directory=True)
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", str(inputs),
                         subcommand="predict"))
    assert len(cli.datamodule.predict_paths) == 2
    assert all("/linked/" in path for path in cli.datamodule.predict_paths)


class RecordLearningRates(Callback):
    rates: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        RecordLearningRates.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


@pytest.mark.slow
def test_resuming_with_more_epochs_continues_the_cosine_decay(workdir, capsys, recwarn):
    args = tiny_args(workdir / "images", "--model.lr_scheduler", "cosine",
                     "--trainer.callbacks+=tests.cli.test_cli.RecordLearningRates")
    main([*args, "--trainer.max_epochs", "2"])
    RecordLearningRates.rates = []
    capsys.readouterr()
    main([*args, "--trainer.max_epochs", "4", "--ckpt_path", "last"])
    # without a progress bar on a terminal, a line per epoch, said as it ends
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(" (")[0] for line in said] == ["epoch 3/4", "epoch 4/4"], said
    assert all("train/loss" in line and "val/acc" in line for line in said)
    assert not [str(warning.message) for warning in recwarn if "exists and is not empty" in str(warning.message)]
    rates = RecordLearningRates.rates
    assert len(rates) == 2 * 3 and all(later < earlier for earlier, later in zip(rates, rates[1:]))
    assert rates[-1] < 0.05 * rates[0]  # close to zero at the new end, not climbing back up


def test_resume_from_last_without_a_last_checkpoint_says_so_and_starts_afresh(workdir, capsys):
    cli = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--ckpt_path", "last"))
    assert "last.ckpt to resume: starting a new run" in capsys.readouterr().err
    assert cli.trainer.global_step == 3 and (workdir / "logs/tiny/version_0/checkpoints/last.ckpt").is_file()


def test_a_run_refused_once_started_leaves_no_run_folder_behind(workdir, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(workdir / "images", "--model.optimizer.init_args.lr", "-1"))
    assert exit_code.value.code == 2 and "model.optimizer" in capsys.readouterr().err
    assert not (workdir / "logs" / "tiny" / "version_0").exists()
    main(tiny_args(workdir / "images", "--trainer.max_epochs", "1"))
    assert (workdir / "logs" / "tiny" / "version_0" / "config.yaml").is_file()  # the next run takes its place


def test_the_top_level_help_names_every_command(capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["--help"])
    printed = capsys.readouterr().out
    assert exit_code.value.code == 0
    assert all(command.name in printed for command in COMMANDS)
    flat = " ".join(printed.split())
    assert all(" ".join(command.summary.split()) in flat for command in COMMANDS)  # each one's line of the table
    assert "Runs the full optimization routine." not in printed


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
