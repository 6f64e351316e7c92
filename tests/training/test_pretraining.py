"""``pretrain``: self-supervised pretraining of the backbone on unlabelled images, whose weights ``fit`` then loads
strictly with a new head; resumed exactly after an interrupt mid-epoch, as ``fit`` is."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from lightning.pytorch import Callback
from safetensors.torch import load_file

from lightning_resnet.bundle import read_bundle
from lightning_resnet.cli import main
from lightning_resnet.data.normalization import Normalization

from ..conftest import QUARTER_WIDTH, cli_error, make_image_folder, tiny_args
from .interrupters import STEP, final_state, run_until_interrupted

HALVES = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
NARROW = ["--model.backbone_options", json.dumps(QUARTER_WIDTH)]
EVERY_PARAMETER_LEARNS = "--trainer.callbacks+=tests.training.test_pretraining.EveryParameterLearns"


class EveryParameterLearns(Callback):
    """What DDP asks of every training step: a gradient for each trainable parameter (the backbone's unused
    classifier had none, and two processes stopped at their first step)."""

    def on_after_backward(self, trainer, pl_module):
        missing = [name for name, parameter in pl_module.named_parameters()
                   if parameter.requires_grad and parameter.grad is None]
        assert not missing, missing


def pretrain_args(images, *extra: str) -> list[str]:
    """``pretrain`` of tiny_args' quarter-width network on ``images`` at 16 px, batches of 4, no loader worker."""
    return ["pretrain", "--data.data_dir", str(images), "--data.image_size", "16", "--data.batch_size", "4",
            "--data.num_workers", "0", *NARROW, "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", "pretrain", *extra]


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """24 images in a flat folder (their classes unnamed) and a labelled folder for the k-NN score."""
    root = tmp_path_factory.mktemp("unlabelled")
    make_image_folder(root / "classes", classes=3, per_class=8, seed=11)
    flat = root / "flat"
    flat.mkdir()
    for image in (root / "classes").rglob("*.*"):
        shutil.copy(image, flat / f"{image.parent.name}_{image.name}")
    make_image_folder(root / "labelled", classes=3, per_class=10)
    return root


@pytest.mark.slow
def test_pretrained_weights_load_strictly_into_fit_and_change_its_result(unlabelled, workdir, capsys):
    run = main(pretrain_args(unlabelled / "flat", "--data.knn_dir", str(unlabelled / "labelled"),
                             "--trainer.max_epochs", "1", "--data.normalize", json.dumps(HALVES),
                             EVERY_PARAMETER_LEARNS))
    assert 0.0 <= float(run.trainer.callback_metrics["val/knn_acc"]) <= 1.0  # the k-NN score of every epoch
    printed, said = capsys.readouterr()
    assert "pretrain took 6 optimizer steps" in said  # 24 images in batches of 4: too few to have learnt much
    weights = workdir / "logs/pretrain/version_0/backbone.safetensors"
    assert f"pretrained weights: {weights.relative_to(workdir)}" in printed and "--model.pretrained" in printed
    backbone = load_file(str(weights))
    assert backbone and not any(key.startswith("fc.") for key in backbone)  # the head is new in fit

    # a frozen backbone keeps what it loaded: every tensor of the file, BatchNorm statistics included
    frozen = ["--model.freeze_backbone", "true", "--trainer.max_epochs", "1", "--model.calibrate", "false"]
    pretrained = main(tiny_args(workdir / "images", *frozen, "--model.pretrained", str(weights),
                                "--trainer.logger.init_args.name", "pretrained"))
    scratch = main(tiny_args(workdir / "images", *frozen, "--trainer.logger.init_args.name", "scratch"))
    loaded, _ = final_state(workdir / "logs/pretrained/version_0")
    assert all(torch.equal(loaded[f"model.{key}"], tensor) for key, tensor in backbone.items())
    from_scratch, _ = final_state(workdir / "logs/scratch/version_0")
    assert not torch.equal(from_scratch["model.layer1.0.conv1.weight"], backbone["layer1.0.conv1.weight"])
    assert (float(pretrained.trainer.callback_metrics["val/loss"])
            != float(scratch.trainer.callback_metrics["val/loss"]))
    # fit normalizes as the weights were trained (the file records it), and its checkpoint says so
    assert pretrained.datamodule.normalization == Normalization(tuple(HALVES["mean"]), tuple(HALVES["std"]))
    recorded = read_bundle(pretrained.trainer.checkpoint_callback.best_model_path).preprocessing.normalization
    assert recorded.mean == tuple(HALVES["mean"])
    # ... and says so when told to normalize otherwise
    with pytest.warns(UserWarning, match=r"were trained on images normalized with mean \[0.5, 0.5, 0.5\]"):
        main(tiny_args(workdir / "images", *frozen, "--model.pretrained", str(weights), "--data.normalize",
                       "imagenet", "--trainer.logger.init_args.name", "imagenet"))


@pytest.mark.slow
def test_byol_pretraining_resumes_exactly_after_an_interrupt_mid_epoch(unlabelled, tmp_path, monkeypatch):
    """BYOL (two different views, a moving-average target network, a prediction head learning 10 times as fast)
    interrupted at step 8, the third of six in the second epoch, with 2 loader workers; resumed without workers."""
    common = ["--model.method", "byol", "--trainer.max_epochs", "3", "--model.prediction_lr_factor", "10"]
    straight = tmp_path / "straight"
    straight.mkdir()
    monkeypatch.chdir(straight)
    finished = main(pretrain_args(unlabelled / "flat", *common, EVERY_PARAMETER_LEARNS))
    monkeypatch.chdir(tmp_path)
    interrupted = pretrain_args(unlabelled / "flat", *common, "--data.num_workers", "2")
    run_until_interrupted(tmp_path, interrupted, "InterruptAtStep", 130, own_process=False)
    saved = torch.load(tmp_path / "logs/pretrain/version_0/checkpoints/last.ckpt", weights_only=True)
    assert STEP <= saved["global_step"] < 12
    resumed = main([*interrupted, "--data.num_workers", "0", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == finished.trainer.global_step == 18
    weights, optimizer = final_state(tmp_path / "logs/pretrain/version_0")
    expected_weights, expected_optimizer = final_state(straight / "logs/pretrain/version_0")
    assert weights.keys() == expected_weights.keys()
    assert [key for key in weights if not torch.equal(weights[key], expected_weights[key])] == []
    rest, prediction = optimizer["param_groups"]
    assert len(prediction["params"]) == sum(1 for _ in resumed.model.method.prediction.parameters())
    assert prediction["initial_lr"] == pytest.approx(10 * rest["initial_lr"])
    for key, state in expected_optimizer["state"].items():
        assert all(torch.equal(value, optimizer["state"][key][name]) for name, value in state.items())
    assert not (tmp_path / "logs/pretrain/version_1").exists()  # continued in the run's own folder


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--model.prediction_lr_factor", "0", ["model.prediction_lr_factor", "positive", "0"]),
    ("--model.momentum", "1.0", ["model.momentum", "[0, 1)"]),
    ("--model.temperature", "-0.1", ["model.temperature", "positive"]),
])
def test_a_bad_pretraining_option_is_one_line(unlabelled, workdir, capsys, option, value, words):
    code, error = cli_error(capsys, pretrain_args(unlabelled / "flat", "--model.method", "byol", option, value))
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and all(word in lines[0] for word in words), error
    assert not (workdir / "logs").exists()  # refused before a run folder was made


def test_a_checkpoint_of_fit_given_to_pretrain_is_one_line(unlabelled, trained, workdir, capsys):
    fitted = trained / "checkpoints/last.ckpt"
    code, error = cli_error(capsys, pretrain_args(unlabelled / "flat", "--ckpt_path", str(fitted)))
    lines = error.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "is not a checkpoint of pretrain" in lines[0], error
    assert not (workdir / "logs/pretrain").exists()


class RecordViews(Callback):
    """The sizes of the views of the first training batch."""

    sizes: list[tuple[int, ...]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not RecordViews.sizes:
            RecordViews.sizes = [tuple(view.shape) for view in batch[0]]


@pytest.mark.slow
def test_dino_compares_global_and_local_views_and_its_backbone_fine_tunes(unlabelled, workdir):
    """DINO is a file of training/pretraining/ behind the one interface: two global views at the image size and six
    local ones smaller, every parameter of the student learning, a teacher that does not; fit then loads the
    backbone."""
    record = "--trainer.callbacks+=tests.training.test_pretraining.RecordViews"
    run = main(pretrain_args(unlabelled / "flat", "--model.method", "dino", "--model.method_options",
                             "{output_dim: 256, freeze_last_layer: 0}", "--trainer.max_epochs", "1",
                             EVERY_PARAMETER_LEARNS, record))
    assert RecordViews.sizes == [(4, 3, 16, 16)] * 2 + [(4, 3, 8, 8)] * 6
    teacher = run.model.method.teacher_backbone
    assert not any(parameter.requires_grad for parameter in teacher.parameters())
    weights = workdir / "logs/pretrain/version_0/backbone.safetensors"
    fine_tuned = main(tiny_args(workdir / "images", "--model.pretrained", str(weights), "--trainer.max_epochs", "1",
                                "--trainer.logger.init_args.name", "from_dino"))
    assert "val/acc" in fine_tuned.trainer.callback_metrics


@pytest.mark.parametrize(("method", "option", "value", "words"), [
    ("simclr", "--model.prediction_lr_factor", "2", ["model.prediction_lr_factor", "not an option of simclr",
                                                     "model.temperature"]),
    ("dino", "--model.method_options", "{teacher_temp: 0.1}", ["model.method_options.teacher_temp",
                                                                "not an option of dino", "teacher_temperature"]),
    ("dino", "--model.method_options", "{output_dim: 0}", ["model.method_options.output_dim", "positive"]),
    ("swav", "--trainer.max_epochs", "1", ["model.method swav", "simclr, byol, dino"]),
])
def test_an_option_of_another_method_or_an_unknown_method_is_one_line(unlabelled, workdir, capsys, method, option,
                                                                       value, words):
    code, error = cli_error(capsys, pretrain_args(unlabelled / "flat", "--model.method", method, option, value))
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and all(word in lines[0] for word in words), error
