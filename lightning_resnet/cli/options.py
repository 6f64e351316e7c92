"""What the commands outside LightningCLI share: their parser (jsonargparse, as Lightning's subcommands: ``--config
FILE``, ``--print_config``, a bad option as one line), and the options that choose a trained model, how its answers
read and where a server listens (``serve``, ``demo``, ``predict_onnx``)."""

from __future__ import annotations

import functools
import math
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from ..errors import UserError, check, exit_with
from ..hints import shown
from ..tasks import MONITOR
from ..tasks.metrics import MONITOR_MODE
from .parser_errors import one_line

HOSTS = ("127.0.0.1", "0.0.0.0", "::")
"""The interfaces a server binds: loopback, every IPv4 one, every IPv6 one."""
API_KEY_VARIABLE = "LIT_SERVER_API_KEY"
"""The environment variable of a server's key (LitServe's own name for it), for deployments."""


class CommandParser(ArgumentParser):
    """jsonargparse's parser for the command ``name``: ``--config`` reads its options from a YAML file (what
    ``--print_config`` writes), and a bad option is one line (``error: ...``, exit code 2) with a pointer to
    ``--help``."""

    def __init__(self, name: str, **options: Any) -> None:
        from .commands import BY_NAME

        super().__init__(prog=f"python -m lightning_resnet {name}", description=BY_NAME[name].summary, **options)
        self.add_argument("--config", action=ActionConfigFile,
                          help="a YAML file of this command's options (--print_config prints one)")

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        exit_with(one_line(message, prefix="--"), 2, usage=self.prog)


def add_objective_options(parser: ArgumentParser, what: str, default: str | None = MONITOR) -> None:
    """The score a command ranks runs by, and which way is better."""
    chosen_by_fit = f"what fit chooses its best checkpoint by: {MONITOR}, or val/mAP with several labels per image"
    parser.add_argument("--metric", type=str | None, default=default,
                        help=f"{what} (default {default or chosen_by_fit})")
    parser.add_argument("--direction", type=Literal["maximize", "minimize"],
                        default="maximize" if MONITOR_MODE == "max" else "minimize")


def add_model_options(parser: ArgumentParser) -> None:
    """The trained model and how its answers read."""
    parser.add_argument("--model", type=Path, required=True,
                        help="a checkpoint of this project (.ckpt), or an exported .onnx with its .json beside it")
    parser.add_argument("--top_k", type=int, default=5, help="classes in each answer, most probable first")
    add_threshold_option(parser, "the threshold fit chose on the validation split, stored in the model")
    parser.add_argument("--name", type=str | None, default=None,
                        help="the model's name in answers (default: its experiment, or the file's name)")
    parser.add_argument("--version", type=str | None, default=None,
                        help="the model's version in answers (default: the start of the file's SHA-256)")


def add_checkpoint_options(parser: ArgumentParser) -> None:
    """A checkpoint of ``fit``: a file, or ``best`` or ``last`` of an experiment's newest run."""
    parser.add_argument("--ckpt_path", type=str, required=True,
                        help="a checkpoint of fit, or best / last of the newest run of --experiment")
    parser.add_argument("--experiment", type=Path, default=Path("logs/default"),
                        help="the experiment folder whose newest run best and last name (logs/<logger name>)")


def add_unlabelled_options(parser: ArgumentParser) -> None:
    """A trained checkpoint, the folder of images nobody labelled it looks at, and how it reads them."""
    add_checkpoint_options(parser)
    parser.add_argument("--data.predict_dir", type=Path, required=True,
                        help="the images nobody labelled: a folder, searched recursively")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_workers", type=int, default=0, help="loader processes that read the images")


def named_checkpoint_of(options: Namespace) -> Path:
    """The checkpoint ``--ckpt_path`` names (``best`` and ``last``: of the newest run of ``--experiment``)."""
    from .checkpoint_options import NAMED, named_checkpoint

    if options.ckpt_path in NAMED:
        return named_checkpoint(options.ckpt_path, options.experiment)
    path = Path(options.ckpt_path).expanduser()
    check(path.is_file(), f"--ckpt_path {options.ckpt_path} does not exist: give best, last or a checkpoint file")
    return path


def unlabelled_checkpoint(options: Namespace) -> Path:
    """The checkpoint of :func:`add_unlabelled_options`, its loader options checked."""
    check(options.batch_size >= 1, f"--batch_size must be at least 1, got {options.batch_size}")
    check(options.num_workers >= 0, f"--num_workers must be 0 or more, got {options.num_workers}")
    return named_checkpoint_of(options)


def replacing(output: Path, option: str = "--output") -> None:
    """Before a CSV a run may read (``pseudo_labels.csv``) is written again: one line when the config of a run under
    ``logs/`` names it as its ``data.extra_labels`` (a resume of that run would train on other images), else a line
    that it is replaced."""
    if not output.exists():
        return
    for config in sorted(Path("logs").glob("**/config.yaml")):
        try:
            named = yaml.safe_load(config.read_text()).get("data", {}).get("extra_labels")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if named and Path(named).expanduser().resolve() == output.resolve():
            elsewhere = output.with_name(output.stem + "_2" + output.suffix)
            raise UserError(f"{option} {output} is the data.extra_labels of {config.parent}, which a resume of that "
                            f"run reads: write elsewhere ({option} {elsewhere})")
    print(f"replacing {shown(output)}")


def add_threshold_option(parser: ArgumentParser, default: str) -> None:
    # text, read by threshold(): jsonargparse's float takes neither -inf nor nan, which deserves its own line
    parser.add_argument("--reject_below", type=str | None, default=None,
                        help=f"a prediction whose energy score is below this is unsure; -inf: never "
                             f"(default: {default})")


def threshold(given: str | None) -> float | None:
    """``--reject_below`` as a number (None: the model's); one line unless it is an energy score."""
    if given is None:
        return None
    try:
        value = float(given)
    except ValueError:
        value = math.nan
    check(not math.isnan(value), f"--reject_below must be an energy score (a number, or -inf: nothing unsure), "
                                 f"got {given}")
    return value


def add_address_options(parser: ArgumentParser, port: int) -> None:
    """Where a server listens, and the key a client must give."""
    parser.add_argument("--host", type=str, default="127.0.0.1",
                        help="the interface to listen on: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every one)")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--api_key", type=str | None, default=None,
                        help=f"the key every client must give (serve: the X-API-Key header; demo: the password of "
                             f"its login page); by default ${API_KEY_VARIABLE}, which keeps it out of the process "
                             "list and of --print_config")


def api_key(options: Namespace) -> str | None:
    """The key clients must give: ``--api_key``, else :data:`API_KEY_VARIABLE`, else none."""
    key = options.api_key or os.environ.get(API_KEY_VARIABLE) or None
    check(key is None or key.strip() == key and len(key) >= 8,
          f"--api_key (or ${API_KEY_VARIABLE}) must be at least 8 characters with no surrounding spaces")
    return key


def warn_if_open(host: str, port: int, key: str | None, command: str) -> None:
    """One line when a server listens beyond this machine without a key."""
    if host != "127.0.0.1" and key is None:
        sys.stderr.write(f"warning: {command} listens on every interface (--host {host}) without a key: anyone who "
                         f"can reach port {port} can use the model; set ${API_KEY_VARIABLE} (or --api_key)\n")
        sys.stderr.flush()


def check_address(host: str, port: int) -> None:
    """One line when the address cannot be listened on, before anything is loaded."""
    check(host in HOSTS, f"--host {host}: expected one of {', '.join(HOSTS)}")
    check(1024 <= port <= 65535, f"--port must be between 1024 and 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); "
                            "is another server there? choose another --port") from None


def address(host: str, port: int) -> str:
    """The address a person opens: ``localhost`` for loopback."""
    return f"http://{'localhost' if host == '127.0.0.1' else host}:{port}"


def stop_on_sigterm() -> None:
    """SIGTERM (a service manager's stop) as Ctrl-C in this process, so that the server shuts down as it does on
    Ctrl-C; in processes forked from it later, which their own server has shut down before raising the signal
    again, it ends them quietly."""
    signal.signal(signal.SIGTERM, functools.partial(_stop, os.getpid()))


def _stop(server_pid: int, signum: int, frame: Any) -> NoReturn:
    if os.getpid() == server_pid:
        # once: a service manager signals every process of the group, and LitServe's workers signal the server
        # again when they see their HTTP processes go, which must not cut the shutdown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    raise SystemExit(0)
