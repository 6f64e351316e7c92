"""``export --format openvino``: OpenVINO's ``.xml`` converted from the ONNX export, quantized and checked as
``--quantize int8`` is, run by ``predict_onnx`` and ``serve`` like any export; a float ``.xml`` answers in 32-bit
float, as the ONNX program it came from."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lightning_resnet.cli import main
from lightning_resnet.inference.export import INPUT_NAME, OUTPUT_NAMES, shipped, to_openvino
from lightning_resnet.inference.runtimes import open_runtime
from lightning_resnet.inference.shipped import identity
from lightning_resnet.serving.api import ClassifierAPI, ServedModel
from lightning_resnet.serving.uploads import UploadLimits, prepare
from lightning_resnet.training.trained_model import TrainedModel

from ..conftest import read_rows


def probabilities_of(rows: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    return {row["path"]: dict(zip(row["top5_classes"].split("|"), map(float, row["top5_probabilities"].split("|"))))
            for row in rows}


def test_an_int8_openvino_export_is_checked_and_served_like_any_export(trained, workdir, capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    main(["export", "--ckpt_path", str(best), "--format", "openvino", "--quantize", "int8", "--calibration_images",
          "24", "--keep_accuracy_drop", "true"])
    int8 = best.with_suffix(".int8.xml")
    assert int8.with_suffix(".bin").is_file() and not best.with_suffix(".int8.onnx").exists()
    checked = json.loads(int8.with_suffix(".json").read_text())["quantization"]
    assert checked["validation_images"] == 6 and checked["top1_agreement"] >= 0.97
    assert f"to {int8}" in capsys.readouterr().out  # the check ran the OpenVINO file that is written
    main(["predict_onnx", "--model", str(int8), "--input", str(workdir / "holdout")])
    rows = read_rows(int8.with_suffix(".predictions.csv"))
    trained_model = TrainedModel.read(best)
    paths = sorted(str(path) for path in (workdir / "holdout").rglob("*.*"))
    with torch.no_grad():  # the float model: the checkpoint's network, preprocessing and softmax, as exported
        float_probabilities, _ = shipped(trained_model)(torch.stack([trained_model.view(path) for path in paths]))
    assert sorted(row["path"] for row in rows) == paths
    for path, probabilities in zip(paths, float_probabilities):
        int8_top = probabilities_of(rows)[path]
        assert sum(int8_top.values()) == pytest.approx(1.0, abs=1e-3)  # the softmax stays float
        assert max(abs(int8_top[name] - float(probabilities[trained_model.class_names.index(name)]))
                   for name in int8_top) < 0.03

    api = ClassifierAPI(ServedModel(int8, *identity(int8), top_k=3, reject_below=1.5), None, UploadLimits(), 8)
    ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
    signal.signal(signal.SIGINT, ctrl_c)
    crops = np.stack([prepare(Path(path).read_bytes(), api.model.view, UploadLimits()) for path in paths])
    answered = {row["path"]: row for row in rows}
    for path, said in zip(paths, api.predict(crops)):
        answer = api.encode_response(said)
        assert answer["prediction"] == answered[path]["prediction"]
        assert answer["confidence"] == pytest.approx(float(answered[path]["confidence"]), abs=1e-5)


def test_a_float_openvino_file_answers_in_32_bit_float_as_its_onnx_program(tmp_path):
    """A small program of the exported kind (uint8 images in; probabilities and logits out), converted: its answers
    are ONNX Runtime's to 1e-6, which bfloat16 arithmetic or 16-bit weights would not give."""
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 1, (3, 5)).astype(np.float32)
    nodes = [helper.make_node("Cast", [INPUT_NAME], ["pixels"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["pixels", "spatial"], ["pooled"], keepdims=0),
             helper.make_node("MatMul", ["pooled", "weights"], [OUTPUT_NAMES[1]]),
             helper.make_node("Softmax", [OUTPUT_NAMES[1]], [OUTPUT_NAMES[0]], axis=1)]
    graph = helper.make_graph(
        nodes, "exported", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 5]) for name in OUTPUT_NAMES],
        [numpy_helper.from_array(weights / 100, "weights"), numpy_helper.from_array(np.array([2, 3]), "spatial")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, tmp_path / "model.onnx")
    converted = to_openvino(tmp_path / "model.onnx", tmp_path / "model.xml")
    images = rng.integers(0, 256, (6, 3, 4, 4), dtype=np.uint8)
    from_onnx, from_openvino = open_runtime(tmp_path / "model.onnx")(images), open_runtime(converted)(images)
    assert np.abs(from_openvino[1] - from_onnx[1]).max() < 1e-5 and np.abs(from_openvino[0] - from_onnx[0]).max() < 1e-6
    assert np.abs(from_onnx[1]).max() > 1  # logits large enough that bfloat16's 8 bits of mantissa would show
