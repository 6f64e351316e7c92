"""``predict_onnx``: run an exported ``.onnx`` over a folder with onnxruntime, writing ``predictions.csv``.

It reads the images as ``predict`` does (the same decoding, resize and center crop, from the
rule in the JSON beside the model) and feeds the ``uint8`` crops to the exported program, which
normalizes, applies the temperature and the softmax itself. The columns are those of
``predict``'s ``predictions.csv``, so the shipped file can be checked against the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

from ..data import DECODE_ERRORS, eval_view, scan_unlabelled
from ..errors import UserError, check
from ..inference.export import INPUT_NAME
from ..reports import PredictionRow, write_predictions

COMMAND = "predict_onnx"
EXPORT_COMMAND = "python -m lightning_resnet export --ckpt_path <ckpt>"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {' '.join(message.split())}\nsee: {self.prog} --help\n")
        raise SystemExit(2)


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
    import onnxruntime

    options = parse(args)
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.top_k >= 1, f"--top_k must be at least 1, got {options.top_k}")
    metadata_path = options.model.with_suffix(".json")
    if not options.model.is_file() or not metadata_path.is_file():
        raise UserError(f"--model {options.model}: expected an exported .onnx with its .json beside it "
                        f"({EXPORT_COMMAND})")
    try:
        metadata = json.loads(metadata_path.read_text())
        settings, names = metadata["input"], metadata["class_names"]
        view = eval_view(settings["image_size"], settings["crop_fraction"], settings["channels"])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{metadata_path} is not the JSON that export writes beside the model "
                        f"({type(error).__name__}: {error}); export again ({EXPORT_COMMAND})") from None
    try:
        session = onnxruntime.InferenceSession(str(options.model), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own classes for unreadable or invalid files
        message = " ".join(str(error).split())[:200]
        raise UserError(f"--model {options.model} is not a readable ONNX model ({message})") from None

    rows: dict[str, PredictionRow] = {}
    paths = scan_unlabelled(options.input)
    for start in range(0, len(paths), options.batch_size):
        images, readable = [], []
        for path in paths[start : start + options.batch_size]:
            try:
                images.append(view(path))
                readable.append(path)
            except DECODE_ERRORS:
                rows[path] = PredictionRow(path, error="could not be read")
        if not images:
            continue
        probabilities = session.run(["probabilities"], {INPUT_NAME: torch.stack(images).numpy()})[0]
        for path, image in zip(readable, torch.from_numpy(np.asarray(probabilities))):
            rows[path] = PredictionRow.from_probabilities(path, image, names, options.top_k)
    output = options.output or options.model.with_suffix(".predictions.csv")
    output.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(output, rows, options.top_k)
    return output
