"""What a run leaves to read: predictions.csv, evaluation reports, curves, HPARAMS, summary and export."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lightning_resnet import ImageClassifier
from lightning_resnet.bundle import BUNDLE_KEY
from lightning_resnet.cli import main
from lightning_resnet.data import ImageFolderDataModule
from lightning_resnet.reports import read_curves

from ..conftest import QUARTER_WIDTH, decision_in, description_of, read_rows, tiny_args


def best_checkpoint(run: Path) -> Path:
    return next((run / "checkpoints").glob("best-*.ckpt"))


def newest_run(workdir: Path) -> Path:
    return max((workdir / "logs" / "tiny").iterdir(), key=lambda p: int(p.name.split("_")[1]))




def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_predict_writes_a_csv_with_names_confidences_and_unreadable_files(trained, workdir, capsys):
    inputs = workdir / "holdout"
    (inputs / "class_0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (inputs / "empty.png").write_bytes(b"")
    (inputs / "notes.txt").write_text("not an image")
    main(tiny_args(workdir / "images", "--ckpt_path", str(best_checkpoint(trained)),
                   "--data.predict_dir", str(inputs), subcommand="predict"))
    rows = read_rows(newest_run(workdir) / "predictions.csv")
    unsure = sum(row["unsure"] == "true" for row in rows)
    said = f"9 images predicted{f', {unsure} unsure' if unsure else ''}, 2 unreadable"
    assert f"wrote {newest_run(workdir).relative_to(workdir) / 'predictions.csv'}: {said}" in capsys.readouterr().out
    assert list(rows[0]) == ["path", "prediction", "confidence", "top5_classes", "top5_probabilities",
                             "energy_score", "unsure", "error"]
    assert b"\r" not in (newest_run(workdir) / "predictions.csv").read_bytes()  # lines end with \n alone
    assert len(rows) == 11 and [row["path"] for row in rows] == sorted(row["path"] for row in rows)
    failed = {Path(row["path"]).name: row for row in rows if row["error"]}
    assert set(failed) == {"broken.jpg", "empty.png"}
    assert all(row["prediction"] == "" for row in failed.values())
    for row in rows:
        if row["error"]:
            continue
        names = row["top5_classes"].split("|")
        probabilities = [float(p) for p in row["top5_probabilities"].split("|")]
        assert names[0] == row["prediction"] and set(names) == {"class_0", "class_1", "class_2"}
        assert probabilities == sorted(probabilities, reverse=True)
        assert float(row["confidence"]) == probabilities[0] and sum(probabilities) == pytest.approx(1, abs=1e-4)


def test_test_prints_a_report_and_saves_the_confusion_matrix_and_mistakes(trained, workdir, capsys):
    cli = main(tiny_args(workdir / "images", "--ckpt_path", str(best_checkpoint(trained)),
                         "--data.test_dir", str(workdir / "images"), subcommand="test"))
    printed = capsys.readouterr().out
    for line in ("test: 30 images, 3 classes", "top-1 accuracy", "macro precision",
                 "macro recall", "macro F1", "class_0", "class_2"):
        assert line in printed
    assert "top-5 accuracy" not in printed  # 3 classes: every image is in its top 5
    run = newest_run(workdir)
    assert (run / "report_test.txt").read_text().strip() in printed
    assert (run / "confusion_matrix_test.png").stat().st_size > 1000
    matrix = list(csv.reader(open(run / "confusion_matrix_test.csv")))
    counts = np.array([[int(v) for v in row[1:]] for row in matrix[1:]])
    assert counts.sum() == 30 and list(counts.sum(1)) == [10, 10, 10]
    accuracy = np.trace(counts) / 30
    assert float(cli.trainer.callback_metrics["test/acc"]) == pytest.approx(accuracy)
    report_lines = {line.split()[0]: line.split() for line in printed.splitlines() if line.strip().startswith("class_")}
    for index, name in enumerate(["class_0", "class_1", "class_2"]):
        assert float(report_lines[name][2]) == pytest.approx(counts[index, index] / 10, abs=1e-4)
    figures = events(run).Tags()["images"]
    shown = events(run).Images("test/confusion_matrix")[0]  # the PNG written, as TensorBoard reads it
    assert shown.encoded_image_string == (run / "confusion_matrix_test.png").read_bytes()
    assert (shown.width, shown.height) == Image.open(run / "confusion_matrix_test.png").size
    if accuracy < 1:
        assert (run / "mistakes_test.png").is_file() and "test/most_confident_mistakes" in figures


def test_logged_macro_metrics_agree_with_sklearn(image_folder):
    from lightning.pytorch import Trainer
    from sklearn.metrics import f1_score, precision_score, recall_score

    model = ImageClassifier(backbone="resnet18", num_classes=3, backbone_options=QUARTER_WIDTH)
    data = ImageFolderDataModule(data_dir=str(image_folder), image_size=32, batch_size=5, num_workers=0)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(model, datamodule=data)
    predicted, targets = [], []
    model.eval()
    with torch.no_grad():
        for batch in data.val_dataloader():
            images, labels = data.on_after_batch_transfer(batch, 0)
            predicted += model(images).argmax(1).tolist()
            targets += labels.tolist()
    logged = trainer.callback_metrics
    assert float(logged["val/acc"]) == pytest.approx(np.mean(np.array(predicted) == np.array(targets)))
    labels = [0, 1, 2]
    kwargs = dict(labels=labels, average="macro", zero_division=0)
    assert float(logged["val/f1"]) == pytest.approx(f1_score(targets, predicted, **kwargs), abs=1e-5)
    assert float(logged["val/precision"]) == pytest.approx(precision_score(targets, predicted, **kwargs), abs=1e-5)
    assert float(logged["val/recall"]) == pytest.approx(recall_score(targets, predicted, **kwargs), abs=1e-5)


def test_fit_leaves_curves_hparams_and_the_augmented_inputs(trained):
    assert (trained / "training_curves.png").stat().st_size > 10_000
    curves = read_curves(trained)
    assert set(curves) == {"train loss", "val loss", "train accuracy", "val accuracy"}
    assert all([epoch for epoch, _ in points] == [0, 1] for points in curves.values())
    recorded = events(trained)
    assert [event.value for event in recorded.Scalars("val/acc")] == [value for _, value in curves["val accuracy"]]
    assert "train/inputs" in recorded.Tags()["images"]
    plugin_data = [
        value.metadata.plugin_data.content
        for event in _raw_events(trained)
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == "hparams"
    ]
    joined = b"".join(plugin_data)
    for name in (b"hp/val_acc", b"hp/val_loss", b"hp/best_val_acc", b"backbone", b"data.image_size"):
        assert name in joined
    assert "hp/best_val_acc" in recorded.Tags()["scalars"]


def _raw_events(folder: Path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for path in sorted(folder.glob("events.out.tfevents.*")):
        yield from EventFileLoader(str(path)).Load()


def test_summary_subcommand_prints_the_stage_table(workdir, capsys):
    main(["summary", "--model.backbone", "resnet50", "--data.image_size", "224",
          "--data.data_dir", str(workdir / "no_such_folder")])
    printed = capsys.readouterr().out
    assert "resnet50 at 224 px, 1000 classes" in printed
    for stage in ("stem", "layer1", "layer2", "layer3", "layer4", "head"):
        assert f"\n{stage} " in printed
    assert "2048x7x7" in printed and "25.56 M parameters, 4.09 GMACs" in printed


def test_summary_follows_the_config(workdir, capsys, caplog):
    caplog.set_level(logging.INFO)
    main(tiny_args(workdir / "images", "--model.freeze_backbone", "true", subcommand="summary"))
    printed = capsys.readouterr().out
    said = [record.getMessage() for record in caplog.records]
    assert not any("Seed set" in line or "GPU available" in line for line in said), said  # no loop runs
    assert "resnet18 at 16 px, 3 classes" in printed and "128x2x2" in printed  # tiny_args: channels up to 128
    head = next(line for line in printed.splitlines() if line.startswith("head"))
    assert head.split()[2] == f"{128 * 3 + 3:,}" and head.split()[3] == "0"
    stage = next(line for line in printed.splitlines() if line.startswith("layer1"))
    assert stage.split()[2] == "0" and stage.split()[3] != "0"  # the backbone frozen, as fit's first epoch has it


@pytest.mark.parametrize("export_format", ["onnx", "torch_export"])
@pytest.mark.slow
def test_export_carries_normalization_temperature_and_softmax(trained, workdir, export_format):
    checkpoint_path = workdir / "calibrated.ckpt"  # the tiny fit's few validation images keep a temperature of 1
    calibrated = torch.load(best_checkpoint(trained), weights_only=True)
    calibrated[BUNDLE_KEY]["decision"]["temperature"] = 1.7
    torch.save(calibrated, checkpoint_path)
    output = workdir / "exported" / f"model.{'onnx' if export_format == 'onnx' else 'pt2'}"
    main(["export", "--ckpt_path", str(checkpoint_path), "--format", export_format, "--output", str(output)])
    described = description_of(output)
    metadata = {**described, "input": {**described["export"]["input"], **described["preprocessing"]}}
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert metadata["classes"] == ["class_0", "class_1", "class_2"]
    assert metadata["input"]["mean"] == checkpoint["ImageFolderDataModule"]["mean"]
    assert metadata["input"]["std"] == checkpoint["ImageFolderDataModule"]["std"]
    assert metadata["input"]["shape"] == ["batch", 3, 16, 16] and "uint8" in metadata["input"]["layout"]
    assert metadata["decision"]["temperature"] == pytest.approx(decision_in(checkpoint_path)["temperature"])
    assert metadata["decision"]["temperature"] == pytest.approx(1.7)

    model = ImageClassifier.load_from_checkpoint(checkpoint_path, weights_only=True).eval()
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    mean = torch.tensor(metadata["input"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(metadata["input"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected_logits = model((images.float() / 255 - mean) / std) / model.decision.temperature
    if export_format == "onnx":
        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        probabilities, logits, features = session.run(["probabilities", "logits", "features"],
                                                      {"images": images.numpy()})
    else:
        probabilities, logits, features = (t.detach().numpy() for t in torch.export.load(output).module()(images))
    assert probabilities.shape == logits.shape == (5, 3)
    with torch.no_grad():  # the pooled features the classifier reads: what embed writes
        expected_features = model.model.forward_features((images.float() / 255 - mean) / std)
    assert np.abs(features - expected_features.numpy()).max() < 1e-4
    assert np.abs(logits - expected_logits.numpy()).max() < 1e-4
    assert np.abs(probabilities - expected_logits.softmax(1).numpy()).max() < 1e-5
