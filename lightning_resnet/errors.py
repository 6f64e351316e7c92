"""The one error type for "the user's configuration or data is wrong": the command line prints it as one line.

Raise a :class:`UserError` (or a subclass) wherever a value the user gave, through a config, a
flag or a folder, cannot work; name the option or path and what was expected. ``cli.main``
prints ``error: <message>`` on stderr and exits with code 2, with no traceback. Anything else
is a defect of this project and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class UserError(ValueError):
    """A configuration value, a path or a folder that cannot work; the message names it and what was expected."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its class name when it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def exit_with(message: str, code: int = 2, usage: str | None = None) -> NoReturn:
    """Print ``error: <message>`` on one line (and ``see: <usage> --help``), then exit with ``code``."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    if usage:
        sys.stderr.write(f"see: {usage} --help\n")
    raise SystemExit(code)
