"""A labels file whose images have several labels: label sets as multi-hot targets, an iterative stratified split
that keeps every label in training and validation, and each bad input in one line."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.data.dataset import ImageSamples, label_counts, multi_hot
from lightning_resnet.data.labels_file import list_labels_file
from lightning_resnet.data.multilabel_split import multilabel_fold_numbers, multilabel_split
from lightning_resnet.errors import UserError
from lightning_resnet.tasks import MULTI_LABEL

from ..conftest import LABEL_CORNERS, cli_error, datamodule, make_label_sets, tiny_args
from .test_corrections import write_csv


def test_a_file_with_label_sets_lists_them_and_reads_multi_hot_targets(tmp_path):
    labels = make_label_sets(tmp_path, count=12)
    listing = list_labels_file(str(labels), tmp_path)
    assert listing.task is MULTI_LABEL and listing.class_names == tuple(sorted(LABEL_CORNERS))
    first_row = labels.read_text().splitlines()[1].split(",")[1].split()
    assert listing.files[0][1] == tuple(sorted(listing.class_names.index(name) for name in first_row))
    dataset = ImageSamples(listing.files, lambda path: torch.zeros(1), num_labels=len(listing.class_names))
    _, target = dataset[0]
    assert target.tolist() == multi_hot(listing.files[0][1], 4).tolist() and target.sum() == len(first_row)


def test_one_label_per_row_stays_single_label_unless_data_multilabel_says_otherwise(workdir):
    labels = write_csv(workdir / "labels.csv", ["path", "labels"], [["class_0/001.png", "class_0"],
                                                                    ["class_1/001.png", "class_1"]])
    assert list_labels_file(str(labels), workdir / "images").task is not MULTI_LABEL
    forced = list_labels_file(str(labels), workdir / "images", multilabel=True)
    assert forced.task is MULTI_LABEL and forced.files[0][1] == (0,)


def test_the_split_keeps_every_label_on_both_sides_about_80_20(tmp_path):
    labels = make_label_sets(tmp_path, count=60)
    data = datamodule(tmp_path, labels=str(labels), group_duplicates=False)
    assert data.task == "multilabel"
    rows = data.source.split_rows()
    parts = Counter(part for _, part, _ in rows)
    assert parts["train"] + parts["val"] == 60 and 10 <= parts["val"] <= 14, parts
    for name in LABEL_CORNERS:
        sides = Counter(part for _, part, names in rows if name in names.split())
        assert sides["train"] > 0 and sides["val"] > 0, (name, sides)
        assert sides["val"] / (sides["train"] + sides["val"]) == pytest.approx(0.2, abs=0.1)


def test_groups_move_as_one_and_folds_each_hold_every_label():
    targets = [(0, 1), (1,), (0, 2), (2,), (0,), (1, 2), (0, 1, 2), (1,), (2,), (0,)] * 3
    names = ("a", "b", "c")
    train, val = multilabel_split(targets, names, 0.2, seed=1, groups=[[0, 10, 20]])
    assert sorted(train + val) == list(range(30)) and not set(train) & set(val)
    assert {0, 10, 20} <= set(train) or {0, 10, 20} <= set(val)
    folds = multilabel_fold_numbers(targets, names, 3, seed=1)
    for fold in range(3):
        held_out = [targets[i] for i, f in enumerate(folds) if f == fold]
        assert all(label_counts(held_out, 3)), (fold, held_out)


def test_a_label_that_appears_once_is_one_line_when_a_split_needs_two():
    with pytest.raises(UserError, match=r"^tags.csv: label c has 1 readable image\(s\): a split of training and "
                                        r"validation images needs at least 2 of each label"):
        multilabel_split([(0, 1), (0,), (1,), (0, 2)], ("a", "b", "c"), 0.2, seed=0, source="tags.csv")
    with pytest.raises(UserError, match=r"^tags.csv: label b has 2 readable image\(s\): a data.num_folds 3 needs"):
        multilabel_fold_numbers([(0, 1), (0,), (1,), (0,)], ("a", "b"), 3, seed=0, source="tags.csv")


@pytest.mark.parametrize(("rows", "options", "expected"), [
    ([["class_0/001.png", "class_1 other"]], {}, "line 2: class_0/001.png is in the class folder class_0 but "
                                                 "labelled class_1 other: the file and the folders disagree"),
    ([["class_0/001.png", "class_0 other"]], {"multilabel": False}, "has 2 labels (class_0 other) and "
                                                                    "data.multilabel is false"),
])
def test_a_labels_file_at_odds_with_itself_or_its_folders_is_one_line(workdir, rows, options, expected):
    labels = write_csv(workdir / "labels.csv", ["path", "labels"], [*rows, ["class_1/001.png", "class_1"],
                                                                    ["class_0/002.png", "class_0"]])
    with pytest.raises(UserError) as error:
        list_labels_file(str(labels), workdir / "images", **options)
    assert expected in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_options_that_need_one_class_per_image_are_refused_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    labels = make_label_sets(tmp_path, count=12)
    code, printed = cli_error(capsys, tiny_args(tmp_path, "--data.labels", str(labels), "--data.sampler", "balanced"))
    assert code == 2 and printed.strip() == (
        f"error: data.sampler balanced does not go with data.labels {labels}, a multi-label set: it draws by class: "
        "use model.class_weights"), printed
    code, printed = cli_error(capsys, tiny_args(tmp_path, "--data.labels", str(labels), "--model.class_weights",
                                                "balanced", "--trainer.max_epochs", "1"))
    assert code == 2 and printed.strip().splitlines()[-1].startswith(
        "error: model.class_weights balanced weighs classes by their counts, which a multi-label set does not split"
    ), printed


def test_inspect_counts_each_labels_images_and_the_labels_found_together(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    labels = make_label_sets(tmp_path, count=12)
    main(["inspect", "--data.labels", str(labels), "--data.image_size", "16"])
    printed = capsys.readouterr().out
    sets = [line.split(",")[1].split() for line in labels.read_text().splitlines()[1:]]
    assert "12 image files, 4 labels (several per image)" in printed
    for name in LABEL_CORNERS:
        row = next(line.split() for line in printed.splitlines() if line.startswith(f"{name} "))
        assert int(row[-1]) == sum(name in labels_of for labels_of in sets), row
    sizes = Counter(len(labels_of) for labels_of in sets)
    assert f"labels per image: {', '.join(f'{size}: {sizes[size]}' for size in sorted(sizes))}" in printed
    assert "together most often: " in printed
