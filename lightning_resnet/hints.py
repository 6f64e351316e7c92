"""The commands this project prints for a person to paste (where results went, how to continue): they name the
Python and TensorBoard of the environment the run ran in, so that they work in a shell where it is not active."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def shown(path: str | Path) -> str:
    """``path`` as short as it stays right from the current folder, quoted for a shell."""
    absolute = Path(path).absolute()
    try:
        relative = absolute.relative_to(Path.cwd())
        text = str(relative) if relative.parts else "."
    except ValueError:
        text = str(absolute)
    return shlex.quote(text)


def python_command(*words: str) -> str:
    """``python -m lightning_resnet <words>``, with this environment's Python."""
    return " ".join([shown(sys.executable), "-m", "lightning_resnet", *words])


def tensorboard_command(logdir: str | Path) -> str:
    """``tensorboard --logdir <logdir>``, with this environment's TensorBoard."""
    beside = Path(sys.executable).parent / ("tensorboard.exe" if os.name == "nt" else "tensorboard")
    program = shown(beside) if beside.is_file() else f"{shown(sys.executable)} -m tensorboard.main"
    return f"{program} --logdir {shown(logdir)}"
