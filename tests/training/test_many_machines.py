"""Two machines, simulated on one: a process per node, each started as SLURM or torchrun starts it on its machine
(``--trainer.num_nodes 2``, ``MASTER_ADDR``, ``MASTER_PORT``, ``NODE_RANK``), gloo over loopback, one shared folder
as a cluster's shared file system, semi-supervised (a labelled and an unlabelled loader). Every image is trained on
once an epoch and validated once across the nodes, each unlabelled image read once a pass over them;
Ctrl-C on one node stops both at the same step and ``--ckpt_path last`` resumes exactly; one node failing ends
the other; the test after fit reads each test image once, as one process does."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from lightning_resnet.cli import main

from ..conftest import free_port, make_image_folder, start_cli, tiny_args

pytestmark = pytest.mark.ddp

NODES = ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp",
         "--trainer.max_epochs", "2", "--data.batch_size", "4", "--data.unlabelled_dir", "pool",
         "--data.unlabelled_ratio", "2", "--model.semi_supervised.method", "freematch"]
POOL = 20
"""Unlabelled images: each node reads 3 batches of 8 an epoch, so the 48 of an epoch start a third pass."""
HERE = "tests.training.test_many_machines"


class RecordImages(Callback):
    """Each node writes the images its sampler gives it, every training epoch, and its validation and test images."""

    def on_train_epoch_start(self, trainer, pl_module):
        labelled, unlabelled = trainer.train_dataloader
        self._write(trainer, f"train{trainer.current_epoch}", [index for index, _ in labelled.sampler])
        self._write(trainer, f"unlabelled{trainer.current_epoch}", [index for index, _ in unlabelled.sampler])

    def on_validation_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._write(trainer, f"val{trainer.current_epoch}", list(trainer.val_dataloaders.sampler))

    def on_test_start(self, trainer, pl_module):
        self._write(trainer, "test", list(trainer.test_dataloaders.sampler))

    @staticmethod
    def _write(trainer, name: str, indices: list[int]) -> None:
        Path(f"seen_{name}_rank{trainer.global_rank}.json").write_text(json.dumps(indices))


class CtrlCOnTheFirstNode(Callback):
    """Ctrl-C to the first node's process alone, after step 5 (the second epoch's second of three)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank == 0 and trainer.global_step == 5:
            os.kill(os.getpid(), signal.SIGINT)


class FailOnTheSecondNode(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 2:
            raise RuntimeError("the second node fails")


def launch(cwd: Path, args: list[str], port: int | None = None) -> list:
    """Both nodes of one run, each with the environment its launcher gives it."""
    port = str(port or free_port())
    return [start_cli(cwd, *args, start_new_session=True,
                      env={"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": str(node),
                           "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
            for node in (0, 1)]


def two_free_ports() -> tuple[int, int]:
    """Two loopback ports nothing listens on, distinct (held at once while asked for)."""
    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]


def final_state(run: Path) -> tuple[dict, dict]:
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    return saved["state_dict"], saved["optimizer_states"][0]


def ended(nodes: list, timeout: float = 120) -> list[tuple[int, str]]:
    results = []
    for node in nodes:
        _, error = node.communicate(timeout=timeout)
        results.append((node.returncode, error))
    return results


def test_two_nodes_train_each_image_once_resume_exactly_after_ctrl_c_on_one_and_end_together(workdir):
    images = workdir / "images"
    make_image_folder(workdir / "pool", classes=2, per_class=POOL // 2, seed=31)
    straight = tiny_args(images, *NODES, f"--trainer.callbacks+={HERE}.RecordImages",
                         "--data.test_dir", str(workdir / "holdout"), "--trainer.logger.init_args.name", "straight")
    finished = ended(launch(workdir, straight))
    assert [code for code, _ in finished] == [0, 0], finished
    for stage, count in (("train", 24), ("val", 6)):  # 30 images: 24 trained on, 6 validated, in each epoch
        for epoch in (0, 1):
            shares = [json.loads((workdir / f"seen_{stage}{epoch}_rank{rank}.json").read_text()) for rank in (0, 1)]
            assert sorted(shares[0] + shares[1]) == list(range(count)), (stage, epoch, shares)
    for epoch in (0, 1):  # the unlabelled stream: disjoint shares, each image once a pass, going on across epochs
        shares = [json.loads((workdir / f"seen_unlabelled{epoch}_rank{rank}.json").read_text()) for rank in (0, 1)]
        assert [len(share) for share in shares] == [24, 24]
        if epoch == 0:
            assert sorted(shares[0][:10] + shares[1][:10]) == list(range(POOL)), shares
    # the test after fit: 9 images, 5 and 4, none repeated to even the shares; one process reports the same
    shares = [json.loads((workdir / f"seen_test_rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sorted(shares[0] + shares[1]) == list(range(9)), shares
    report = (workdir / "logs/straight/version_0/report_test.txt").read_text()
    assert report.startswith("test: 9 images, 3 classes")
    best = next((workdir / "logs/straight/version_0/checkpoints").glob("best-*.ckpt"))
    main(tiny_args(images, "--ckpt_path", str(best), "--data.test_dir", str(workdir / "holdout"),
                   "--trainer.logger.init_args.name", "one_process", subcommand="test"))
    assert (workdir / "logs/one_process/version_0/report_test.txt").read_text() == report

    interrupted = tiny_args(images, *NODES, "--trainer.logger.init_args.name", "resumed")
    stopped = ended(launch(workdir, [*interrupted, f"--trainer.callbacks+={HERE}.CtrlCOnTheFirstNode"]))
    assert [code for code, _ in stopped] == [130, 130], stopped  # both nodes, at the same step
    saved = torch.load(workdir / "logs/resumed/version_0/checkpoints/last.ckpt", weights_only=True)
    assert saved["global_step"] == 5  # noted on one node after step 5; both stopped before step 6
    ports = two_free_ports()
    resuming = launch(workdir, [*interrupted, "--ckpt_path", "last"], ports[0])
    failing = launch(workdir, [*tiny_args(images, *NODES, f"--trainer.callbacks+={HERE}.FailOnTheSecondNode",
                                          "--trainer.logger.init_args.name", "failing")], ports[1])  # alongside
    resumed = ended(resuming)
    assert [code for code, _ in resumed] == [0, 0], resumed
    (weights, optimizer), (weights_again, optimizer_again) = (final_state(workdir / "logs" / name / "version_0")
                                                              for name in ("straight", "resumed"))
    assert all(torch.equal(weights[key], weights_again[key]) for key in weights
               if key not in ("temperature", "reject_below"))
    for key, state in optimizer["state"].items():
        assert all(torch.equal(value, optimizer_again["state"][key][name]) for name, value in state.items())

    failed = ended(failing, timeout=120)
    assert all(code != 0 for code, _ in failed) and "the second node fails" in failed[1][1], failed
