"""Folders as people have them: pre-split layouts, split.csv, stratified and k-fold splits, class balance,
duplicates and leaks, and ``inspect``."""

from __future__ import annotations

import csv
import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_resnet.cli import main
from lightning_resnet.data import ImageFolderDataModule, read_split_csv
from lightning_resnet.data import image_records as records_module
from lightning_resnet.data.samplers import BalancedDraw

from ..conftest import make_folder_with_copies, make_image_folder, tiny_args


def make_imbalanced_folder(root: Path, counts: list[int], size: tuple[int, int] = (40, 32)) -> Path:
    """Class ``i`` with ``counts[i]`` images."""
    make_image_folder(root, classes=len(counts), per_class=max(counts), size=size)
    for index, count in enumerate(counts):
        for extra in sorted((root / f"class_{index}").iterdir())[count:]:
            extra.unlink()
    return root


def parts(rows: list[dict[str, str]]) -> dict[str, set[str]]:
    return {part: {row["path"] for row in rows if row["split"] == part} for part in ("train", "val", "test")}


def files_under(folder: Path) -> set[str]:
    return {str(path) for path in folder.rglob("*.*")}


def inspect(data_dir: Path, *extra: str) -> Path:
    """``python -m lightning_resnet inspect`` (no config); returns the folder it wrote into."""
    main(["inspect", "--data.data_dir", str(data_dir), "--data.num_workers", "0",
          "--trainer.logger.init_args.name", "look", *extra])
    return max(Path("logs/look").glob("version_*"), key=lambda path: int(path.name.split("_")[1]))


@pytest.mark.slow
def test_a_presplit_folder_trains_on_its_own_split_tests_after_fit_and_test_finds_its_test_folder(workdir, caplog):
    root = workdir / "birds"
    make_image_folder(root / "train", classes=3, per_class=6)
    make_image_folder(root / "valid", classes=3, per_class=2, seed=1)
    make_image_folder(root / "test", classes=3, per_class=3, seed=2)
    main(tiny_args(root, "--trainer.max_epochs", "1"))
    assert "split by its folders: train/, valid/, test/), 3 classes, its own split: 18 training and 6" in caplog.text
    run = workdir / "logs" / "tiny" / "version_0"
    rows = read_split_csv(run / "split.csv")
    assert list(rows[0]) == ["path", "split", "class"]
    assert parts(rows) == {"train": files_under(root / "train"), "val": files_under(root / "valid"),
                           "test": files_under(root / "test")}
    assert all(Path(row["path"]).parent.name == row["class"] for row in rows)

    # fit ended by testing its best checkpoint on test/, beside the run
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    assert f"Restoring states from the checkpoint path at {best.relative_to(workdir)}" in caplog.text
    assert (run / "report_test.txt").read_text().startswith("test: 9 images")

    main(tiny_args(root, "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), subcommand="test"))
    assert (workdir / "logs" / "tiny" / "version_1" / "report_test.txt").read_text().startswith("test: 9 images")
    main(tiny_args(root, "--trainer.max_epochs", "1", "--test_after_fit", "false"))
    assert not (workdir / "logs" / "tiny" / "version_2" / "report_test.txt").exists()
    assert (workdir / "logs" / "tiny" / "version_2" / "split.csv").exists()


def test_every_class_of_two_images_or_more_gets_validation_images(workdir, capsys):
    root = make_imbalanced_folder(workdir / "skewed", [50, 5, 5])
    written = inspect(root)
    rows = read_split_csv(written / "split.csv")
    val = Counter(row["class"] for row in rows if row["split"] == "val")
    train = Counter(row["class"] for row in rows if row["split"] == "train")
    assert val == {"class_0": 10, "class_1": 1, "class_2": 1}
    assert train == {"class_0": 40, "class_1": 4, "class_2": 4}
    printed = capsys.readouterr().out
    assert "imbalance: largest class / smallest = 50 / 5 = 10.0" in printed
    # the same seed gives the same split, the same the fit would use
    data = ImageFolderDataModule(data_dir=str(root))
    assert {path for path, _ in data.source.split()[1]} == {row["path"] for row in rows if row["split"] == "val"}


def test_balanced_class_weights_follow_the_training_counts_and_imbalance_is_warned_once(workdir):
    root = make_imbalanced_folder(workdir / "skewed", [50, 5, 5])
    short = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1", "--trainer.limit_val_batches", "1"]
    with pytest.warns(UserWarning, match="imbalanced") as caught:
        main(tiny_args(root, *short, "--trainer.logger.init_args.name", "plain"))
    warned = [str(w.message) for w in caught if "imbalanced" in str(w.message)]
    assert len(warned) == 1
    assert "class_0: 40 training images, class_1: 4" in warned[0]
    assert "--model.class_weights balanced" in warned[0] and "--data.sampler balanced" in warned[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(tiny_args(root, "--model.class_weights", "balanced", *short))
    assert not [w for w in caught if "imbalanced" in str(w.message)]  # the hint suggests nothing already done

    rows = read_split_csv(workdir / "logs" / "tiny" / "version_0" / "split.csv")
    counts = Counter(row["class"] for row in rows if row["split"] == "train")
    expected = torch.tensor([48 / (3 * counts[f"class_{i}"]) for i in range(3)])
    model = cli.model
    assert torch.allclose(model.loss_weights, expected)

    # the training step's loss is the weighted one
    images, targets = torch.randn(6, 3, 16, 16), torch.tensor([0, 0, 0, 0, 1, 2])
    model._trainer = None
    model.eval()
    with torch.no_grad():
        logits = model(images)
        loss = model.training_step((images, targets), 0)
    assert torch.isclose(loss, F.cross_entropy(logits, targets, weight=expected))
    assert not torch.isclose(loss, F.cross_entropy(logits, targets))


def test_the_balanced_sampler_draws_every_class_about_equally_also_under_ddp(tmp_path):
    root = make_imbalanced_folder(tmp_path / "skewed", [200, 20, 20], size=(12, 12))
    data = ImageFolderDataModule(data_dir=str(root), image_size=8, batch_size=16, num_workers=0,
                                 sampler="balanced", train_augment="basic")
    data.setup("fit")
    drawn = Counter(int(target) for _, targets in data.train_dataloader() for target in targets)
    total = sum(drawn.values())
    assert total >= 176 and all(abs(drawn[c] / total - 1 / 3) < 0.1 for c in range(3)), drawn
    shuffled = ImageFolderDataModule(data_dir=str(root), image_size=8, batch_size=16, num_workers=0,
                                     train_augment="basic")
    shuffled.setup("fit")
    plain = Counter(int(target) for _, targets in shuffled.train_dataloader() for target in targets)
    assert plain[0] / sum(plain.values()) > 0.75

    # two processes draw the same list and each takes its own half of it
    targets = [target for _, target in data.train_set.samples]
    single = BalancedDraw(targets, seed=3)
    shares = [BalancedDraw(targets, num_replicas=2, rank=rank, seed=3) for rank in (0, 1)]
    for sampler in (single, *shares):
        sampler.set_epoch(1)
    both = [index for share in shares for index, _ in share]
    assert sorted(both) == sorted(index for index, _ in single)
    assert len(list(shares[0])) == len(list(shares[1])) == len(targets) // 2


@pytest.mark.slow
def test_copies_stay_on_one_side_and_inspect_finds_them_from_the_cache(workdir, monkeypatch, capsys):
    root = workdir / "scraped"
    pairs = make_folder_with_copies(root, classes=3, per_class=12)
    written = inspect(root)
    printed = capsys.readouterr().out
    with open(written / "duplicates.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    group_of = {row["path"]: row["group"] for row in rows}
    found = sum(1 for original, copy in pairs if str(original) in group_of
                and group_of.get(str(original)) == group_of.get(str(copy)))
    assert found / len(pairs) >= 0.9, found
    members = Counter(row["group"] for row in rows)
    assert max(members.values()) == 2  # no distinct scenes put together
    pair_of = {str(path): number for number, pair in enumerate(pairs) for path in pair}
    for group in members:
        assert len({pair_of[row["path"]] for row in rows if row["group"] == group}) == 1
    assert f"near duplicates: {found} group(s), {2 * found} images" in printed
    assert "leaks: 0 group(s)" in printed
    split = {row["path"]: row["split"] for row in read_split_csv(written / "split.csv")}
    assert all(split[str(original)] == split[str(copy)] for original, copy in pairs if
               group_of.get(str(original)) == group_of.get(str(copy), -1))

    def examined_again(*args, **kwargs):
        raise AssertionError("a second start-up checked or hashed a file again")

    monkeypatch.setattr(records_module, "examine", examined_again)
    written = inspect(root, "--data.group_duplicates", "false")
    printed = capsys.readouterr().out
    assert "(data.group_duplicates is off)" in printed
    split = {row["path"]: row["split"] for row in read_split_csv(written / "split.csv")}
    leaked = sum(split[str(original)] != split[str(copy)] for original, copy in pairs)
    assert leaked > 0 and f"leaks: {leaked} group(s)" in printed


def test_a_changed_file_is_checked_again_and_only_it(image_folder, monkeypatch):
    ImageFolderDataModule(data_dir=str(image_folder)).source.split()
    examined = []
    original = records_module.examine
    monkeypatch.setattr(records_module, "examine", lambda path, hashes: examined.append(path) or original(path, hashes))
    changed = image_folder / "class_1" / "001.png"
    shutil.copy(image_folder / "class_2" / "002.png", changed)
    data = ImageFolderDataModule(data_dir=str(image_folder))
    data.source.split()
    assert examined == [str(changed)]
    index = data.source.folder_split()
    assert index.groups and {str(changed), str(image_folder / "class_2" / "002.png")} == {
        index.files[i][0] for i in index.groups[0].members}


def test_a_presplit_folder_reports_copies_shared_between_train_and_val_as_leaks(tmp_path):
    root = tmp_path / "leaky"
    make_image_folder(root / "train", classes=2, per_class=5)
    make_image_folder(root / "val", classes=2, per_class=2, seed=1)
    shutil.copy(root / "train" / "class_0" / "004.png", root / "val" / "class_0" / "leaked.png")
    data = ImageFolderDataModule(data_dir=str(root), image_size=16, num_workers=0)
    with pytest.warns(UserWarning, match=r"1 group\(s\) of duplicate images are in more than one of train/val/test"):
        data.setup("fit")
    assert len(data.val_set) == 5  # the folder's own split is kept as it is
