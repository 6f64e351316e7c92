"""Transfer learning: weights by name from torchvision's and timm's caches, fine-tuning, lr_find, EMA, presets."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import socket
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback
from safetensors.torch import save_file

from lightning_resnet.cli import main
from lightning_resnet.data import Normalization, write_digits
from lightning_resnet.models import create_model
from lightning_resnet.training.checkpoints import best_checkpoint

from ..conftest import ROOT, tiny_args

IMAGENET_STEM = ["--model.backbone_options", "{stem: imagenet}"]
QUARTER_WIDTH = ["--model.backbone_options", "{stem: cifar, channels: [16, 32, 64, 128]}"]


@pytest.fixture
def offline(monkeypatch):
    """No connection leaves the process: a download attempt fails as it does behind a firewall."""

    def refuse(self, address, *args):
        raise OSError(f"network blocked in tests: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def torch_hub_file(torch_home: Path, filename: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """A resnet18 state dict where torch hub keeps downloads, as torchvision's download leaves it."""
    state = create_model("resnet18").state_dict()
    path = torch_home / "hub" / "checkpoints" / filename
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    return path, state


@pytest.mark.slow
def test_torchvision_weights_by_name_load_from_the_cache_and_stay_frozen(workdir, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(workdir / "torch_home"))
    _, state = torch_hub_file(workdir / "torch_home", "resnet18-f37072fd.pth")
    cli = main(tiny_args(workdir / "images", *IMAGENET_STEM, "--model.pretrained", "torchvision:IMAGENET1K_V1",
                         "--model.freeze_backbone", "true", "--trainer.max_epochs", "2"))
    assert cli.datamodule.normalization == Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    best = torch.load(next((workdir / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt")), weights_only=True)
    backbone = {key: value for key, value in state.items() if not key.startswith("fc.")}
    assert all(torch.equal(best["state_dict"][f"model.{key}"], value) for key, value in backbone.items())
    assert best["state_dict"]["model.fc.weight"].shape == (3, 512)  # a new head for the 3 classes


def test_a_missing_torchvision_file_names_it_and_where_to_put_it(workdir, monkeypatch, capsys, offline):
    monkeypatch.setenv("TORCH_HOME", str(workdir / "empty"))
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(workdir / "images", *IMAGENET_STEM, "--model.pretrained", "torchvision:IMAGENET1K_V1",
                       "--trainer.fast_dev_run", "true"))
    error = capsys.readouterr().err
    assert exit_code.value.code == 2 and error.count("\n") == 1 and "Traceback" not in error
    assert "resnet18-f37072fd.pth" in error and "https://download.pytorch.org/models/resnet18-f37072fd.pth" in error
    assert str(workdir / "empty" / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in error


def hf_cache_file(hf_home: Path, name: str, **options) -> dict[str, torch.Tensor]:
    """timm weights where the Hugging Face hub keeps downloads (a snapshot and the ref that names it)."""
    repo = hf_home / "hub" / f"models--timm--{name}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123456789abcdef")
    snapshot = repo / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    state = create_model("resnet18", **options).state_dict()
    save_file({key: value.contiguous() for key, value in state.items()}, snapshot / "model.safetensors")
    return state




@pytest.mark.slow
def test_timm_resnet_d_weights_by_name_from_the_hugging_face_cache(workdir, monkeypatch, capsys, offline):
    """In this process, the Hugging Face cache pointed at the test's folder (huggingface_hub reads $HF_HOME when it
    is imported, so its constant is set instead), as the torchvision test points torch hub's."""
    import huggingface_hub.constants

    state = hf_cache_file(workdir / "hf_home", "resnet18d.ra4_e3600_r224_in1k", stem="deep", avg_down=True)
    name = ["--model.pretrained", "timm:resnet18d.ra4_e3600_r224_in1k", "--trainer.max_epochs", "1",
            "--model.freeze_backbone", "true", "--model.backbone_options", "{stem: deep, avg_down: true}"]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(workdir / "hf_home" / "hub"))
    main(tiny_args(workdir / "images", *name))
    last = torch.load(workdir / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    assert torch.equal(last["state_dict"]["model.layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])
    assert last["ImageFolderDataModule"]["mean"] == [0.5, 0.5, 0.5]  # the weights' own statistics, not ImageNet's

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(workdir / "empty" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as the tests' processes run
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(workdir / "images", *name, "--trainer.logger.init_args.name", "missing"))
    error = capsys.readouterr().err
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert exit_code.value.code == 2 and len(lines) == 1 and "Traceback" not in error
    assert "https://huggingface.co/timm/resnet18d.ra4_e3600_r224_in1k/resolve/main/model.safetensors" in lines[0]
    assert str(workdir / "empty" / "hub" / "models--timm--resnet18d.ra4_e3600_r224_in1k" / "snapshots") in lines[0]


def test_the_backbone_learns_at_a_fraction_of_the_heads_rate(workdir):
    cli = main(tiny_args(workdir / "images", "--model.backbone_lr_factor", "0.1", "--model.optimizer.lr", "0.01",
                         "--model.lr_scheduler", "constant", "--trainer.fast_dev_run", "true"))
    rates = {group["name"]: group["lr"] for group in cli.trainer.optimizers[0].param_groups}
    assert rates["head"] == rates["head_no_decay"] == pytest.approx(0.01)
    assert rates["backbone"] == rates["backbone_no_decay"] == pytest.approx(0.001)


def test_lr_find_prints_a_suggestion_and_plots_it(workdir, capsys):
    main([*tiny_args(workdir / "images", "--data.batch_size", "4", subcommand="lr_find"), "--num_training", "20"])
    printed = capsys.readouterr().out
    assert "suggested learning rate:" in printed and "--model.optimizer.lr " in printed
    plot = workdir / "logs/tiny/version_0/lr_find.png"
    assert plot.is_file() and plot.stat().st_size > 10_000


@pytest.mark.slow
def test_the_suggested_rate_trains_a_small_folder_as_well_as_the_recipes_rate(workdir, capsys):
    """200 handwritten digits (20 a class) at batch 16, a quarter-width ResNet-18: the middle of the longest fall,
    the rule before, suggested 3.7e-4 here, at which 3 epochs reached 0.45 against the recipe rate's 0.85; the
    steepest fall within it 1.1e-3, 0.875 (the full-width figures: benchmarks/README.md, "lr_find")."""
    write_digits(workdir / "digits")
    small = workdir / "small"
    for folder in sorted((workdir / "digits").iterdir()):
        (small / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:20]:
            shutil.copy(image, small / folder.name / image.name)
    demo = ["--config", str(ROOT / "configs" / "demo.yaml"), "--trainer.enable_progress_bar", "false",
            "--data.data_dir", str(small), "--data.batch_size", "16", *QUARTER_WIDTH]
    main(["lr_find", *demo])
    printed = capsys.readouterr().out
    suggested = re.search(r"--model.optimizer.lr (\S+)", printed).group(1)
    assert re.search(r"a (clear|weak) fall[^;]*; the loss fell \d+% \(from [\d.]+ to [\d.]+\) over \d+ of \d+ steps",
                     printed), printed
    accuracy = {}
    for name, rate in (("suggested", suggested), ("recipe", "0.002")):
        run = main(["fit", *demo, "--trainer.max_epochs", "3", "--model.optimizer.init_args.lr", rate,
                    "--model.calibrate", "false", "--test_after_fit", "false", "--trainer.logger.init_args.name", name])
        accuracy[name] = best_checkpoint(run.trainer).score
    assert 1e-4 < float(suggested) < 1e-2
    assert accuracy["suggested"] >= 0.9 * accuracy["recipe"], accuracy


class ValidatedWeights(Callback):
    """Records the weights that validation sees and the weights that training left."""

    def __init__(self):
        self.validated = self.trained = None

    def on_train_epoch_end(self, trainer, pl_module):
        self.trained = {k: v.clone() for k, v in pl_module.model.state_dict().items()}

    def on_validation_epoch_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validated = {k: v.clone() for k, v in pl_module.model.state_dict().items()}


def test_ema_preset_validates_and_saves_the_averaged_weights(workdir):
    cli = main(tiny_args(workdir / "images", "--config", str(ROOT / "configs/presets/ema.yaml"),
                         "--trainer.callbacks+=tests.training.test_transfer.ValidatedWeights",
                         "--trainer.max_epochs", "2"))
    ema = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "EMAWeightAveraging")
    recorder = next(cb for cb in cli.trainer.callbacks if isinstance(cb, ValidatedWeights))
    averaged = {k: v for k, v in ema._average_model.module.model.state_dict().items()}
    key = "layer4.1.conv2.weight"
    assert torch.equal(recorder.validated[key], averaged[key])
    assert not torch.equal(recorder.validated[key], recorder.trained[key])
    last = torch.load(workdir / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    assert torch.equal(last["state_dict"][f"model.{key}"], averaged[key])


def test_presets_compose_with_a_recipe(workdir):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "configs/resnext50_monkeypox.yaml"),
              "--config", str(ROOT / "configs/presets/ema.yaml"),
              "--config", str(ROOT / "configs/presets/early_stopping.yaml"), "--print_config"])
    callbacks = [c["class_path"].rsplit(".", 1)[1] for c in yaml.safe_load(printed.getvalue())["trainer"]["callbacks"]]
    assert callbacks == ["RandomErasing", "MixupCutmix", "EMAWeightAveraging", "EarlyStopping"]
    stopped = main(tiny_args(workdir / "images", "--config", str(ROOT / "configs/presets/early_stopping.yaml"),
                             "--trainer.callbacks.patience=1", "--model.optimizer.lr", "0.0",
                             "--trainer.max_epochs", "20"))
    assert stopped.trainer.current_epoch < 5  # nothing improves with a rate of 0: stopped after patience


@pytest.mark.parametrize("preset", ["fast_dev_run", "overfit_batches", "limit_batches", "profiler"])
@pytest.mark.slow
def test_debugging_presets_run(workdir, preset):
    cli = main(tiny_args(workdir / "images", "--config", str(ROOT / f"configs/presets/{preset}.yaml"),
                         "--trainer.max_epochs", "1"))
    assert cli.trainer.state.finished


def test_the_progress_bar_shows_images_per_second(workdir):
    cli = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--data.batch_size", "4"))
    assert cli.trainer.progress_bar_metrics["train/images_per_sec"] > 0
