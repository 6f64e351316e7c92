"""A file that breaks after the start-up check is skipped and counted, in training (another image takes its place)
and in evaluation (left out), also inside a loader worker during fit; small images are scaled up to the crop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from lightning_resnet import ImageClassifier
from lightning_resnet.data import ImageFolderDataModule
from lightning_resnet.reports import TrainingReport

from ..conftest import QUARTER_WIDTH, datamodule, make_image_folder


def test_a_file_that_breaks_later_is_skipped_and_counted(image_folder):
    data = datamodule(image_folder, batch_size=6)
    data.setup("fit")
    Path(data.train_set.samples[0][0]).write_bytes(b"")
    with pytest.warns(UserWarning, match="skipped unreadable image .*: "):
        for _ in range(2):
            batches = list(data.train_dataloader())
            assert all(len(images) == 6 for images, _ in batches)  # replaced by another sample
    assert data.skipped_images == 2
    for sample in data.val_set.samples[:2]:
        Path(sample[0]).write_bytes(b"\x89PNG broken")
    with pytest.warns(UserWarning, match="skipped unreadable image"):
        images = torch.cat([batch[0] for batch in data.val_dataloader()])
    assert len(images) == len(data.val_set) - 2
    assert data.skipped_images == 4


class BreakAFile(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 0:
            Path(trainer.datamodule.train_set.samples[3][0]).write_bytes(b"")


@pytest.mark.slow  # a loader worker
def test_fit_survives_a_file_that_breaks_in_a_worker_and_logs_the_count(image_folder):
    model = ImageClassifier(backbone="resnet18", num_classes=3, backbone_options=QUARTER_WIDTH)
    data = ImageFolderDataModule(data_dir=str(image_folder), image_size=32, batch_size=8, num_workers=1)
    trainer = Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=image_folder.parent,
                      callbacks=[BreakAFile(), TrainingReport()])  # which logs the count
    trainer.fit(model, datamodule=data)
    assert trainer.state.finished
    assert trainer.callback_metrics["data/skipped_images"] == 2  # read once in each of epochs 1 and 2


def test_small_images_are_scaled_up(tmp_path):
    make_image_folder(tmp_path / "tiny", classes=2, per_class=5, size=(5, 3))
    data = datamodule(tmp_path / "tiny", image_size=32, train_augment="standard")
    data.setup("fit")
    assert data.train_set[0][0].shape == (3, 32, 32) and data.val_set[0][0].shape == (3, 32, 32)
