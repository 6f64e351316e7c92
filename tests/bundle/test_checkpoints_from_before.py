"""Checkpoints written before trained models had a bundle (by main on 2026-12-07, tests/fixtures/README.md) are read
into one: they validate to the scores they were chosen by, export, and are served, as the checkpoints of today."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_resnet.bundle import read_bundle
from lightning_resnet.cli import main
from lightning_resnet.cli.predict_onnx import predictions_file
from lightning_resnet.serving.api import ClassifierAPI
from lightning_resnet.serving.served import ServedModel, identity
from lightning_resnet.serving.uploads import UploadLimits, prepare

from ..conftest import LABEL_CORNERS, make_image_folder, make_label_sets, read_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
QUIET = ["--trainer.enable_progress_bar", "false"]


@pytest.fixture
def before(tmp_path, monkeypatch) -> Path:
    """The folders those fits read (made again, by the same seeds), and both checkpoints, in a fresh folder."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "images", classes=3, per_class=10)
    make_label_sets(tmp_path / "tags", count=48, size=32)
    for name in ("single_label", "label_sets"):
        shutil.copy(FIXTURES / f"written_by_main_2026_12_07_{name}.ckpt", tmp_path / f"{name}.ckpt")
    return tmp_path


def epoch_metrics(checkpoint: Path) -> dict[str, float]:
    return torch.load(checkpoint, weights_only=True)["epoch_metrics"]


@pytest.mark.slow
def test_a_single_label_checkpoint_of_before_validates_exports_and_is_served(before):
    checkpoint = before / "single_label.ckpt"
    bundle = read_bundle(checkpoint)
    assert bundle.classes == ("class_0", "class_1", "class_2") and bundle.task.name == "multiclass"
    geometry = bundle.preprocessing.geometry  # a model from before data.resize was center-cropped
    assert geometry.size == (16, 16) and geometry.resize == "crop"
    assert bundle.decision.reject_below == pytest.approx(0.8729, abs=1e-4)

    validated = main(["validate", "--ckpt_path", str(checkpoint), *QUIET])
    assert float(validated.trainer.callback_metrics["val/acc"]) == pytest.approx(
        epoch_metrics(checkpoint)["val/acc"], abs=1e-6)

    exported = before / "shipped" / "model.onnx"
    main(["export", "--ckpt_path", str(checkpoint), "--output", str(exported)])
    main(["predict_onnx", "--model", str(exported), "--input", str(before / "images")])
    predicted = main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(before / "images"), *QUIET])
    rows = {row["path"]: row for row in read_rows(Path(predicted.trainer.logger.log_dir) / "predictions.csv")}
    from_onnx = read_rows(predictions_file(exported))
    assert len(from_onnx) == len(rows) == 30
    for row in from_onnx:
        assert row["prediction"] == rows[row["path"]]["prediction"]
        assert float(row["confidence"]) == pytest.approx(float(rows[row["path"]]["confidence"]), abs=1e-4)
        assert row["unsure"] == rows[row["path"]]["unsure"]

    for served in (checkpoint, exported):  # the server's worker: its setup, a batch, the answers
        api = ClassifierAPI(ServedModel(served, *identity(served), top_k=3), None, UploadLimits(), 8)
        ctrl_c = signal.getsignal(signal.SIGINT)
        api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
        signal.signal(signal.SIGINT, ctrl_c)
        paths = sorted(rows)[:6]
        crops = np.stack([prepare(Path(path).read_bytes(), api.model.view, UploadLimits()) for path in paths])
        for path, said in zip(paths, api.predict(crops)):
            answer = api.encode_response(said)["answer"]
            assert answer["prediction"] == rows[path]["prediction"]
            assert answer["reject_below"] == pytest.approx(0.8729, abs=1e-4)


@pytest.mark.slow
def test_a_label_sets_checkpoint_of_before_validates_and_exports_its_thresholds(before):
    checkpoint = before / "label_sets.ckpt"
    bundle = read_bundle(checkpoint)
    assert bundle.task.name == "multilabel" and bundle.classes == tuple(sorted(LABEL_CORNERS))
    assert bundle.decision.label_thresholds == (0.5, 0.5, 0.5, 0.5)

    validated = main(["validate", "--ckpt_path", str(checkpoint), *QUIET])
    assert float(validated.trainer.callback_metrics["val/mAP"]) == pytest.approx(
        epoch_metrics(checkpoint)["val/mAP"], abs=1e-6)

    exported = before / "sets.onnx"
    main(["export", "--ckpt_path", str(checkpoint), "--output", str(exported)])
    images = before / "tags" / "images"
    main(["predict_onnx", "--model", str(exported), "--input", str(images)])
    predicted = main(["predict", "--ckpt_path", str(checkpoint), "--data.predict_dir", str(images), *QUIET])
    rows = {row["path"]: row for row in read_rows(Path(predicted.trainer.logger.log_dir) / "predictions.csv")}
    from_onnx = read_rows(predictions_file(exported))
    assert len(from_onnx) == len(rows) == 48
    assert all(row["labels"] == rows[row["path"]]["labels"] for row in from_onnx)
