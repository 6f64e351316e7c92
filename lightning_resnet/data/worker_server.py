"""What the fork server that starts loader workers (:func:`.workers.fork_server`) loads before its first
worker: this package, with which a worker unpickles its data set (its imports paid once per run instead of once
per worker); and SIGTERM ignored, as the workers ignore it (:func:`.workers.
leave_signals_to_the_main_process`): a SIGTERM to the whole process group lets the run finish its step with its
workers, and the server, whose end a run reads as its workers' end, goes when its run does."""

import signal

import lightning_resnet.data  # noqa: F401  (what a worker unpickles its data set with)

signal.signal(signal.SIGTERM, signal.SIG_IGN)
