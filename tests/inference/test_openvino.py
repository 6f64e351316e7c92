"""``export --format openvino``: OpenVINO's ``.xml`` converted from the ONNX export. A float ``.xml`` answers in
32-bit float, as the ONNX program it came from; an INT8 one is run by ``predict_onnx`` and ``serve`` in
tests/inference/test_quantization.py."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lightning_resnet.inference.export import INPUT_NAME, OUTPUT_NAMES, to_openvino
from lightning_resnet.inference.runtimes import open_runtime


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
