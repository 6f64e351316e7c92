"""``predict_onnx``: run an exported ``.onnx`` (ONNX Runtime) or ``.xml`` (OpenVINO) over a folder, writing
``predictions.csv``.

It reads the images as ``predict`` does and feeds the ``uint8`` crops to the exported program, which normalizes,
applies the temperature and the activation itself (:mod:`lightning_resnet.runtimes`). The columns are those of
``predict``'s ``predictions.csv``, so the shipped file can be checked against the checkpoint (a multi-label model's:
each image's labels, at the thresholds the export carries, and every label's probability).
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import Namespace

from ..data import scan_unlabelled
from ..errors import check
from ..reports import write_predictions
from .options import CommandParser, add_threshold_option, threshold

COMMAND = "predict_onnx"


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    parser.add_argument("--model", type=Path, required=True, help="the exported .onnx or .xml (its .json beside it)")
    parser.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    parser.add_argument("--output", type=Path | None, default=None,
                        help="the CSV to write (default: <model file>.predictions.csv beside it)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--top_k", type=int, default=5)
    add_threshold_option(parser, "the export's")
    return parser.parse_args(args)


def predictions_file(model: Path) -> Path:
    """Where ``predict_onnx`` writes by default: ``<file>.predictions.csv`` beside the model, each exported file its
    own (``best.int8.onnx`` and ``best.int8.xml`` would share ``best.int8.predictions.csv``)."""
    return model.with_name(model.name + ".predictions.csv")


def predict_onnx(args: list[str]) -> Path:
    """Classify every image of ``--input`` with the exported model; returns the CSV written."""
    from ..runtimes import open_predictor, predict_images

    options = parse(args)
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.top_k >= 1, f"--top_k must be at least 1, got {options.top_k}")
    given = threshold(options.reject_below)
    model = open_predictor(options.model, exported_only=True)
    paths = scan_unlabelled(options.input, "--input")
    seen = predict_images(model, paths, options.batch_size)
    decision, names = model.bundle.decision.with_reject_below(given), model.class_names
    said = decision.verdicts(seen.probabilities, seen.logits, names, options.top_k)
    rows = {path: each.row(path) for path, each in zip(seen.keys, said)}
    rows.update((path, decision.task.unreadable_row(path, names, options.top_k)) for path in seen.unreadable)
    output = options.output or predictions_file(options.model)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        print(f"replacing {output}")
    write_predictions(output, decision.task.header(names, options.top_k), rows)
    return output
