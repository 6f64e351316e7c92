"""``export --quantize int8``: ONNX Runtime's static INT8, calibrated on training images, checked against the float
model on the validation images, refused in one line when it loses too much, and run like any export."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from lightning_resnet.bundle import read_bundle
from lightning_resnet.cli import main
from lightning_resnet.cli.predict_onnx import predictions_file
from lightning_resnet.errors import UserError
from lightning_resnet.inference.quantization import QuantizationCheck, refuse_a_large_drop
from lightning_resnet.runtimes import ShippedClassifier
from lightning_resnet.serving.api import ClassifierAPI
from lightning_resnet.serving.served import ServedModel, identity
from lightning_resnet.serving.uploads import UploadLimits, prepare

from ..conftest import cli_error, description_of, read_rows, run_cli


@pytest.mark.slow
def test_an_int8_export_is_checked_against_the_float_model_and_runs_like_any_export(trained, workdir, capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    checkpoint_accuracy = float(re.search(r"acc(\d\.\d+)", best.name).group(1))
    main(["export", "--ckpt_path", str(best), "--quantize", "int8", "--calibration_images", "12",
          "--keep_accuracy_drop", "true"])
    printed = capsys.readouterr().out
    int8 = best.with_suffix(".int8.onnx")
    measured = description_of(int8)["export"]["quantization"]
    assert measured["calibration_images"] == 12 and measured["validation_images"] == 6
    assert measured["top1_agreement"] >= 0.97  # on the validation images, held out of training
    # the float model it is compared with is the checkpoint: the same accuracy as fit measured at that epoch
    assert measured["float_accuracy"] == pytest.approx(checkpoint_accuracy, abs=1e-4)
    assert (f"INT8 on 6 validation images: float accuracy {measured['float_accuracy']:.4f}, INT8 "
            f"{measured['int8_accuracy']:.4f}") in printed
    graph = onnx.load(str(int8)).graph
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= {node.op_type for node in graph.node}
    int8_weights = [tensor for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8]
    per_channel = [tensor for tensor in graph.initializer if tensor.name.endswith("_scale") and len(tensor.dims) == 1]
    assert len(int8_weights) >= 20 and per_channel  # the 20 convolutions of a ResNet-18, scales per channel

    main(["predict_onnx", "--model", str(int8), "--input", str(workdir / "holdout")])
    rows = read_rows(predictions_file(int8))
    trained_model = read_bundle(best)
    paths = sorted(str(path) for path in (workdir / "holdout").rglob("*.*"))
    with torch.no_grad():  # the float model: the checkpoint's network, preprocessing and softmax, as exported
        float_probabilities, *_ = ShippedClassifier.of(trained_model)(torch.stack([trained_model.view(path)
                                                                                    for path in paths]))
    assert sorted(row["path"] for row in rows) == paths
    by_path = {row["path"]: row for row in rows}
    # the same class wherever the float model decides (its top two 0.01 apart: 8 of the 9 images after 2 epochs;
    # the ninth is a tie, 0.438 and 0.438, where a rounding picks either)
    decided = [index for index, probabilities in enumerate(float_probabilities)
               if float(probabilities.topk(2).values.diff().abs()) >= 0.01]
    assert len(decided) >= 8
    for index in decided:
        float_class = trained_model.classes[int(float_probabilities[index].argmax())]
        assert by_path[paths[index]]["prediction"] == float_class
    for path, probabilities in zip(paths, float_probabilities):
        int8_top = dict(zip(by_path[path]["top5_classes"].split("|"),
                            map(float, by_path[path]["top5_probabilities"].split("|"))))
        assert sum(int8_top.values()) == pytest.approx(1.0, abs=1e-3)  # the softmax stays float
        assert max(abs(int8_top[name] - float(probabilities[index]))
                   for index, name in enumerate(trained_model.classes)) < 0.03

    # serve's worker runs the INT8 file as it runs any export: the answers predict_onnx wrote
    api = ClassifierAPI(ServedModel(int8, *identity(int8), top_k=3, reject_below=1.5), None, UploadLimits(), 8)
    ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
    signal.signal(signal.SIGINT, ctrl_c)
    crops = np.stack([prepare(Path(path).read_bytes(), api.model.view, UploadLimits()) for path in paths])
    for path, said in zip(paths, api.predict(crops)):
        answer = api.encode_response(said)["answer"]
        assert answer["prediction"] == by_path[path]["prediction"]
        assert answer["confidence"] == pytest.approx(float(by_path[path]["confidence"]), abs=1e-4)

    # the same check in OpenVINO (its thread pool in processes of its own, never in this one, which forks): the
    # INT8 program converted, checked, described as OpenVINO's, and run by predict_onnx as any export
    run_cli(workdir, "export", "--ckpt_path", str(best), "--quantize", "int8", "--format", "openvino",
            "--calibration_images", "12", "--keep_accuracy_drop", "true")
    in_openvino = best.with_suffix(".int8.xml")
    described = description_of(in_openvino)["export"]
    assert described["format"] == "openvino" and described["quantization"]["validation_images"] == 6
    run_cli(workdir, "predict_onnx", "--model", str(in_openvino), "--input", str(workdir / "holdout"))
    openvino_rows = {row["path"]: row for row in read_rows(predictions_file(in_openvino))}
    assert openvino_rows.keys() == by_path.keys()
    for path in decided:  # OpenVINO's integer kernels round nearly as ONNX Runtime's do
        assert openvino_rows[paths[path]]["prediction"] == by_path[paths[path]]["prediction"]
    for path in paths:
        assert float(openvino_rows[path]["confidence"]) == pytest.approx(float(by_path[path]["confidence"]), abs=0.03)

    code, error = cli_error(capsys, ["export", "--ckpt_path", str(best), "--quantize", "int8", "--format",
                                     "torch_export"])
    assert code == 2 and "--quantize int8 quantizes an ONNX model" in error and len(error.splitlines()) == 1
    code, error = cli_error(capsys, ["export", "--ckpt_path", str(best), "--quantize", "int8",
                                     "--calibration_images", "0"])
    assert code == 2 and "--calibration_images must be at least 1, got 0" in error
    code, error = cli_error(capsys, ["export", "--ckpt_path", str(best), "--quantize", "int3"])
    errors = [line for line in error.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and all(word in errors[0] for word in ("quantize", "int8", "int3"))


def test_an_int8_model_that_loses_more_than_allowed_is_refused_in_one_line_unless_kept():
    lost_two_points = QuantizationCheck(images=200, float_scores={"accuracy": 0.95}, int8_scores={"accuracy": 0.93},
                                        agreement=0.96)
    with pytest.raises(UserError) as refused:
        refuse_a_large_drop(lost_two_points, max_accuracy_drop=1.0, keep=False)
    assert str(refused.value).startswith("--max_accuracy_drop 1.0: the INT8 model loses 2.00 points on 200 "
                                         "validation images: float accuracy 0.9500, INT8 0.9300 (-2.00 points)")
    assert "more --calibration_images may help" in str(refused.value)
    with pytest.raises(UserError) as refused:  # every training image calibrated it already
        refuse_a_large_drop(lost_two_points, max_accuracy_drop=1.0, keep=False, more_images=False)
    assert "--calibration_images" not in str(refused.value)
    assert "nothing written" in str(refused.value) and "--keep_accuracy_drop true" in str(refused.value)
    refuse_a_large_drop(lost_two_points, max_accuracy_drop=1.0, keep=True)
    refuse_a_large_drop(lost_two_points, max_accuracy_drop=2.5, keep=False)
    refuse_a_large_drop(QuantizationCheck(200, {"accuracy": 0.90}, {"accuracy": 0.91}, 0.97), max_accuracy_drop=0.0,
                        keep=False)  # a gain
