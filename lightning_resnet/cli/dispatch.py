"""One function, :func:`main`, that dispatches a command and maps errors to exit codes.

Every command is a line of :data:`~.commands.COMMANDS`: Lightning's subcommands and this project's trainer methods
(``summary``, ``inspect``, ``convert``, ``lr_find``) run through :class:`~.app.ResNetCLI`; every other command is the
function of its name in the module of its name here, imported when it runs.
"""

from __future__ import annotations

import importlib
import pickle
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..errors import UserError, exit_with, first_line
from ..training.divergence import NonFiniteLossError
from .app import ResNetCLI, cli_options
from .child_processes import ChildProcesses
from .commands import OWN


def _hint(message: str) -> str:
    if "gpu" in message.lower() or "cuda" in message.lower():
        return " (this machine has no GPU: run with --trainer.accelerator cpu --trainer.devices 1)"
    return ""


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """This project's warnings as ``warning: <message>``: they name the option or file themselves, and the
    source line that raised them means nothing to a user. Others keep Python's format."""
    if str(filename).startswith(_PACKAGE):
        return f"warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


_python_format_warning = warnings.formatwarning


def main(args: list[str] | None = None) -> Any:
    """Run the command line; errors a user can act on end it with one line on stderr, not a traceback.

    Exit codes: 2 for a configuration, path or folder that cannot work (:class:`~lightning_resnet.errors.UserError`,
    a missing file, a trainer option Lightning refuses), 1 for a run that diverged, a file refused because it
    could run code, or a defect (with its traceback), 128 + 2 for Ctrl-C and 128 + 15 for SIGTERM (both save
    ``last.ckpt`` during ``fit``). Whatever the ending, no process the command started is left running.
    """
    warnings.formatwarning = _format_warning
    children = ChildProcesses()
    failed = True
    try:
        result = run_command(args)
        failed = False
        leave_the_process_group()
        return result
    except SystemExit as exit_:
        failed = exit_.code not in (0, None)
        raise
    finally:
        children.end(failed)


def leave_the_process_group() -> None:
    """End the process group a finished DDP run leaves (Lightning keeps it): left to the interpreter's exit, gloo's
    threads can abort it ("terminate called without an active exception", exit -6: a resumed two-node fit of
    tests/training/test_many_machines.py in a CI run). Not after a failure, where the other processes may not come."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def run_command(args: list[str] | None) -> Any:
    """The command ``args`` names, its errors mapped to exit codes (see :func:`main`)."""
    try:
        given = sys.argv[1:] if args is None else args
        if given[:1] and given[0] in OWN:
            command = getattr(importlib.import_module(f".{given[0]}", __package__), given[0])
            return command(given[1:])
        return ResNetCLI(args=args, **cli_options())
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None  # the run did not finish: let a scheduler see it
    except SystemExit as exit_:
        if exit_.code == 1 and isinstance(exit_.__context__, KeyboardInterrupt):
            raise SystemExit(128 + signal.SIGINT) from None  # Lightning's exit after Ctrl-C, as a shell reports it
        raise
    except (UserError, FileNotFoundError) as error:
        exit_with(str(error), 2)
    except MisconfigurationException as error:  # Lightning's word on trainer options that cannot work here
        exit_with(f"{first_line(error)}{_hint(str(error))}", 2)
    except NonFiniteLossError as error:
        exit_with(str(error), 1)
    except pickle.UnpicklingError as error:
        exit_with("refusing a checkpoint that holds more than tensors and plain data, which could run code "
                  f"(read with weights_only=True): {first_line(error)}", 1)
