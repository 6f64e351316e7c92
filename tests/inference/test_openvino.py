"""``export --format openvino``: OpenVINO's ``.xml`` converted from the ONNX export, answering as the checkpoint does,
quantized and checked as ``--quantize int8`` is, and run by ``predict_onnx`` and ``serve`` like any export."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.inference.export import shipped, shipped_metadata
from lightning_resnet.inference.shipped import identity
from lightning_resnet.serving.api import ClassifierAPI, ServedModel
from lightning_resnet.serving.uploads import UploadLimits, prepare
from lightning_resnet.training.trained_model import TrainedModel

from ..conftest import read_rows


def probabilities_of(rows: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    return {row["path"]: dict(zip(row["top5_classes"].split("|"), map(float, row["top5_probabilities"].split("|"))))
            for row in rows}


def test_an_openvino_export_answers_as_the_checkpoint_and_is_served_like_any_export(trained, workdir, capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    holdout = str(workdir / "holdout")
    main(["export", "--ckpt_path", str(best), "--format", "openvino", "--output", str(workdir / "openvino/model.xml")])
    assert (workdir / "openvino/model.bin").stat().st_size > 100_000  # the weights, in 32-bit float
    trained_model = TrainedModel.read(best)
    assert json.loads((workdir / "openvino/model.json").read_text()) == shipped_metadata(trained_model)
    main(["predict_onnx", "--model", str(workdir / "openvino/model.xml"), "--input", holdout])
    rows = read_rows(workdir / "openvino/model.predictions.csv")
    paths = sorted(str(path) for path in (workdir / "holdout").rglob("*.*"))
    with torch.no_grad():  # the checkpoint's network, preprocessing and softmax, as exported
        float_probabilities, _ = shipped(trained_model)(torch.stack([trained_model.view(path) for path in paths]))
    expected = {path: dict(zip(trained_model.class_names, map(float, probabilities)))
                for path, probabilities in zip(paths, float_probabilities)}
    assert sorted(row["path"] for row in rows) == paths
    for path, probabilities in probabilities_of(rows).items():
        assert probabilities == pytest.approx({name: expected[path][name] for name in probabilities}, abs=1e-5)

    # INT8: quantized as for ONNX, then converted; the check runs the OpenVINO file that is written
    main(["export", "--ckpt_path", str(best), "--format", "openvino", "--quantize", "int8", "--calibration_images",
          "24", "--keep_accuracy_drop", "true"])
    int8 = best.with_suffix(".int8.xml")
    assert int8.with_suffix(".bin").is_file() and not best.with_suffix(".int8.onnx").exists()
    assert json.loads(int8.with_suffix(".json").read_text())["quantization"]["validation_images"] == 6
    assert f"to {int8}" in capsys.readouterr().out
    main(["predict_onnx", "--model", str(int8), "--input", holdout])
    for path, probabilities in probabilities_of(read_rows(int8.with_suffix(".predictions.csv"))).items():
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert max(abs(probabilities[name] - expected[path][name]) for name in probabilities) < 0.03

    api = ClassifierAPI(ServedModel(int8, *identity(int8), top_k=3, reject_below=1.5), None, UploadLimits(), 8)
    ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
    signal.signal(signal.SIGINT, ctrl_c)
    crops = np.stack([prepare(Path(path).read_bytes(), api.model.view, UploadLimits()) for path in paths])
    answered = {row["path"]: row for row in read_rows(int8.with_suffix(".predictions.csv"))}
    for path, said in zip(paths, api.predict(crops)):
        answer = api.encode_response(said)
        assert answer["prediction"] == answered[path]["prediction"]
        assert answer["confidence"] == pytest.approx(float(answered[path]["confidence"]), abs=1e-5)
