"""Loader workers: how many a run has, how they start, and how they end.

Under DDP they start from a fork server rather than by forking the training process (:func:`worker_processes`);
they leave Ctrl-C and SIGTERM to the main process, which finishes its step and saves; what is left of them is
killed at exit.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil


def leave_signals_to_the_main_process(worker_id: int) -> None:
    """Loader workers ignore Ctrl-C and SIGTERM sent to the whole process group (a terminal, a cluster
    scheduler): the main process finishes its step, saves and stops them; a worker that died first
    would end the run in a traceback with nothing saved. (So they ignore the SIGTERM of multiprocessing's exit
    handler too: :func:`kill_workers_at_exit` ends them instead.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def start_worker(training_process: int, worker_id: int) -> None:
    """A loader worker's start: :func:`leave_signals_to_the_main_process`, and, for a worker the fork server
    started, a thread that ends it when its training process is gone. torch's workers watch their parent, which is
    then the server, and the server lives while its workers do: a DDP process killed by SIGKILL (the OOM killer)
    left its server and workers waiting for ever."""
    leave_signals_to_the_main_process(worker_id)
    if os.getppid() != training_process:
        threading.Thread(target=end_with, args=(training_process,), daemon=True, name="end-with-training").start()


def end_with(training_process: int, poll_seconds: float = 1.0) -> None:
    """Exit this process once ``training_process`` has ended (gone, or a zombie not yet reaped)."""
    while True:
        time.sleep(poll_seconds)
        try:
            if psutil.Process(training_process).status() == psutil.STATUS_ZOMBIE:
                os._exit(1)
        except psutil.NoSuchProcess:
            os._exit(1)


@functools.cache
def kill_workers_at_exit() -> None:
    """At the interpreter's exit, kill the daemonic child processes that are left (loader workers whose loader was
    not shut down: an exception, or a loader kept alive until the end), before multiprocessing's exit handler
    terminates them with a SIGTERM they ignore and then waits for them for ever. Registered once, after
    multiprocessing's own handler, so that it runs first. Then the fork server that started them, which would
    otherwise outlive this process by the moment it takes to notice."""

    def kill() -> None:
        workers = [child for child in multiprocessing.active_children() if child.daemon]
        if workers:
            # torch's loaders take a worker that dies for an error of their own, raised from their SIGCHLD handler
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for worker in workers:
            worker.kill()
            worker.join(timeout=5)
        servers = []
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if FORK_SERVER in " ".join(child.cmdline()):
                    child.kill()
                    servers.append(child)
        psutil.wait_procs(servers, timeout=5)

    atexit.register(kill)


FORK_SERVER = "multiprocessing.forkserver"
"""What the fork server's command line names."""
WORKER_SERVER = "lightning_resnet.data.worker_server"
"""What the fork server loads before its first worker (see :func:`fork_server`)."""


def worker_processes() -> multiprocessing.context.BaseContext:
    """How loader workers start, and the context their shared counters are made in.

    Under DDP, from multiprocessing's fork server (:func:`fork_server`): there the training process runs the
    backend's threads (gloo's, NCCL's) whenever a loader starts its workers, and a worker forked while one of them
    held a lock waits for it for ever (two-process fits were seen to hang so, a worker stuck inside ``fork()``). In one
    process, forked from it, as torch's loaders do by default: the fork server costs seconds of start-up, and no
    single-process run was seen to hang (benchmarks/README.md, "Loader workers under DDP start from a fork
    server")."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return fork_server()
    return multiprocessing.get_context("fork")


@functools.cache
def fork_server() -> multiprocessing.context.BaseContext:
    """multiprocessing's fork server (Python 3.14's default way to start processes, for the reason above), started
    once per process by a fresh interpreter, single-threaded, that loads :data:`WORKER_SERVER` first, so that a
    worker starts without importing anything; it finds this package where this process found it (``PYTHONPATH``:
    a run from a clone, in another folder)."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    if package_root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([WORKER_SERVER])
    return context


def worker_options(num_workers: int) -> dict[str, Any]:
    """The options of a ``DataLoader`` with ``num_workers`` workers that start them as :func:`worker_processes`
    says, and that kill what is left of them at exit (:func:`kill_workers_at_exit`)."""
    if not num_workers:
        return {}
    kill_workers_at_exit()
    return {"num_workers": num_workers, "multiprocessing_context": worker_processes(),
            "worker_init_fn": functools.partial(start_worker, os.getpid())}


def default_workers(local_processes: int) -> int:
    """Loader processes per training process: the cores this machine gives the run, shared among its training
    processes, less one core for each of them (at least one worker)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local_processes - 1)
