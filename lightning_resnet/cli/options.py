"""What the commands outside LightningCLI share: an argument parser whose errors are one line, and the options
that choose a trained model and how its answers read (``serve``, ``demo``, ``predict_onnx``)."""

from __future__ import annotations

import argparse
import functools
import math
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from ..errors import check, exit_with

if TYPE_CHECKING:
    from ..inference.shipped import ShippedModel
    from ..serving.api import ServedModel


class OptionParser(argparse.ArgumentParser):
    """argparse, with a bad option as one line (``error: ...``, exit code 2) and a pointer to ``--help``."""

    def error(self, message: str) -> NoReturn:
        exit_with(message, 2, usage=self.prog)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True,
                        help="a checkpoint of this project (.ckpt), or an exported .onnx with its .json beside it")
    parser.add_argument("--top_k", type=int, default=5, help="classes in each answer, most probable first")
    parser.add_argument("--reject_below", type=float, default=None,
                        help="a prediction whose energy score is below this is unsure (default: the threshold fit "
                             "chose on the validation split, stored in the model)")
    parser.add_argument("--name", default=None,
                        help="the model's name in answers (default: its experiment, or the file's name)")
    parser.add_argument("--version", default=None,
                        help="the model's version in answers (default: the start of the file's SHA-256)")


def check_threshold(reject_below: float | None) -> None:
    check(reject_below is None or not math.isnan(reject_below),
          "--reject_below must be an energy score (a number, or -inf: nothing unsure), got nan")


def served_model(options: argparse.Namespace) -> tuple[ServedModel, ShippedModel]:
    """The model the options name, loaded (one line when it cannot be), and how its answers read."""
    from ..inference.shipped import identity, load_classifier
    from ..serving.api import ServedModel

    check(options.top_k >= 1, f"--top_k must be at least 1, got {options.top_k}")
    check_threshold(options.reject_below)
    model = load_classifier(options.model)
    name, version = identity(options.model)
    reject_below = model.reject_below if options.reject_below is None else options.reject_below
    served = ServedModel(options.model, options.name or name, options.version or version, options.top_k, reject_below)
    return served, model


def stop_on_sigterm() -> None:
    """SIGTERM (a service manager's stop) as Ctrl-C in this process, so that the server shuts down as it does on
    Ctrl-C; in processes forked from it later, which their own server has shut down before raising the signal
    again, it ends them quietly."""
    signal.signal(signal.SIGTERM, functools.partial(_stop, os.getpid()))


def _stop(server_pid: int, signum, frame) -> NoReturn:
    if os.getpid() == server_pid:
        # once: a service manager signals every process of the group, and LitServe's workers signal the server
        # again when they see their HTTP processes go, which must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    raise SystemExit(0)
