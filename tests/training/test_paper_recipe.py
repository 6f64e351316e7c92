"""The ResNet paper's CIFAR-10 recipe (configs/resnet56_cifar10.yaml, configs/resnet110_cifar10.yaml): its schedule,
and one short run of it from a fresh working folder, CIFAR-10 named, then its test."""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from lightning_resnet.cli import main
from lightning_resnet.training.optimization import build_scheduler

from ..conftest import ROOT, cli_error, place_tiny_cifar10, tiny_args

STEPS_PER_EPOCH = 352  # 45,000 training images in batches of 128


@pytest.mark.parametrize("config", ["resnet56_cifar10", "resnet110_cifar10"])
@pytest.mark.slow
def test_the_rate_is_divided_by_ten_at_32k_and_48k_iterations_of_64k(config):
    recipe = yaml.safe_load((ROOT / "configs" / f"{config}.yaml").read_text())
    model = recipe["model"]
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], **model["optimizer"]["init_args"])
    scheduler = build_scheduler(optimizer, model["lr_scheduler"], recipe["trainer"]["max_steps"], STEPS_PER_EPOCH,
                                model.get("warmup_epochs", 0), step_gamma=model["step_gamma"],
                                step_milestones=model["step_milestones"])
    rates = []
    for _ in range(recipe["trainer"]["max_steps"]):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert len(rates) == 64000
    assert rates[31999] == pytest.approx(0.1) and rates[32000] == pytest.approx(0.01)
    assert rates[47999] == pytest.approx(0.01) and rates[48000] == rates[63999] == pytest.approx(0.001)
    if config == "resnet110_cifar10":  # the deeper network warms up over its first epoch
        assert rates[0] == pytest.approx(0.001) and rates[STEPS_PER_EPOCH - 1] < 0.1 == rates[STEPS_PER_EPOCH]
    else:
        assert rates[0] == 0.1


@pytest.mark.slow
def test_the_resnet56_recipe_fits_cifar10_by_name_then_tests_on_its_test_part(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    place_tiny_cifar10(monkeypatch, train_per_class=10, test_per_class=2)
    quick = ["--trainer.max_steps", "8", "--model.step_milestones", "[4, 6]", "--data.batch_size", "16",
             "--data.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"]
    main(["fit", "--config", str(ROOT / "configs/resnet56_cifar10.yaml"), *quick])
    run = tmp_path / "logs/resnet56_cifar10/version_0"
    last = torch.load(run / "checkpoints/last.ckpt", weights_only=True)
    assert last["global_step"] == 8 and last["hyper_parameters"]["backbone"] == "resnet56"
    assert [group["lr"] for group in last["optimizer_states"][0]["param_groups"]] == pytest.approx([0.001] * 4)
    assert last["datamodule_hyper_parameters"]["data_dir"] == "cifar10"

    best = next((run / "checkpoints").glob("best-*.ckpt"))
    tested = main(["test", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false"])
    assert len(tested.datamodule.test_set) == 20  # the data set's own test/ part
    assert 0.0 <= tested.trainer.callback_metrics["test/acc"] <= 1.0


@pytest.mark.slow  # 1.8-2.9 s in make check's fresh-clone run (pyproject.toml's marker: 1.7 s or more)
def test_a_run_planned_by_its_steps_alone_warms_up_over_an_epoch_of_the_loader(workdir, capsys):
    planned = ["--trainer.max_steps", "5", "--trainer.max_epochs", "-1", "--model.lr_scheduler", "step",
               "--model.warmup_epochs", "1"]  # 24 training images in batches of 8: an epoch of 3 steps
    run = main(tiny_args(workdir / "images", *planned, "--model.step_milestones", "[4]"))
    assert run.trainer.global_step == 5
    code, error = cli_error(capsys, tiny_args(workdir / "images", *planned, "--model.step_milestones", "[3]"))
    assert code == 2 and "model.step_milestones must be increasing optimizer steps after the warm-up's 3" in error
