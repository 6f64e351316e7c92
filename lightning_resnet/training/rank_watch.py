"""Under DDP, one training process failing stops every process of the node in seconds.

Lightning's launcher starts a node's other processes from its first one; when one of them fails, the others
wait in their next collective for it (30 minutes by default) and the job holds its devices. :class:`RankWatch`
watches them from the first process and, when one ends with an error, ends the first and the others. The first
process failing ends the others itself (``cli.child_processes``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from subprocess import Popen

import psutil
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

INTERRUPTED = {128 + signal.SIGINT, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM}
"""Exit codes of a process stopped by Ctrl-C or SIGTERM: it saved, and the first process is saving too."""


class RankWatch(Callback):
    """In a node's first process: watch the node's other training processes; see the module's docstring.

    Args:
        poll_seconds: how often their exit codes are read.
    """

    def __init__(self, poll_seconds: float = 0.5) -> None:
        self.poll_seconds = poll_seconds
        self._watching: threading.Thread | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        launcher = trainer.strategy.launcher
        processes = list(getattr(launcher, "procs", None) or [])
        if isinstance(launcher, _SubprocessScriptLauncher) and processes and self._watching is None:
            self._watching = threading.Thread(target=self._watch, args=(processes, trainer.num_devices), daemon=True,
                                              name="rank-watch")
            self._watching.start()

    def _watch(self, processes: list[Popen], devices: int) -> None:
        while True:
            for local_rank, process in enumerate(processes, start=1):
                code = process.poll()
                if code not in (None, 0) and code not in INTERRUPTED:
                    stop_every_process(f"training process {local_rank} of {devices} on this machine ended with "
                                       f"exit code {code} (its error is above): every process stops")
            time.sleep(self.poll_seconds)


def stop_every_process(message: str) -> None:
    """Say ``message`` in one line, end this process's descendants, then this process (exit code 1): the main
    thread may be waiting inside a collective, where no exception reaches it."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    descendants = psutil.Process().children(recursive=True)
    for process in descendants:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(descendants, timeout=5)
    os._exit(1)
