"""``fit --model.extend``: a trained model grows by new classes, starting as the old model, which teaches its classes,
with up to ``data.rehearsal`` of its run's training images per class, and its run's validation images kept out of
training."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from lightning.pytorch import Callback

from lightning_resnet.bundle import read_bundle
from lightning_resnet.cli import main
from lightning_resnet.data.previous_run import PreviousRun, rehearsal_images

from ..conftest import QUARTER_WIDTH, cli_error, make_image_folder, make_label_sets, tiny_args

PROBE = "--trainer.callbacks+=tests.training.test_extend.FirstBatchLogits"


class FirstBatchLogits(Callback):
    """The model's logits (in eval mode) of the first training batch, before its first step."""

    def __init__(self) -> None:
        self.images: torch.Tensor | None = None
        self.logits: torch.Tensor | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.logits is None:
            pl_module.eval()
            with torch.no_grad():
                self.images, self.logits = batch[0].clone(), pl_module(batch[0]).clone()
            pl_module.train()


def split_of(run) -> list[dict[str, str]]:
    with open(run / "split.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def best_of(run) -> str:
    return str(next((run / "checkpoints").glob("best-*.ckpt")))


@pytest.mark.slow
def test_an_extended_model_starts_as_the_old_one_and_keeps_its_validation_images_out_of_training(workdir):
    old_run = workdir / "logs/old/version_0"
    main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--data.normalize", "auto",
                   "--trainer.logger.init_args.name", "old"))
    old = read_bundle(best_of(old_run))
    old_split = split_of(old_run)

    # the folder with the old classes and a new one: every old validation image stays in validation
    make_image_folder(workdir / "more", classes=4, per_class=10, seed=3)
    shutil.move(workdir / "more" / "class_3", workdir / "images" / "class_3")
    grown = main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--model.extend", "logs/old",
                           "--data.rehearsal", "3", "--data.normalize", "auto", PROBE,
                           "--trainer.logger.init_args.name", "grown"))
    probe = next(callback for callback in grown.trainer.callbacks if isinstance(callback, FirstBatchLogits))
    with torch.no_grad():
        old_logits = old.network()(probe.images)
    assert probe.logits.shape[1] == 4 and grown.model.class_names == ["class_0", "class_1", "class_2", "class_3"]
    torch.testing.assert_close(probe.logits[:, :3], old_logits, atol=1e-5, rtol=1e-5)
    assert grown.datamodule.normalization == old.preprocessing.normalization  # the backbone's, not measured again
    parts = {row["path"]: row["split"] for row in split_of(workdir / "logs/grown/version_0")}
    old_validation = [row["path"] for row in old_split if row["split"] == "val"]
    assert old_validation and all(parts[path] == "val" for path in old_validation)
    assert "rehearsal" not in parts.values()  # the old training images are in the folder: they train anyway
    assert read_bundle(best_of(workdir / "logs/grown/version_0")).classes == ("class_0", "class_1", "class_2",
                                                                               "class_3")

    # a folder of the new class alone: 3 images of each old class rehearsed, its validation images validate
    make_image_folder(workdir / "new", classes=4, per_class=10, seed=4)
    for name in ("class_0", "class_1", "class_2"):
        shutil.rmtree(workdir / "new" / name)
    main(tiny_args(workdir / "new", "--trainer.max_epochs", "1", "--model.extend", best_of(old_run),
                   "--data.rehearsal", "3", "--trainer.logger.init_args.name", "added"))
    rows = split_of(workdir / "logs/added/version_0")
    rehearsed = [row for row in rows if row["split"] == "rehearsal"]
    trained_before = {row["path"]: row["class"] for row in old_split if row["split"] == "train"}
    assert len(rehearsed) == 9 and all(trained_before[row["path"]] == row["class"] for row in rehearsed)
    assert {row["class"] for row in rehearsed} == {"class_0", "class_1", "class_2"}
    assert sorted(row["path"] for row in rows if row["split"] == "val" and row["class"] != "class_3") == \
        sorted(old_validation)


def test_rehearsal_takes_each_old_class_by_its_rule(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    rows = [(f"{name}_{index}.png", "train" if index < 6 else "val", name) for name in "ab" for index in range(8)]
    (run / "split.csv").write_text("path,split,class\n" + "".join(f"{p},{s},{c}\n" for p, s, c in rows))
    (run / "checkpoints" / "best.ckpt").write_bytes(b"")
    previous = PreviousRun.read(str(run / "checkpoints" / "best.ckpt"))
    assert previous.classes == ("a", "b") and len(previous.training) == 12 and len(previous.validation) == 4
    chosen = rehearsal_images(previous, 2, "random", seed=0)
    assert len(chosen) == 4 and [name for _, name in chosen] == ["a", "a", "b", "b"]
    assert chosen == rehearsal_images(previous, 2, "random", seed=0) != rehearsal_images(previous, 2, "random", 1)
    # closest to the mean: the two images whose features point most like the class's mean
    features = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0], [0.6, 0.8]] + [[1.0, 0.0]] * 6)
    nearest = rehearsal_images(previous, 2, "closest_to_mean", seed=0, features=features)
    assert [path for path, _ in nearest][:2] == ["a_0.png", "a_1.png"]  # the outliers a_4 and a_5 are not kept
    assert rehearsal_images(previous, 100, "random", seed=0) == list(previous.training)


@pytest.mark.parametrize(("extra", "words"), [
    (["--data.rehearsal", "-1"], "data.rehearsal must be 0 or more images per old class, got -1"),
    (["--data.rehearsal", "2"], "data.rehearsal keeps images of the classes of the model extended: it needs "
                                "model.extend"),
])
def test_bad_rehearsal_values_are_one_line(workdir, capsys, extra, words):
    code, error = cli_error(capsys, tiny_args(workdir / "images", *extra))
    lines = [line for line in error.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and words in lines[0], error


def test_what_cannot_be_extended_is_one_line(trained, workdir, capsys):
    best = best_of(trained)
    make_image_folder(workdir / "grown", classes=4, per_class=4)
    make_image_folder(workdir / "renamed", classes=4, per_class=4)
    shutil.move(workdir / "renamed" / "class_2", workdir / "renamed" / "class_9")
    tags = make_label_sets(workdir / "tags", count=12)
    cases = {
        "another backbone": (["--model.backbone_options", json.dumps({**QUARTER_WIDTH, "channels": [8, 16, 32, 64]})],
                             "grown", best, f"model.extend {best} is a resnet18"),
        "a renamed class": ([], "renamed", best, "lacks the old class(es) class_2 (renamed or removed?)"),
        "no new class": ([], "images", best, "holds no new class"),
        "another input size": (["--data.image_size", "20"], "grown", best, "reads images as data.image_size 16"),
        "a folder without runs": ([], "grown", "nowhere", "model.extend nowhere does not exist"),
        "with pretrained weights": (["--model.pretrained", best], "grown", best,
                                    "model.extend starts from the old model's weights"),
        "label sets": (["--data.labels", str(tags)], "tags", best,
                       "model.extend adds classes to a model of one class per image"),
    }
    for name, (extra, folder, given, words) in cases.items():
        code, error = cli_error(capsys, tiny_args(workdir / folder, "--model.extend", given, *extra))
        lines = [line for line in error.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and words in lines[0], (name, error)
