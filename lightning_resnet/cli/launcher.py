"""The commands a command runs as processes of their own (a sweep's trials, cross-validation's folds), forked from
one process that has imported the package once.

A fresh ``python -m lightning_resnet`` spends ~5 s of CPU importing Lightning, torch and the package before it does
anything (benchmarks/README.md, "Trials and folds from the launcher"). A :class:`Launcher` is one such interpreter,
started when the command starts (its imports overlap the command's own set-up): for each request it forks a child
that runs ``lightning_resnet`` as ``python -m`` would, in the working folder, environment and standard streams it is
given: a real process with its own pid, signals and exit code, in the command's process group (Ctrl-C in a
terminal reaches it as before), whose own children (DDP ranks, loader workers) start as the command starts them.
The launcher is a fresh interpreter rather than a fork of the command, which has run torch's thread pools by then
(a fork has no threads but their locks).

It ignores Ctrl-C and SIGTERM, which are its children's to act on; it ends when the process that started it does
(its control socket closes), killing a command still running. The tests start their real processes from it too
(``tests/conftest.py``).

Protocol, on the control socket (the launcher's standard input, a sequenced-packet socket): one message per
command, a JSON request (``args``, ``cwd``, ``env``, ``new_session``) with three file descriptors (``SCM_RIGHTS``): the
end of a socket pair that is this command's connection, and its stdout and stderr. The launcher answers on the
connection ``pid <n>`` and, once the child has ended, ``status <waitpid status>``.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

PRELOADED = ("lightning_resnet.cli", "lightning_resnet.cli.app")
"""What every command imports first: Lightning, torch, torchvision, jsonargparse and the package's CLI."""
FORKS = sys.platform == "linux"
"""Where the launcher forks (Linux: ``fork`` and sequenced-packet UNIX sockets). Elsewhere (macOS has no
``SOCK_SEQPACKET`` for UNIX sockets, Windows no ``fork``) each command is a fresh interpreter, as before."""


class Launcher:
    """A launcher process (see the module's docstring) and the commands it started; a context manager that ends it."""

    def __init__(self, env: dict[str, str] | None = None, cwd: Path | None = None, new_session: bool = False) -> None:
        self._started: list[LaunchedCommand | subprocess.Popen] = []
        self.process: subprocess.Popen | None = None
        if not FORKS:
            return
        self._control, launcher_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # a message a request
        with launcher_end:
            self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=launcher_end, env=env, cwd=cwd,
                                            start_new_session=new_session)

    def start(self, args: list[str], *, cwd: str | Path | None = None, env: dict[str, str] | None = None,
              stdout: int | None = None, stderr: int | None = None,
              new_session: bool = False) -> LaunchedCommand | subprocess.Popen:
        """``python -m lightning_resnet <args>``, forked by the launcher; ``cwd`` and ``env`` this process's own
        unless given, ``stdout`` and ``stderr`` file descriptors (this process's 1 and 2 unless given)."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if self.process is None:  # not FORKS: a fresh interpreter
            return subprocess.Popen([sys.executable, "-m", "lightning_resnet", *args], cwd=cwd, env=env, stdout=stdout,
                                    stderr=stderr, start_new_session=new_session)
        connection, launcher_end = socket.socketpair()
        request = {"args": list(args), "cwd": str(cwd or os.getcwd()), "env": dict(os.environ if env is None else env),
                   "new_session": new_session}
        with launcher_end:
            try:
                socket.send_fds(self._control, [json.dumps(request).encode()], [
                    launcher_end.fileno(), 1 if stdout is None else stdout, 2 if stderr is None else stderr])
            except OSError as error:
                raise RuntimeError(f"the command launcher has ended (exit code {self.process.poll()})") from error
        command = LaunchedCommand(["python", "-m", "lightning_resnet", *args], connection)
        self._started.append(command)
        return command

    def close(self) -> None:
        """End the launcher (and any command it is still running) and wait for it: at once when nothing runs (it
        may be importing still), else once it has killed what runs (on the control socket's end)."""
        if self.process is None:
            return
        self._control.close()
        if all(command.poll() is not None for command in self._started):
            self.process.kill()
        self.process.wait()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LaunchedCommand:
    """A command the launcher forked, with ``subprocess.Popen``'s ``pid``, ``returncode``, ``poll``, ``wait``,
    ``send_signal`` and ``kill``."""

    def __init__(self, args: list[str], connection: socket.socket) -> None:
        self.args = args
        self.returncode: int | None = None
        self._connection = connection
        self._received = b""
        self.pid = int(self._answer(None).split()[1])

    def _answer(self, timeout: float | None) -> str | None:
        """The launcher's next line, or None after ``timeout`` seconds without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._received:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._connection], [], [], left)[0]:
                return None
            data = self._connection.recv(4096)
            if not data:
                raise RuntimeError("the command launcher ended before the command it started (its error is above)")
            self._received += data
        line, self._received = self._received.split(b"\n", 1)
        return line.decode()

    def _status(self, timeout: float | None) -> int | None:
        if self.returncode is None:
            line = self._answer(timeout)
            if line is None:
                return None
            status = int(line.split()[1])
            self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            self._connection.close()
        return self.returncode

    def poll(self) -> int | None:
        return self._status(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._status(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return code

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


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
        if devnull != 0:
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


def serve(control: socket.socket) -> None:
    """Fork a command for each request on ``control`` until its other end closes; then kill what still runs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for module in PRELOADED:
        __import__(module)
    children: dict[int, socket.socket] = {}
    while True:
        if select.select([control], [], [], 0.05)[0]:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 3)
            if not message:
                break
            request = json.loads(message)
            connection = socket.socket(fileno=fds[0])
            pid = os.fork()
            if pid == 0:
                for held in (control, connection, *children.values()):  # the requester's alone: EOF when it ends
                    held.close()
                run_child(request, fds[1:])
            for fd in fds[1:]:
                os.close(fd)
            connection.sendall(f"pid {pid}\n".encode())
            children[pid] = connection
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            connection = children.pop(pid, None)
            if connection is not None:
                with connection, contextlib.suppress(OSError):
                    connection.sendall(f"status {status}\n".encode())
    for pid, connection in children.items():  # the process that asked is gone: what it started goes with it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        connection.close()


if __name__ == "__main__":
    control = socket.socket(fileno=os.dup(0))  # standard input becomes /dev/null, as the commands' is
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    serve(control)
