"""A command that fails ends with nothing of its own left running.

Its child processes would otherwise outlive the failure: loader workers ignore SIGTERM (so that a SIGTERM to the
whole process group lets the run finish its step and save), which is what multiprocessing's exit handler sends
them before it waits for them, for ever; DDP ranks wait in a collective for a peer that is gone; server workers
wait for requests. :class:`ChildProcesses` notes the processes there are when a command starts and, when it fails,
kills the ones it started, and theirs. (A command that succeeds has ended its own: Lightning shuts its loaders
down, the other ranks finish their last step, a server stops its workers.)

A command that is killed (SIGKILL, the OOM killer) runs nothing more: the processes a server started (LitServe's HTTP
processes, forked; its inference workers, spawned) would keep serving. :func:`end_with_this_process` has each of them
watch it, and end when it is gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading

import psutil

from ..data.workers import end_with

MULTIPROCESSING_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
"""multiprocessing's helpers, which clean up after this process and start its loader workers, and end when it
does: left to end with it (the workers they started are killed with the rest)."""


WATCHED_VARIABLE = "LIGHTNING_RESNET_ENDS_WITH"
"""The process a spawned child of a server ends with (the child reads it when it starts: ``__main__``)."""


def end_with_this_process() -> None:
    """Every process this one forks or spawns from now on, and theirs, ends once this one has ended, however it
    ended."""
    watched = os.getpid()
    os.register_at_fork(after_in_child=lambda: watch(watched))
    os.environ[WATCHED_VARIABLE] = str(watched)


def watch(process: int) -> None:
    """End this process once ``process`` has ended (a thread that looks every second)."""
    threading.Thread(target=end_with, args=(process,), daemon=True, name="end-with-the-server").start()


def end_with_the_process_that_spawned_this_one() -> None:
    """In a process a server spawned: :func:`watch` the server."""
    watched = os.environ.get(WATCHED_VARIABLE)
    if watched:
        watch(int(watched))


class ChildProcesses:
    """The processes a command started: see the module's docstring."""

    def __init__(self) -> None:
        self.before = {child.pid for child in psutil.Process().children(recursive=True)}

    def started(self) -> list[psutil.Process]:
        started = []
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                command = " ".join(child.cmdline())
                if child.pid not in self.before and not any(helper in command for helper in MULTIPROCESSING_HELPERS):
                    started.append(child)
        return started

    def end(self, failed: bool) -> None:
        """After a failure, kill what the command started and wait for it to be gone."""
        started = self.started() if failed else []
        if not started:
            return
        with contextlib.suppress(ValueError):  # not the main thread: torch's handler is this thread's to keep
            # torch's loaders take a worker that dies for an error of their own, raised from their SIGCHLD handler
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for process in started:
            with contextlib.suppress(psutil.Error):
                process.kill()
        for child in multiprocessing.active_children():  # reaped through multiprocessing, which then knows them gone
            child.join(timeout=5)
        psutil.wait_procs(started, timeout=10)
