"""``export``: a trained model as a file other programs run, read from its checkpoint alone (its bundle: the
network, the classes, the preprocessing and the decision), with its description beside it (``<file>.json``); or, with
``--format timm``, as a folder in timm's hub layout (:mod:`~lightning_resnet.inference.timm_hub`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from jsonargparse import Namespace

from ..errors import check
from .options import CommandParser, add_checkpoint_options, named_checkpoint_of

COMMAND = "export"


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    add_checkpoint_options(parser)
    parser.add_argument("--format", type=Literal["onnx", "openvino", "torch_export", "timm"], default="onnx",
                        help="onnx; openvino (an .xml and its .bin, converted from the ONNX; as INT8 faster than ONNX "
                             "Runtime's INT8 on Intel CPUs); torch_export (a .pt2 program for torch.export.load); or "
                             "timm (a folder in timm's hub layout: config.json, model.safetensors, README.md, which "
                             "timm.create_model('local-dir:FOLDER', pretrained=True) loads)")
    parser.add_argument("--output", type=Path | None, default=None,
                        help="the model file, named with its format's suffix (default: the checkpoint's path with it; "
                             ".int8.onnx or .int8.xml quantized); for timm, a new folder (default: the checkpoint's "
                             "path without its suffix, plus _timm)")
    parser.add_argument("--quantize", type=Literal["int8"] | None, default=None,
                        help="int8: ONNX Runtime's static quantization (int8 weights per channel, uint8 activations), "
                             "checked against the float model on the run's validation images before it is written")
    parser.add_argument("--calibration_images", type=int, default=256,
                        help="training images of the run (in the evaluation view) that set the activations' ranges")
    parser.add_argument("--max_accuracy_drop", type=float, default=1.0,
                        help="points INT8 may lose on the validation images (accuracy; mAP or exact-set accuracy for "
                             "a label set); more is refused")
    parser.add_argument("--keep_accuracy_drop", type=bool, default=False,
                        help="write the INT8 model whatever it loses")
    return parser.parse_args(args)


def export(args: list[str]) -> Path:
    """Export the checkpoint ``--ckpt_path`` names; returns the file written."""
    from ..bundle import read_bundle
    from ..inference.export import export_bundle

    options = parse(args)
    bundle = read_bundle(named_checkpoint_of(options))
    if options.format == "timm":  # a folder of weights for timm to build and run, not a program with its runtime
        from ..inference.timm_hub import export_timm

        check(options.quantize is None, "--quantize int8 writes an ONNX or OpenVINO program; --format timm keeps the "
                                        "float weights for timm: leave one of them out")
        return export_timm(bundle, options.output)
    if options.quantize is None:
        return export_bundle(bundle, options.format, options.output)
    from ..inference.quantization import export_int8  # imports onnxruntime's quantization tools

    return export_int8(bundle, options.output, options.calibration_images, options.max_accuracy_drop,
                       options.keep_accuracy_drop, options.format)
