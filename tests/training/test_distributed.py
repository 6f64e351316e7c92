"""Two processes on the CPU (DDP over gloo): one launch of fit (with its test after fit) from a converted data set,
streamed by LitData, and one of predict on the folder, checked from every side. The folder's own loaders under DDP
are tested by tests/training/test_many_machines.py."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback

from lightning_resnet.bundle import read_bundle
from lightning_resnet.cli import main

from ..conftest import ROOT, make_image_folder, run_cli, tiny_args

pytestmark = pytest.mark.ddp

CALLBACKS = [
    "--trainer.callbacks+=lightning_resnet.callbacks.RandomErasing", "--trainer.callbacks.probability=0.5",
    "--trainer.callbacks+=lightning_resnet.callbacks.MixupCutmix", "--trainer.callbacks.off_epoch=2",
]
COMMON = ["--trainer.max_epochs", "3", "--data.batch_size", "4", *CALLBACKS]
ODD_SPLIT = ["--data.val_fraction", "0.25"]  # 60 images: 45 to train on (22 and 23 under DDP), 15 to validate
TWO_PROCESSES = ["--trainer.devices", "2", "--trainer.strategy", "ddp"]
RECTANGLE = ["--data.image_size", "[16, 24]", "--data.resize", "squish"]
"""Rectangles under DDP: training's boxes of each image's own shape, squished into 16 x 24."""




def with_progress_bar(args: list[str]) -> list[str]:
    """``args`` less tiny_args' ``--trainer.enable_progress_bar false``: the default bar, as a user has it."""
    at = args.index("--trainer.enable_progress_bar")
    return args[:at] + args[at + 2 :]


def the_checkpoints_size(args: list[str]) -> list[str]:
    """``args`` less tiny_args' ``--data.image_size 16``: a checkpoint's command takes its rectangle."""
    at = args.index("--data.image_size")
    return args[:at] + args[at + 2 :]


class RecordLoaderWorkers(Callback):
    """Writes each process's training-loader worker count to ``workers_rank<N>.txt``."""

    def on_train_start(self, trainer, pl_module):
        Path(f"workers_rank{trainer.global_rank}.txt").write_text(str(trainer.train_dataloader.num_workers))


@pytest.fixture(scope="module")
def ddp(tmp_path_factory) -> Path:
    """fit with the demo recipe from the folder converted with a test set of 15 images (one process gets 8, the
    other 7), tested after fit, on 16 x 24 rectangles; then predict on the folder from its last checkpoint (its
    rectangle); each with two processes."""
    root = tmp_path_factory.mktemp("ddp")
    make_image_folder(root / "images", classes=3, per_class=20, seed=2)
    make_image_folder(root / "holdout", classes=3, per_class=5, seed=4)
    images, converted = root / "images", root / "converted"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        main(tiny_args(images, *ODD_SPLIT, "--data.test_dir", str(root / "holdout"), "--data.normalize", "auto",
                       "--output", str(converted), subcommand="convert"))  # the demo recipe measures its statistics
    demo = ["--config", str(ROOT / "configs" / "demo.yaml")]
    fit = with_progress_bar(tiny_args(converted, *COMMON, *TWO_PROCESSES, "--data.num_workers", "null",
                                      "--data.train_augment", "standard", *RECTANGLE,
                                      "--trainer.callbacks+=tests.training.test_distributed.RecordLoaderWorkers"))
    run_cli(root, fit[0], *demo, *fit[1:])
    last = root / "logs/tiny/version_0/checkpoints/last.ckpt"
    run_cli(root, *the_checkpoints_size(tiny_args(images, "--ckpt_path", str(last), "--data.predict_dir",
                                                  str(images), *TWO_PROCESSES, "--predictions.cam", "true",
                                                  subcommand="predict")))
    return root


def test_fit_runs_with_the_augmentation_callbacks(ddp):
    config = yaml.safe_load((ddp / "logs/tiny/version_0/config.yaml").read_text())
    callbacks = {callback["class_path"]: callback.get("init_args") for callback in config["trainer"]["callbacks"]}
    assert callbacks["lightning_resnet.callbacks.RandomErasing"]["probability"] == 0.5
    assert callbacks["lightning_resnet.callbacks.MixupCutmix"]["off_epoch"] == 2
    last = torch.load(ddp / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    # LitData's drop_last gives every process the same number of whole batches: 45 images, two processes, batches
    # of 4: 5 batches (20 images) each an epoch, so that neither waits for the other (LitData #233)
    assert last["global_step"] == 3 * 5
    assert read_bundle(ddp / "logs/tiny/version_0/checkpoints/last.ckpt").preprocessing.geometry.size == (16, 24)


def test_every_process_sees_the_same_split_and_writes_once(ddp):
    runs = sorted(path.name for path in (ddp / "logs/tiny").iterdir())
    assert runs == ["version_0", "version_1"]  # fit (and its test), predict: one folder each
    checkpoints = sorted(path.name for path in (ddp / "logs/tiny/version_0/checkpoints").iterdir())
    assert len(checkpoints) == 2 and checkpoints[1] == "last.ckpt" and checkpoints[0].startswith("best-")
    assert not list(ddp.rglob("*.tmp")) and not list(ddp.rglob(".predictions.csv.part*"))


def test_evaluation_counts_each_image_once_and_equals_one_process(ddp, tmp_path, monkeypatch):
    report = (ddp / "logs/tiny/version_0/report_test.txt").read_text()
    assert report.startswith("test: 15 images, 3 classes")  # 8 + 7, no padded repeat
    monkeypatch.chdir(tmp_path)
    best = next((ddp / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt"))  # what the test after fit read
    single = main(the_checkpoints_size(tiny_args(ddp / "converted", "--ckpt_path", str(best), subcommand="test")))
    assert (tmp_path / "logs/tiny/version_0/report_test.txt").read_text() == report
    assert f"{float(single.trainer.callback_metrics['test/acc']):.4f}" in report
    assert f"{float(single.trainer.callback_metrics['test/loss']):.4f}" in report


def test_the_default_workers_share_the_cores_among_the_processes(ddp):
    cores = len(os.sched_getaffinity(0))
    workers = [int((ddp / f"workers_rank{rank}.txt").read_text()) for rank in (0, 1)]
    assert min(workers) >= 1 and sum(workers) + 2 <= max(cores, 4)  # two processes never oversubscribe the cores


def test_predictions_and_class_activation_maps_are_written_once(ddp):
    with open(ddp / "logs/tiny/version_1/predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and len({row["path"] for row in rows}) == 60
    assert all(row["prediction"] in {"class_0", "class_1", "class_2"} for row in rows)
    overlays = sorted((ddp / "logs/tiny/version_1/cam").rglob("*.png"))
    images = sorted((ddp / "images").rglob("*.*"))
    assert [path.relative_to(ddp / "logs/tiny/version_1/cam") for path in overlays] == sorted(
        path.relative_to(ddp / "images").with_suffix(".png") for path in images)


def test_two_processes_match_one_within_noise(ddp, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    single = main(tiny_args(ddp / "converted", *COMMON, *RECTANGLE))
    double = torch.load(ddp / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    state = next(value for key, value in double["callbacks"].items() if "'val/acc'" in key)
    single_best = float(single.trainer.checkpoint_callback.best_model_score)
    double_best = float(state["best_model_score"])
    assert single_best >= 0.8 and double_best >= 0.8
    assert abs(single_best - double_best) <= 0.2
