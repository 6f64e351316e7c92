"""``export --format openvino``: OpenVINO's ``.xml`` converted from the ONNX export, answering as the ONNX export does,
quantized and checked as ``--quantize int8`` is, and run by ``predict_onnx`` and ``serve`` like any export."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest

from lightning_resnet.cli import main
from lightning_resnet.inference.shipped import identity
from lightning_resnet.serving.api import ClassifierAPI, ServedModel
from lightning_resnet.serving.uploads import UploadLimits, prepare

from ..conftest import read_rows


def probabilities_of(rows: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    return {row["path"]: dict(zip(row["top5_classes"].split("|"), map(float, row["top5_probabilities"].split("|"))))
            for row in rows}


def test_an_openvino_export_answers_as_the_onnx_export_and_is_served_like_it(trained, workdir, capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    holdout = str(workdir / "holdout")
    main(["export", "--ckpt_path", str(best), "--output", str(workdir / "onnx/model.onnx")])
    main(["export", "--ckpt_path", str(best), "--format", "openvino", "--output", str(workdir / "openvino/model.xml")])
    assert (workdir / "openvino/model.bin").stat().st_size > 100_000  # the weights, in 32-bit float
    assert json.loads((workdir / "openvino/model.json").read_text()) == json.loads(
        (workdir / "onnx/model.json").read_text())
    for model in ("onnx/model.onnx", "openvino/model.xml"):
        main(["predict_onnx", "--model", str(workdir / model), "--input", holdout])
    from_onnx = read_rows(workdir / "onnx/model.predictions.csv")
    from_openvino = read_rows(workdir / "openvino/model.predictions.csv")
    assert [row["prediction"] for row in from_openvino] == [row["prediction"] for row in from_onnx]
    onnx_probabilities = probabilities_of(from_onnx)
    for path, probabilities in probabilities_of(from_openvino).items():
        assert probabilities == pytest.approx(onnx_probabilities[path], abs=1e-5)  # in 32-bit float, not bf16

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
        assert max(abs(probabilities[name] - onnx_probabilities[path][name]) for name in probabilities) < 0.03

    api = ClassifierAPI(ServedModel(workdir / "openvino/model.xml", *identity(workdir / "openvino/model.xml"),
                                    top_k=3, reject_below=1.5), None, UploadLimits(), 8)
    ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
    signal.signal(signal.SIGINT, ctrl_c)
    paths = sorted(onnx_probabilities)
    crops = np.stack([prepare(Path(path).read_bytes(), api.model.view, UploadLimits()) for path in paths])
    expected = {row["path"]: row for row in from_onnx}
    for path, said in zip(paths, api.predict(crops)):
        answer = api.encode_response(said)
        assert answer["prediction"] == expected[path]["prediction"]
        assert answer["confidence"] == pytest.approx(float(expected[path]["confidence"]), abs=1e-5)
