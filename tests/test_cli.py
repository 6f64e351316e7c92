"""``python -m lightning_resnet``: fit, validate, test, predict, resume and configs, end to end."""

from __future__ import annotations

import contextlib
import io
import shutil

import pytest
import torch
import yaml

from lightning_resnet.cli import main

from .conftest import ROOT, make_image_folder, tiny_args

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


def test_validate_test_and_predict_from_the_checkpoint(trained, workdir):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best), subcommand="validate"))
    assert 0.0 <= cli.trainer.callback_metrics["val/acc"] <= 1.0
    assert {"val/acc", "val/acc_top5", "val/f1", "val/loss"} <= set(cli.trainer.callback_metrics)

    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.test_dir", str(workdir / "holdout"),
                         subcommand="test"))
    assert {"test/acc", "test/acc_top5", "test/f1", "test/loss"} <= set(cli.trainer.callback_metrics)

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


def test_print_config_reproduces_the_run(workdir):
    args = tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--model.label_smoothing", "0.1")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_code:
        main([*args, "--print_config"])
    assert exit_code.value.code == 0
    (workdir / "printed.yaml").write_text(printed.getvalue())

    main(args)
    main(["fit", "--config", str(workdir / "printed.yaml")])
    first = torch.load(workdir / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    second = torch.load(workdir / "logs/tiny/version_1/checkpoints/last.ckpt", weights_only=True)
    assert second["hyper_parameters"]["label_smoothing"] == 0.1
    assert first["state_dict"].keys() == second["state_dict"].keys()
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])


def test_optimizer_and_schedule_come_from_the_command_line(workdir):
    cli = main(tiny_args(workdir / "images", "--trainer.fast_dev_run", "true",
                         "--model.optimizer", "torch.optim.SGD", "--model.optimizer.lr", "0.05",
                         "--model.optimizer.momentum", "0.9", "--model.lr_scheduler", "onecycle"))
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert type(cli.trainer.lr_scheduler_configs[0].scheduler).__name__ == "OneCycleLR"


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_parses(config, workdir):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit) as exit_code:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_code.value.code == 0
    parsed = yaml.safe_load(printed.getvalue())
    assert parsed["checkpoint"]["monitor"] == "val/acc"
    assert parsed["last_checkpoint"]["filename"] == "last" and parsed["last_checkpoint"]["monitor"] is None
    assert parsed["trainer"]["logger"]["init_args"]["save_dir"] == "logs"


def test_imagenet_recipe_asks_for_the_documented_hardware():
    config = yaml.safe_load((ROOT / "configs" / "resnet50_imagenet.yaml").read_text())
    trainer = config["trainer"]
    assert (trainer["accelerator"], trainer["strategy"], trainer["precision"]) == ("gpu", "ddp", "bf16-mixed")
    assert trainer["devices"] >= 4 and config["model"]["channels_last"] is True
