"""``export --format timm``: a folder in timm's hub layout that timm itself loads offline, answering with the
checkpoint's probabilities; what timm's ResNet cannot build is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from PIL import Image

from lightning_resnet.bundle import BUNDLE_KEY, read_bundle
from lightning_resnet.cli import main

from ..conftest import cli_error, make_image_folder

TIMM_BUILDABLE = {"channels": [64, 16, 16, 16]}
"""A narrow ResNet-18 that timm's ResNet builds: its ImageNet stem (64 channels), then narrow stages."""


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> Path:
    """A one-epoch fit of a timm-buildable ResNet-18 on 16 x 24 rectangles (squished), whose checkpoint then gets a
    calibration temperature of 2.5 (what ``fit`` fits on a validation split of 96 images or more)."""
    root = tmp_path_factory.mktemp("timm")
    make_image_folder(root / "images", classes=3, per_class=10)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        run = main(["fit", "--data.data_dir", str(root / "images"), "--data.image_size", "[16, 24]",
                    "--data.resize", "squish", "--data.batch_size", "8", "--model.backbone", "resnet18",
                    "--model.backbone_options", json.dumps(TIMM_BUILDABLE), "--trainer.max_epochs", "1",
                    "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", "timm"])
    checkpoint = root / run.trainer.checkpoint_callback.best_model_path
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved[BUNDLE_KEY]["decision"]["temperature"] = 2.5
    torch.save(saved, checkpoint)
    return checkpoint


def test_timm_loads_the_folder_offline_and_answers_with_the_checkpoints_probabilities(calibrated, tmp_path):
    folder = main(["export", "--ckpt_path", str(calibrated), "--format", "timm", "--output", str(tmp_path / "hub")])
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["label_names"] == ["class_0", "class_1", "class_2"]
    assert "tag" not in config["pretrained_cfg"] and "license" not in config["pretrained_cfg"]  # not timm's weights'
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()

    bundle = read_bundle(calibrated)
    images = sorted((calibrated.parents[4] / "images").rglob("*.png"))[::5]
    batch = bundle.preprocessing.normalization(torch.stack([bundle.view(path) for path in images]))
    with torch.no_grad():
        checkpoint_probabilities = bundle.decision.probabilities(bundle.network()(batch))
        timm_probabilities = model(batch).softmax(dim=-1)
    assert torch.allclose(timm_probabilities, checkpoint_probabilities, atol=1e-5)
    assert not torch.allclose(timm_probabilities, bundle.network()(batch).softmax(dim=-1), atol=1e-3)  # T = 2.5

    # timm's own transform of the file, from the folder's config: the same squished 16 x 24 input
    data_config = timm.data.resolve_data_config(model=model)
    assert data_config["input_size"] == (3, 16, 24) and data_config["crop_mode"] == "squash"
    transform = timm.data.create_transform(**data_config)
    timm_batch = torch.stack([transform(Image.open(path).convert("RGB")) for path in images])
    assert timm_batch.shape == batch.shape and (timm_batch - batch).abs().mean() < 0.05
    card = (folder / "README.md").read_text()
    assert "library_name: timm" in card and "val/acc" in card and "2.5" in card


def test_what_timm_cannot_build_or_write_is_one_line(calibrated, trained, tmp_path, capsys):
    cifar_stem = next((trained / "checkpoints").glob("best-*.ckpt"))  # the tests' narrow network: the CIFAR stem
    code, error = cli_error(capsys, ["export", "--ckpt_path", str(cifar_stem), "--format", "timm"])
    assert code == 2 and "CIFAR stem" in error and len(error.strip().splitlines()) == 1, error
    code, error = cli_error(capsys, ["export", "--ckpt_path", str(calibrated), "--format", "timm", "--quantize",
                                     "int8"])
    assert code == 2 and "--quantize" in error and len(error.strip().splitlines()) == 1, error
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    code, error = cli_error(capsys, ["export", "--ckpt_path", str(calibrated), "--format", "timm", "--output",
                                     str(tmp_path / "taken")])
    assert code == 2 and "not an empty folder" in error and (tmp_path / "taken" / "notes.txt").read_text() == "mine"
