"""``predict_onnx``: run an exported ``.onnx`` (ONNX Runtime) or ``.xml`` (OpenVINO) over a folder, writing
``predictions.csv``.

It reads the images as ``predict`` does and feeds the ``uint8`` crops to the exported program,
which normalizes, applies the temperature and the softmax itself (see
:mod:`lightning_resnet.inference.exported`). The columns are those of ``predict``'s ``predictions.csv``,
so the shipped file can be checked against the checkpoint (a multi-label model's: each image's labels, at the
thresholds the export carries, and every label's probability).
"""

from __future__ import annotations

from pathlib import Path

import torch
from jsonargparse import Namespace

from ..data import DECODE_ERRORS, scan_unlabelled
from ..errors import check
from ..inference.verdict import verdicts
from ..reports import LabelSetRow, PredictionRow, write_predictions
from .options import CommandParser, add_threshold_option, threshold

COMMAND = "predict_onnx"


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND, __doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the exported .onnx or .xml (its .json beside it)")
    parser.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    parser.add_argument("--output", type=Path | None, default=None,
                        help="the CSV to write (default: <model>.predictions.csv beside the model)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--top_k", type=int, default=5)
    add_threshold_option(parser, "the export's")
    return parser.parse_args(args)


def predict_onnx(args: list[str]) -> Path:
    """Classify every image of ``--input`` with the exported model; returns the CSV written."""
    from ..inference.exported import ExportedClassifier

    options = parse(args)
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.top_k >= 1, f"--top_k must be at least 1, got {options.top_k}")
    given = threshold(options.reject_below)
    classifier = ExportedClassifier(options.model)
    reject_below = classifier.reject_below if given is None else given
    thresholds = classifier.label_thresholds
    row_kind = PredictionRow if thresholds is None else LabelSetRow
    rows: dict[str, PredictionRow | LabelSetRow] = {}
    paths = scan_unlabelled(options.input, "--input")
    for start in range(0, len(paths), options.batch_size):
        images, readable = [], []
        for path in paths[start : start + options.batch_size]:
            try:
                images.append(classifier.view(path))
                readable.append(path)
            except DECODE_ERRORS:
                rows[path] = row_kind(path, error="could not be read")
        if not images:
            continue
        probabilities, logits = classifier.classify(images)
        if thresholds is not None:
            chosen = probabilities >= torch.tensor(thresholds)
            rows.update((path, LabelSetRow.predicted(path, each, picked, classifier.class_names))
                        for path, each, picked in zip(readable, probabilities, chosen))
            continue
        said = verdicts(probabilities, logits, classifier.temperature, classifier.class_names, options.top_k,
                        reject_below)
        rows.update((path, PredictionRow.from_verdict(path, each)) for path, each in zip(readable, said))
    output = options.output or options.model.with_suffix(".predictions.csv")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.exists():
        print(f"replacing {output}")
    header = PredictionRow.header(options.top_k) if thresholds is None else LabelSetRow.header(classifier.class_names)
    write_predictions(output, header, rows)
    return output
