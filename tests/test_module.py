"""ImageClassifier: loss, metrics, prediction, freezing, optimizers and schedules."""

from __future__ import annotations

import math
from functools import partial

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


def test_norm_weights_and_biases_get_no_weight_decay(tmp_path):
    model = classifier(optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-4),
                       lr_scheduler="constant")
    trainer = tiny_trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, tiny_loader())
    groups = trainer.optimizers[0].param_groups  # backbone and head, each with and without decay
    decayed = [p for group in groups if group["weight_decay"] == 1e-4 for p in group["params"]]
    plain = [p for group in groups if group["weight_decay"] == 0.0 for p in group["params"]]
    assert {group["name"] for group in groups} == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    assert all(p.ndim > 1 for p in decayed) and all(p.ndim == 1 for p in plain)
    assert all(group["momentum"] == 0.9 for group in groups)
    assert len(decayed) + len(plain) == len(list(model.parameters()))


class RecordLearningRate(Callback):
    def __init__(self):
        self.rates = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def run_schedule(tmp_path, epochs=4, **options) -> list[float]:
    recorder = RecordLearningRate()
    model = classifier(optimizer=partial(torch.optim.SGD, lr=0.1), **options)
    tiny_trainer(max_epochs=epochs, callbacks=[recorder], default_root_dir=tmp_path).fit(model, tiny_loader())
    return recorder.rates


def test_cosine_with_linear_warmup(tmp_path):
    rates = run_schedule(tmp_path, lr_scheduler="cosine", warmup_epochs=1)
    assert len(rates) == 16
    assert rates[0] == pytest.approx(0.001)
    assert rates[:5] == sorted(rates[:5]) and rates[4] == pytest.approx(0.1)
    assert rates[4:] == sorted(rates[4:], reverse=True)
    assert rates[10] == pytest.approx(0.1 * (1 + math.cos(math.pi * 6 / 12)) / 2)


def test_onecycle_rises_then_anneals(tmp_path):
    rates = run_schedule(tmp_path, lr_scheduler="onecycle", warmup_epochs=1)
    peak = rates.index(max(rates))
    assert peak == 3 and max(rates) == pytest.approx(0.1, rel=1e-3)  # torch counts the rise as pct_start * steps - 1
    assert rates[-1] < 0.001


def test_step_decays_every_step_epochs(tmp_path):
    rates = run_schedule(tmp_path, lr_scheduler="step", step_epochs=2, step_gamma=0.5)
    assert rates[:8] == [pytest.approx(0.1)] * 8 and rates[8:] == [pytest.approx(0.05)] * 8


def test_constant(tmp_path):
    assert run_schedule(tmp_path, lr_scheduler="constant") == [pytest.approx(0.1)] * 16


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
