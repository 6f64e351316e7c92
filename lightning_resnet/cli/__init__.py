"""``python -m lightning_resnet``: :func:`main` runs a command (:mod:`.dispatch`); every command is a line of
:data:`~.commands.COMMANDS`. Nothing heavy is imported until a command runs, so that the commands' table and the
overview (``python -m lightning_resnet --help``) need neither torch nor Lightning."""

from __future__ import annotations

from typing import Any


def main(args: list[str] | None = None) -> Any:
    """Run the command line (:func:`.dispatch.main`)."""
    from .dispatch import main as run

    return run(args)


__all__ = ["main"]
