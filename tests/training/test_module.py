"""ImageClassifier: loss, metrics, evaluation and prediction steps, freezing, pretrained weights."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_resnet import ImageClassifier


def tiny_loader(samples: int = 16, classes: int = 4, size: int = 16, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(samples, 3, size, size, generator=generator)
    targets = torch.arange(samples) % classes
    return DataLoader(TensorDataset(images, targets), batch_size=batch_size)


def tiny_trainer(**options) -> Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False)
    return Trainer(**{**defaults, **options})


def classifier(**options) -> ImageClassifier:
    options = {"backbone": "resnet18", "num_classes": 4, "backbone_options": {"stem": "cifar"}, **options}
    return ImageClassifier(**options)


def test_constructed_as_documented():
    model = ImageClassifier(backbone="resnet50", num_classes=4)
    assert model.model.fc.out_features == 4
    assert model.hparams.backbone == "resnet50" and model.hparams.num_classes == 4
    assert model.class_names == ["0", "1", "2", "3"]


def test_backbone_options_reach_the_backbone():
    model = classifier(backbone_options={"stem": "cifar", "drop_rate": 0.3, "in_chans": 1})
    assert model.model.dropout.p == 0.3 and model.model.conv1.in_channels == 1
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 4)


def test_loss_takes_indices_and_soft_targets_with_label_smoothing():
    model = classifier(label_smoothing=0.1)
    logits = torch.randn(3, 4)
    hard = torch.tensor([0, 2, 3])
    assert torch.allclose(model.loss(logits, hard), F.cross_entropy(logits, hard, label_smoothing=0.1))
    soft = torch.tensor([[0.7, 0.3, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    smoothed = soft * 0.9 + 0.1 / 4
    expected = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    loss = model.loss(logits, soft)
    assert torch.isfinite(loss) and torch.allclose(loss, expected, atol=1e-6)


def test_soft_targets_count_towards_accuracy_by_their_dominant_class():
    model = classifier()
    model.log = lambda *args, **kwargs: None
    model.log_dict = lambda *args, **kwargs: None
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    soft = F.one_hot(predicted, 4).float() * 0.6 + 0.1
    model.training_step((images, soft), 0)
    assert model.train_metrics["acc"].compute() == 1.0


def test_predict_step_returns_probabilities_and_classes():
    model = classifier().eval()
    with torch.no_grad():
        out = model.predict_step((torch.randn(5, 3, 16, 16), torch.full((5,), -1)), 0)
    assert out["probabilities"].shape == (5, 4)
    assert torch.allclose(out["probabilities"].sum(1), torch.ones(5))
    assert torch.equal(out["predictions"], out["probabilities"].argmax(1))


def test_class_names_must_match_the_class_count():
    with pytest.raises(ValueError, match="3 class names given for num_classes=4"):
        classifier(class_names=["a", "b", "c"])


@pytest.mark.slow
def test_class_names_are_saved_and_checked_on_load(tmp_path):
    model = classifier(class_names=["ant", "bee", "cat", "dog"])
    trainer = tiny_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, tiny_loader())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["class_names"] == ["ant", "bee", "cat", "dog"]
    restored = ImageClassifier.load_from_checkpoint(path, weights_only=True)
    assert restored.class_names == ["ant", "bee", "cat", "dog"]
    other = classifier(num_classes=5)
    with pytest.raises(ValueError, match="checkpoint has 4 classes, the model 5"):
        other.on_load_checkpoint(checkpoint)


class RecordEvaluation(Callback):
    """What each evaluation step hands to callbacks, beside the model's own output for the same images."""

    def __init__(self):
        self.seen = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        with torch.no_grad():
            self.seen.append((outputs, pl_module(batch[0]), batch[1]))


def test_evaluation_hands_callbacks_the_logits_and_the_calibrated_probabilities(tmp_path):
    model = classifier()
    model.decision = replace(model.decision, temperature=2.0)
    recorder = RecordEvaluation()
    tiny_trainer(callbacks=[recorder], default_root_dir=tmp_path).validate(model, tiny_loader())
    nll, count = 0.0, 0
    for outputs, logits, targets in recorder.seen:
        assert torch.allclose(outputs["logits"], logits, atol=1e-6)
        assert torch.allclose(outputs["probabilities"], (logits / 2.0).softmax(dim=1), atol=1e-6)
        nll += float(F.cross_entropy(logits / 2.0, targets, reduction="sum"))
        count += len(targets)
    assert model.trainer.callback_metrics["val/loss"] == pytest.approx(nll / count, rel=1e-5)


class SnapshotBackbone(Callback):
    def __init__(self):
        self.snapshots = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append(
            (pl_module.model.layer1[0].conv1.weight.detach().clone(),
             pl_module.model.bn1.running_mean.clone(),
             pl_module.model.fc.weight.detach().clone())
        )


def test_frozen_backbone_unfreezes_at_the_chosen_epoch(tmp_path):
    model = classifier(freeze_backbone=True, unfreeze_at_epoch=2, lr_scheduler="constant")
    start = (model.model.layer1[0].conv1.weight.detach().clone(), model.model.bn1.running_mean.clone(),
             model.model.fc.weight.detach().clone())
    snapshots = SnapshotBackbone()
    tiny_trainer(max_epochs=3, callbacks=[snapshots], default_root_dir=tmp_path).fit(model, tiny_loader())
    states = [start, *snapshots.snapshots]
    for before, after in zip(states[:2], states[1:3]):
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
        assert not torch.equal(before[2], after[2])
    assert not torch.equal(states[2][0], states[3][0])
    assert not torch.equal(states[2][1], states[3][1])
    assert not model.model.backbone_frozen


def test_pretrained_weights_load_when_fitting(tmp_path):
    source = classifier(num_classes=7)
    torch.save(source.model.state_dict(), tmp_path / "weights.pth")
    model = classifier(pretrained=str(tmp_path / "weights.pth"))
    with pytest.warns(UserWarning, match="7 classes, the model 4"):
        model.setup("fit")
    assert torch.equal(model.model.conv1.weight, source.model.conv1.weight)
    assert model.model.fc.out_features == 4


def test_channels_last_runs_the_backbone_in_channels_last():
    model = classifier(channels_last=True)
    assert model.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = classifier()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), plain.eval()(x), atol=1e-5)
