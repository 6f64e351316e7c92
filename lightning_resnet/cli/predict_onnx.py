"""``predict_onnx``: run an exported ``.onnx`` over a folder with onnxruntime, writing ``predictions.csv``.

It reads the images as ``predict`` does and feeds the ``uint8`` crops to the exported program,
which normalizes, applies the temperature and the softmax itself (see
:mod:`lightning_resnet.inference.onnx`). The columns are those of ``predict``'s ``predictions.csv``,
so the shipped file can be checked against the checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DECODE_ERRORS, scan_unlabelled
from ..errors import check
from ..inference.verdict import verdicts
from ..reports import PredictionRow, write_predictions
from .options import OptionParser, check_threshold

COMMAND = "predict_onnx"


def parse(args: list[str]) -> argparse.Namespace:
    parser = OptionParser(prog=f"python -m lightning_resnet {COMMAND}", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the exported .onnx (its .json beside it)")
    parser.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    parser.add_argument("--output", type=Path, default=None,
                        help="the CSV to write (default: <model>.predictions.csv beside the model)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--top_k", type=int, default=5)
    parser.add_argument("--reject_below", type=float, default=None,
                        help="a prediction whose energy score is below this is unsure (default: the export's)")
    return parser.parse_args(args)


def predict_onnx(args: list[str]) -> Path:
    """Classify every image of ``--input`` with the exported model; returns the CSV written."""
    from ..inference.onnx import OnnxClassifier

    options = parse(args)
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.top_k >= 1, f"--top_k must be at least 1, got {options.top_k}")
    check_threshold(options.reject_below)
    classifier = OnnxClassifier(options.model)
    reject_below = classifier.reject_below if options.reject_below is None else options.reject_below
    rows: dict[str, PredictionRow] = {}
    paths = scan_unlabelled(options.input)
    for start in range(0, len(paths), options.batch_size):
        images, readable = [], []
        for path in paths[start : start + options.batch_size]:
            try:
                images.append(classifier.view(path))
                readable.append(path)
            except DECODE_ERRORS:
                rows[path] = PredictionRow(path, error="could not be read")
        if not images:
            continue
        probabilities, logits = classifier.classify(images)
        said = verdicts(probabilities, logits, classifier.temperature, classifier.class_names, options.top_k,
                        reject_below)
        rows.update((path, PredictionRow.from_verdict(path, each)) for path, each in zip(readable, said))
    output = options.output or options.model.with_suffix(".predictions.csv")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        print(f"replacing {output}")
    write_predictions(output, rows, options.top_k)
    return output
