"""The one error type for "the user's configuration or data is wrong": the command line prints it as one line.

Raise a :class:`UserError` (or a subclass) wherever a value the user gave, through a config, a
flag or a folder, cannot work; name the option or path and what was expected. ``cli.main``
prints ``error: <message>`` on stderr and exits with code 2, with no traceback. Anything else
is a defect of this project and keeps its traceback.
"""


class UserError(ValueError):
    """A configuration value, a path or a folder that cannot work; the message names it and what was expected."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise UserError(message)
