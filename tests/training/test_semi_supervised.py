"""Semi-supervised ``fit`` (``--data.unlabelled_dir``, ``--model.semi_supervised``): the unlabelled images train only
through the method's loss, the folder is checked like any other, and the methods do what their papers say. The exact
resume with both loaders is a moment of tests/training/test_resume.py; two processes' shares are in
tests/training/test_many_machines.py."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback
from PIL import Image

from lightning_resnet.cli import main
from lightning_resnet.data.samplers import UnlabelledStream
from lightning_resnet.training.semi_supervised import SemiSupervised
from lightning_resnet.training.semi_supervised.freematch import FreeMatch

from ..conftest import make_image_folder, make_label_sets, tiny_args

HERE = "tests.training.test_semi_supervised"
SEMI = ["--trainer.max_epochs", "2", "--data.batch_size", "4", "--data.unlabelled_ratio", "2",
        "--data.train_augment", "standard"]


class RecordBatches(Callback):
    """Keeps the shapes of what each training step is given."""

    def __init__(self) -> None:
        self.shapes: list[tuple] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        images, targets, (weak, strong) = batch
        self.shapes.append((tuple(images.shape), tuple(targets.shape), tuple(weak.shape), tuple(strong.shape)))


def flattened(pool: Path, into: Path) -> Path:
    """The images of ``pool``'s class folders in one flat folder, named so that they sort in the same order."""
    into.mkdir()
    for image in sorted(pool.rglob("*.*")):
        shutil.copy(image, into / f"{image.parent.name}__{image.name}")
    return into


@pytest.mark.slow  # fits through the command line: 3-4 s
def test_unlabelled_images_train_through_the_method_alone_whatever_their_folders_are_called(workdir):
    images = workdir / "images"
    pool = make_image_folder(workdir / "pool", classes=3, per_class=6, seed=11)
    for index, folder in enumerate(sorted(pool.iterdir())):  # the names of the labelled classes, but wrong ones
        folder.rename(pool / f"x{index}")
    for index, folder in enumerate(sorted(pool.iterdir())):
        folder.rename(pool / f"class_{(index + 1) % 3}")
    flat = flattened(pool, workdir / "flat")
    runs = {}
    for name, folder in (("classes", pool), ("flat", flat)):
        runs[name] = main(tiny_args(images, *SEMI, "--data.unlabelled_dir", str(folder),
                                    "--model.semi_supervised.method", "freematch",
                                    "--model.semi_supervised.ema_decay", "0.5",
                                    f"--trainer.callbacks+={HERE}.RecordBatches",
                                    "--trainer.logger.init_args.name", name))
    recorder = next(each for each in runs["classes"].trainer.callbacks if isinstance(each, RecordBatches))
    # 24 training images in batches of 4, each with twice as many unlabelled ones, a weak and a strong view each
    assert recorder.shapes == [((4, 3, 16, 16), (4,), (8, 3, 16, 16), (8, 3, 16, 16))] * 12
    weights = [torch.load(Path(run.trainer.logger.log_dir) / "checkpoints/last.ckpt", weights_only=True)
               for run in runs.values()]
    assert all(torch.equal(value, weights[1]["state_dict"][key]) for key, value in weights[0]["state_dict"].items())
    assert weights[0]["semi_supervised_state"].keys() == {"confidence", "class_probabilities", "label_histogram"}
    metrics = runs["classes"].trainer.callback_metrics
    assert 0.0 <= float(metrics["train/confident"]) <= 1.0 and "train/unlabelled_loss" in metrics
    confident = sum(float(metrics[f"train/pseudo_labels/class_{index}"]) for index in range(3))
    assert confident == pytest.approx(float(metrics["train/confident"]) * 48, abs=0.5)  # the last epoch's 6 x 8
    assert runs["classes"].model.hparams.num_classes == 3  # the pool's folders added no class
    assert any(type(each).__name__ == "EMAWeightAveraging" for each in runs["classes"].trainer.callbacks)


@pytest.mark.slow  # fits through the command line: 3-4 s
def test_the_unlabelled_folder_leaves_out_copies_of_held_out_images_labelled_ones_and_broken_files(workdir, caplog):
    caplog.set_level(logging.INFO)
    images = workdir / "images"
    pool = make_image_folder(workdir / "pool", classes=3, per_class=4, seed=12)
    main(tiny_args(images, "--trainer.max_epochs", "1", "--trainer.logger.init_args.name", "split"))
    rows = (workdir / "logs/split/version_0/split.csv").read_text().splitlines()[1:]
    validation = [row.split(",")[0] for row in rows if ",val," in row]
    training = [row.split(",")[0] for row in rows if ",train," in row]
    shutil.copy(validation[0], pool / "exact_copy.png")
    with Image.open(validation[1]) as image:  # another size, re-encoded: a near copy
        image.convert("RGB").resize((44, 35)).save(pool / "near_copy.jpg", quality=90)
    shutil.copy(training[0], pool / "labelled.png")
    (pool / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not the rest of it")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(tiny_args(images, "--trainer.max_epochs", "1", "--data.unlabelled_dir", str(pool),
                       "--trainer.logger.init_args.name", "semi"))
    said = " ".join(str(warning.message) for warning in caught)
    assert f"{pool / 'exact_copy.png'} (a copy of {validation[0]})" in said
    assert f"{pool / 'near_copy.jpg'} (a copy of {validation[1]})" in said
    assert "broken.png" in said
    logged = [record.getMessage() for record in caplog.records]
    assert (f"data: 12 unlabelled images in {pool} (left out: 1 unreadable, 1 labelled already, "
            "2 copies of validation or test images)") in logged


def test_a_model_of_label_sets_is_refused_in_one_line(workdir, capsys):
    labels = make_label_sets(workdir / "sets", count=24)
    pool = make_image_folder(workdir / "pool", classes=1, per_class=4)
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(labels.parent, "--data.labels", str(labels), "--data.unlabelled_dir", str(pool),
                       "--trainer.max_epochs", "1"))
    error = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and error[-1].startswith("error: data.unlabelled_dir: semi-supervised fit gives")


def test_the_unlabelled_stream_deals_disjoint_shares_goes_on_across_epochs_and_resumes_mid_epoch():
    images = list(range(10))
    streams = [UnlabelledStream(images, per_epoch=4, num_replicas=2, rank=rank, seed=3) for rank in (0, 1)]
    read = {}
    for epoch in range(3):
        for stream in streams:
            stream.set_epoch(epoch)
        read[epoch] = [[index for index, _ in stream] for stream in streams]
    first_pass = read[0][0] + read[0][1] + read[1][0][:1] + read[1][1][:1]  # 8 + 2 of the 10 images
    assert sorted(first_pass) == images  # each image once a pass, shared out between the processes
    assert not set(read[0][0]) & set(read[0][1])
    resumed = UnlabelledStream(images, per_epoch=4, num_replicas=2, rank=1, seed=3)
    resumed.resume(2, 3)
    assert [index for index, _ in resumed] == read[2][1][3:]


def test_freematch_thresholds_start_low_and_rise_with_the_models_confidence_less_for_rarer_classes():
    method = FreeMatch(SemiSupervised(method="freematch", momentum=0.9), num_classes=3, mean=lambda values: values)
    assert torch.allclose(method.thresholds(torch.tensor([0, 1, 2])), torch.full((3,), 1 / 3))
    confident = torch.tensor([[0.9, 0.05, 0.05]] * 6 + [[0.1, 0.85, 0.05]] * 2)
    for _ in range(30):
        method.observe(confident)
    thresholds = method.thresholds(torch.tensor([0, 1, 2]))
    assert thresholds[0] > 0.8 and thresholds[0] > thresholds[1] > thresholds[2]
    loss = method.loss(torch.log(confident), torch.zeros(8, 3))
    assert loss.confident[:6].all()
