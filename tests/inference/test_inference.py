"""What validate, test and predict compute from a checkpoint (test-time augmentation), and what an exported
model computes from the image files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from lightning_resnet import ImageClassifier
from lightning_resnet.cli import main
from lightning_resnet.cli.predict_onnx import predictions_file
from lightning_resnet.data import ImageFolderDataModule, Normalization
from lightning_resnet.inference.export import export_model
from lightning_resnet.models import create_model
from lightning_resnet.runtimes import ShippedClassifier
from lightning_resnet.tasks import SINGLE_LABEL

from ..conftest import read_rows, tiny_args


def normalized_batch(checkpoint: Path, paths: list[str]) -> torch.Tensor:
    """The images as predict feeds them to the model: the checkpoint's evaluation view and normalization."""
    data = ImageFolderDataModule.load_from_checkpoint(checkpoint, weights_only=True)
    images = torch.stack([data.views.evaluation(path) for path in paths])
    return data.on_after_batch_transfer([images, torch.zeros(len(paths))], 0)[0]


@pytest.mark.slow  # 1.8-2.9 s in make check's fresh-clone run (pyproject.toml's marker: 1.7 s or more)
def test_hflip_tta_is_the_mean_softmax_of_the_image_and_its_mirror(trained, workdir, capsys):
    checkpoint = trained / "checkpoints" / "last.ckpt"
    main(tiny_args(workdir / "images", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(workdir / "holdout"),
                   "--model.tta", "hflip", "--trainer.logger.init_args.name", "tta", subcommand="predict"))
    rows = read_rows(workdir / "logs" / "tta" / "version_0" / "predictions.csv")

    model = ImageClassifier.load_from_checkpoint(checkpoint, weights_only=True).eval()
    images = normalized_batch(checkpoint, [row["path"] for row in rows])
    with torch.no_grad():
        plain = (model(images) / model.decision.temperature).softmax(dim=1)
        mirrored = (model(TF.horizontal_flip(images)) / model.decision.temperature).softmax(dim=1)
    by_hand = (plain + mirrored) / 2
    for row, expected in zip(rows, by_hand):
        top = expected.topk(3)
        assert row["prediction"] == model.class_names[int(top.indices[0])]
        written = [float(value) for value in row["top5_probabilities"].split("|")]
        assert torch.allclose(torch.tensor(written, dtype=torch.float64), top.values.double(), atol=2e-6)
    assert (by_hand - plain).abs().max() > 1e-3  # the mirror changed something: the check can fail

    main(tiny_args(workdir / "images", "--ckpt_path", str(checkpoint), "--model.tta", "hflip", subcommand="validate"))
    assert "val: 6 images, 3 classes; test-time augmentation hflip" in capsys.readouterr().out


def test_five_crop_tta_averages_five_views(trained, workdir):
    checkpoint = trained / "checkpoints" / "last.ckpt"
    model = ImageClassifier.load_from_checkpoint(checkpoint, weights_only=True, tta="five_crop").eval()
    images = normalized_batch(checkpoint, sorted(str(path) for path in (workdir / "holdout").rglob("*.*")))
    with torch.no_grad():
        probabilities = model.evaluate(images)["probabilities"]
        crops = TF.five_crop(images, [14, 14])  # 87.5 % of 16 px
        temperature = model.decision.temperature
        by_hand = torch.stack([(model(TF.resize(crop, [16, 16], antialias=True)) / temperature).softmax(1)
                               for crop in crops]).mean(0)
    assert torch.allclose(probabilities, by_hand, atol=1e-6)
    assert torch.allclose(probabilities.sum(1), torch.ones(len(images)), atol=1e-5)


@pytest.mark.slow
def test_the_exported_onnx_agrees_with_predict_on_the_demo_validation_images(trained, workdir, capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    demo = ImageFolderDataModule(data_dir="demo:digits")  # written into the working folder
    folder = workdir / "demo_val"
    folder.mkdir()
    for path, _ in demo.source.split()[1]:
        (folder / f"{Path(path).parent.name}_{Path(path).name}").symlink_to(Path(path).resolve())
    main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", str(folder),
                   "--trainer.logger.init_args.name", "shipped", subcommand="predict"))
    from_checkpoint = read_rows(workdir / "logs" / "shipped" / "version_0" / "predictions.csv")
    model = workdir / "shipped" / "model.onnx"
    main(["export", "--ckpt_path", str(best), "--output", str(model)])
    main(["predict_onnx", "--model", str(model), "--input", str(folder)])
    from_onnx = read_rows(predictions_file(model))
    with pytest.raises(SystemExit) as missing:
        main(["predict_onnx", "--model", str(model), "--input", "nowhere"])
    assert missing.value.code == 2 and "error: --input nowhere does not exist" in capsys.readouterr().err

    assert len(from_onnx) == len(from_checkpoint) == 359
    assert [row["path"] for row in from_onnx] == [row["path"] for row in from_checkpoint]
    agree = sum(a["prediction"] == b["prediction"] for a, b in zip(from_onnx, from_checkpoint)) / 359
    assert agree >= 0.995
    for a, b in zip(from_onnx, from_checkpoint):  # with three classes the top five list all of them
        onnx = dict(zip(a["top5_classes"].split("|"), map(float, a["top5_probabilities"].split("|"))))
        checkpoint = dict(zip(b["top5_classes"].split("|"), map(float, b["top5_probabilities"].split("|"))))
        assert onnx.keys() == checkpoint.keys()
        assert max(abs(onnx[name] - checkpoint[name]) for name in onnx) <= 1e-3


def test_class_activation_maps_are_overlays_of_the_whole_image_enlarged_for_viewing(trained, workdir):
    checkpoint = trained / "checkpoints" / "last.ckpt"
    main(tiny_args(workdir / "images", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(workdir / "holdout"),
                   "--predictions.cam", "true", "--trainer.logger.init_args.name", "cam", subcommand="predict"))
    folder = workdir / "logs" / "cam" / "version_0" / "cam"
    images = sorted((workdir / "holdout").rglob("*.*"))
    for image in images:
        overlay = folder / image.relative_to(workdir / "holdout").with_suffix(".png")
        with Image.open(image) as original, Image.open(overlay) as enlarged:
            assert original.size == (40, 32) and enlarged.size == (80, 64)  # doubled, pixel for pixel, to view
            drawn = enlarged.resize(original.size, Image.Resampling.NEAREST)
            assert np.array_equal(np.asarray(drawn.resize(enlarged.size, Image.Resampling.NEAREST)),
                                  np.asarray(enlarged))
            # the map lies over the 32x32 center crop the model saw; the 4-pixel bands beside it stay as they were
            difference = np.abs(np.asarray(drawn, np.int16) - np.asarray(original.convert("RGB"), np.int16))
            assert difference[:, 4:36].mean() > 10
            assert difference[:, :4].max() == difference[:, 36:].max() == 0
    assert len(list(folder.rglob("*.png"))) == len(images) == 9


def test_predict_onnx_without_an_exported_model_is_one_line(workdir, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["predict_onnx", "--model", "nowhere/model.onnx", "--input", str(workdir / "holdout")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_code.value.code == 2 and len(errors) == 1
    assert "--model nowhere/model.onnx does not exist" in errors[0] and ".json beside it" in errors[0]


GOOD_METADATA = json.dumps({"input": {"image_size": 16, "crop_fraction": 1.0, "channels": 3},
                            "class_names": ["a", "b"], "temperature": 1.0})


@pytest.mark.parametrize(("name", "metadata", "words"), [
    ("model.onnx", "{broken", ["model.json", "not the JSON that export writes", "JSONDecodeError"]),
    ("model.onnx", '{"input": {}}', ["model.json", "not the JSON that export writes", "class_names"]),
    ("model.onnx", GOOD_METADATA, ["--model", "model.onnx", "not a readable ONNX model"]),
    ("model.tflite", GOOD_METADATA, ["--model", "model.tflite", "expected an exported model (.onnx, .xml)"]),
], ids=["broken JSON", "JSON of something else", "a file that is not ONNX", "another kind of file"])
def test_predict_onnx_with_unreadable_files_is_one_line(workdir, capsys, name, metadata, words):
    (workdir / name).write_bytes(b"not a model")
    (workdir / "model.json").write_text(metadata)
    with pytest.raises(SystemExit) as exit_code:
        main(["predict_onnx", "--model", str(workdir / name), "--input", str(workdir / "holdout")])
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert exit_code.value.code == 2 and len(errors) == 1 and "Traceback" not in stderr
    assert all(word in errors[0] for word in words), errors[0]


@pytest.mark.slow
def test_the_papers_cifar_network_exports_to_onnx_with_the_same_outputs(tmp_path):
    import onnxruntime

    network = create_model("resnet20", num_classes=10).eval()
    shipped = ShippedClassifier(network, Normalization((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), temperature=1.0,
                                task=SINGLE_LABEL)
    path = export_model(shipped, tmp_path / "resnet20.onnx", (32, 32))
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probabilities, logits, features = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected, expected_logits, expected_features = shipped(images)
    assert np.allclose(logits, expected_logits.numpy(), atol=1e-4) and np.allclose(probabilities, expected, atol=1e-5)
    assert features.shape == (3, 64) and np.allclose(features, expected_features.numpy(), atol=1e-4)
