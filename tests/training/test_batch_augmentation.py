"""MixupCutmix and RandomErasing: what they change, what they leave alone, and where they run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from lightning_resnet import ImageClassifier, ImageFolderDataModule
from lightning_resnet.callbacks import MixupCutmix, RandomErasing

from ..conftest import QUARTER_WIDTH


class Recorder(Callback):
    """Copies of the batches as this callback sees them, per stage."""

    def __init__(self):
        self.seen = {"train": [], "val": [], "test": [], "predict": []}

    def _record(self, stage, trainer, batch):
        targets = batch[1].clone() if isinstance(batch[1], torch.Tensor) else list(batch[1])  # paths when predicting
        self.seen[stage].append((trainer.current_epoch, batch[0].clone(), targets))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._record("train", trainer, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._record("val", trainer, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._record("test", trainer, batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._record("predict", trainer, batch)


class RecordLoss(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


def run(folder: Path, augmenters: list[Callback], stages=("fit",), epochs=1, **trainer_options):
    before, after, losses = Recorder(), Recorder(), RecordLoss()
    model = ImageClassifier(backbone="resnet18", num_classes=3, backbone_options=QUARTER_WIDTH,
                            label_smoothing=0.1)
    data = ImageFolderDataModule(data_dir=str(folder), image_size=16, batch_size=4, num_workers=0,
                                 train_augment="basic", test_dir=str(folder), predict_dir=str(folder))
    options = dict(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer = Trainer(callbacks=[before, *augmenters, after, losses], **{**options, **trainer_options})
    for stage in stages:
        getattr(trainer, stage)(model, datamodule=data)
    return before, after, losses


def test_mixup_cutmix_mixes_training_batches_only(image_folder):
    before, after, losses = run(image_folder, [MixupCutmix(prob=1.0)], stages=("fit", "test", "predict"))
    assert len(after.seen["train"]) == 6
    for (_, images, targets), (_, mixed, soft) in zip(before.seen["train"], after.seen["train"]):
        assert targets.ndim == 1 and soft.shape == (4, 3)
        assert not torch.equal(images, mixed)
        assert torch.allclose(soft.sum(1), torch.ones(4))
        assert (soft > 0).all()  # label smoothing 0.1 reaches every class
    for stage in ("val", "test", "predict"):
        assert before.seen[stage], stage
        for (_, images, targets), (_, seen_images, seen_targets) in zip(before.seen[stage], after.seen[stage]):
            assert torch.equal(images, seen_images)
            if stage == "predict":
                assert seen_targets == targets and all(isinstance(path, str) for path in seen_targets)
            else:
                assert torch.equal(targets, seen_targets) and seen_targets.ndim == 1
    assert all(torch.isfinite(torch.tensor(losses.losses)))


def test_probability_zero_leaves_the_images_alone(image_folder):
    before, after, _ = run(image_folder, [MixupCutmix(prob=0.0, label_smoothing=0.0)])
    for (_, images, targets), (_, seen, soft) in zip(before.seen["train"], after.seen["train"]):
        assert torch.equal(images, seen)
        assert torch.equal(soft, torch.nn.functional.one_hot(targets, 3).float())


def test_soft_targets_and_label_smoothing_give_a_finite_loss():
    model = ImageClassifier(backbone="resnet18", num_classes=3, label_smoothing=0.2)
    mixup = MixupCutmix(label_smoothing=0.1)
    mixup.mixup = __import__("timm").data.Mixup(num_classes=3, **mixup.options)
    batch = [torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])]
    mixup.on_train_batch_start(Trainer(logger=False), model, batch, 0)
    loss = model.loss(model(batch[0]), batch[1])
    assert batch[1].ndim == 2 and torch.isfinite(loss) and loss > 0


def test_off_epoch_stops_mixing(image_folder):
    before, after, _ = run(image_folder, [MixupCutmix(off_epoch=1)], epochs=2)
    for (epoch, images, _), (_, seen, soft) in zip(before.seen["train"], after.seen["train"]):
        assert torch.equal(images, seen) == (epoch >= 1)
        assert soft.ndim == 2
    assert {epoch for epoch, *_ in after.seen["train"]} == {0, 1}


def test_odd_batch_size_is_a_clear_error(image_folder):
    data = ImageFolderDataModule(data_dir=str(image_folder), batch_size=5)
    trainer = Trainer(logger=False)
    trainer.datamodule = data
    with pytest.raises(ValueError, match="batch_size must be even, got 5"):
        MixupCutmix().setup(trainer, ImageClassifier(backbone="resnet18", num_classes=3), "fit")


@pytest.mark.parametrize("mode", ["const", "pixel"])
def test_random_erasing_erases_rectangles_with_the_configured_fill(image_folder, mode):
    before, after, _ = run(image_folder, [RandomErasing(probability=1.0, mode=mode, scale=(0.1, 0.2))],
                           stages=("fit", "test"))
    erased_images = 0
    for (_, images, targets), (_, seen, seen_targets) in zip(before.seen["train"], after.seen["train"]):
        assert torch.equal(targets, seen_targets)
        for original, erased in zip(images, seen):
            changed = (original != erased).any(0)
            if not changed.any():
                continue
            erased_images += 1
            rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
            box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
            area = changed[box].numel() / changed.numel()
            assert 0.05 <= area <= 0.25  # one rectangle of the configured size
            if mode == "const":
                assert torch.all(erased[:, box[0], box[1]] == 0)
            else:
                assert erased[:, box[0], box[1]].std() > 0.5  # random normal noise
    assert erased_images >= 20  # 24 training images, probability 1
    for (_, images, _), (_, seen, _) in zip(before.seen["test"], after.seen["test"]):
        assert torch.equal(images, seen)


def test_both_callbacks_under_fast_dev_run_and_bf16_on_cpu(image_folder):
    _, after, losses = run(image_folder, [RandomErasing(probability=1.0), MixupCutmix()],
                           fast_dev_run=True, precision="bf16-mixed")
    assert len(after.seen["train"]) == 1 and after.seen["train"][0][2].ndim == 2
    assert losses.losses and all(torch.isfinite(torch.tensor(losses.losses)))


