"""``python -m lightning_resnet`` for the tests, forked from a process that has imported it once.

Each command-line process a test starts would spend ~5 s importing Lightning, torch and the package before doing
anything (benchmarks/README.md, "The suite's tiers"). This process (one per pytest worker, started by
:func:`tests.conftest.start_cli`) imports them once and, for each request on its UNIX socket, forks a child that
runs ``lightning_resnet`` as ``python -m`` would, in the working folder, environment, session and standard streams
the test gave: a real process with its own pid, process group, signals and exit code, whose own children (DDP
ranks, loader workers, server workers, a sweep's trials) are started as the command starts them. The child's exit
status goes back on the request's connection.

Protocol: the test connects, sends one JSON line (``args``, ``cwd``, ``env``, ``new_session``) with its stdout and
stderr as file descriptors (``SCM_RIGHTS``); the zygote answers ``pid <n>`` and, when the child has ended, ``status
<waitpid status>``.
"""

from __future__ import annotations

import atexit
import faulthandler
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import traceback

PRELOADED = ("lightning_resnet.cli", "lightning_resnet.cli.app")
"""What every command imports first: Lightning, torch, torchvision, jsonargparse and the package's CLI."""


def run_child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the command's process and run it; never returns."""
    code = 1
    try:
        if request["new_session"]:
            os.setsid()
        for target, fd in zip((1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        # as a fresh interpreter sets them: a write to a closed pipe or socket raises BrokenPipeError rather than
        # killing the process (with SIG_DFL, serve's process died of SIGPIPE writing to workers its group's SIGTERM
        # had ended), and Ctrl-C raises KeyboardInterrupt
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if os.environ.get("PYTHONFAULTHANDLER"):
            faulthandler.enable(file=sys.stderr, all_threads=True)
        sys.path.insert(0, request["cwd"])  # python -m puts the working folder first
        sys.argv = ["lightning_resnet", *request["args"]]
        try:
            runpy.run_module("lightning_resnet", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exit_code:
            code = exit_code.code if isinstance(exit_code.code, int) else (0 if exit_code.code is None else 1)
            if not isinstance(exit_code.code, (int, type(None))):
                print(exit_code.code, file=sys.stderr)
        except KeyboardInterrupt:
            traceback.print_exc()
            code = 128 + signal.SIGINT
        except BaseException:
            traceback.print_exc()
            code = 1
        threading._shutdown()  # as an interpreter's exit: wait for its other threads, then the exit handlers
        atexit._run_exitfuncs()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def serve(path: str) -> None:
    """Answer requests on the UNIX socket ``path`` until the test process closes its end (stdin)."""
    for module in PRELOADED:
        __import__(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    children: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([listener, sys.stdin], [], [], 0.05)
        if sys.stdin in readable and not sys.stdin.readline():
            return  # the test process is gone
        if listener in readable:
            connection, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 2)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                listener.close()
                connection.close()
                run_child(request, fds)
            for fd in fds:
                os.close(fd)
            connection.sendall(f"pid {pid}\n".encode())
            children[pid] = connection
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            connection = children.pop(pid, None)
            if connection is not None:
                with connection:
                    try:
                        connection.sendall(f"status {status}\n".encode())
                    except OSError:
                        pass


if __name__ == "__main__":
    try:
        serve(sys.argv[1])
    finally:
        os.unlink(sys.argv[1])
        os.rmdir(os.path.dirname(sys.argv[1]))
