"""``predict_onnx``: run an exported ``.onnx`` over a folder with onnxruntime, writing ``predictions.csv``.

It reads the images as ``predict`` does and feeds the ``uint8`` crops to the exported program,
which normalizes, applies the temperature and the softmax itself (see
:mod:`lightning_resnet.inference.onnx`). The columns are those of ``predict``'s ``predictions.csv``,
so the shipped file can be checked against the checkpoint.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from ..data import DECODE_ERRORS, scan_unlabelled
from ..errors import check, exit_with
from ..reports import PredictionRow, write_predictions

COMMAND = "predict_onnx"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        exit_with(message, 2, usage=self.prog)


def parse(args: list[str]) -> argparse.Namespace:
    parser = _Parser(prog=f"python -m lightning_resnet {COMMAND}", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the exported .onnx (its .json beside it)")
    parser.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    parser.add_argument("--output", type=Path, default=None,
                        help="the CSV to write (default: <model>.predictions.csv beside the model)")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--top_k", type=int, default=5)
    return parser.parse_args(args)


def predict_onnx(args: list[str]) -> Path:
    """Classify every image of ``--input`` with the exported model; returns the CSV written."""
    from ..inference.onnx import OnnxClassifier

    options = parse(args)
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.top_k >= 1, f"--top_k must be at least 1, got {options.top_k}")
    classifier = OnnxClassifier(options.model)
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
        for path, image in zip(readable, classifier.probabilities(images)):
            rows[path] = PredictionRow.from_probabilities(path, image, classifier.class_names, options.top_k)
    output = options.output or options.model.with_suffix(".predictions.csv")
    output.parent.mkdir(parents=True, exist_ok=True)
    replaced = output.exists()
    write_predictions(output, rows, options.top_k)
    print(f"wrote {len(rows)} predictions to {output}" + (" (replacing the file that was there)" if replaced else ""))
    return output
