"""``data.labels``: a CSV file that lists the images and their classes instead of class folders, split here or
already (its ``split`` column); every bad row is one line naming the file and the row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lightning_resnet.cli import main
from lightning_resnet.data import read_split_csv
from lightning_resnet.data.labels_file import list_labels_file
from lightning_resnet.errors import UserError

from ..conftest import cli_error, datamodule, tiny_args
from .test_corrections import write_csv


def flatten(images: Path, flat: Path) -> list[tuple[str, str]]:
    """The class folders' images moved into one flat folder (renamed, their class gone from the path): each image's
    new name and class."""
    flat.mkdir()
    listed = []
    for path in sorted(images.rglob("*.*")):
        name = f"{path.parent.name[-1]}{path.name}"
        shutil.move(path, flat / name)
        listed.append((name, path.parent.name))
    return listed


def without_data_dir(args: list[str]) -> list[str]:
    at = args.index("--data.data_dir")
    return args[:at] + args[at + 2:]


@pytest.mark.slow
def test_a_labels_file_trains_like_the_folder_it_lists_and_validate_reads_it_from_the_checkpoint(workdir):
    """No data.data_dir: the paths are relative to the labels file's folder. A split column with val and test rows
    is the split (as train/, val/ and test/ folders would be); validate --ckpt_path alone reads the same file."""
    listed = flatten(workdir / "images", workdir / "flat")
    parts = ["val" if index % 5 == 0 else "test" if index % 5 == 1 else "train" for index in range(len(listed))]
    labels = write_csv(workdir / "flat" / "labels.csv", ["path", "labels", "split"],
                       [[name, label, part] for (name, label), part in zip(listed, parts)])
    run = main(without_data_dir(tiny_args(workdir, "--data.labels", str(labels), "--trainer.max_epochs", "1")))

    folder = workdir / "logs" / "tiny" / "version_0"
    rows = {Path(row["path"]).name: (row["class"], row["split"]) for row in read_split_csv(folder / "split.csv")}
    assert rows == {name: (label, part) for (name, label), part in zip(listed, parts)}
    assert run.datamodule.class_names == ["class_0", "class_1", "class_2"]
    assert (folder / "report_test.txt").is_file()  # its test rows were tested after fit
    validated = main(["validate", "--ckpt_path", "best", "--trainer.logger.init_args.name", "tiny",
                      "--trainer.enable_progress_bar", "false"])
    assert sorted(Path(path).name for path, _ in validated.datamodule.val_set.samples) == sorted(
        name for (name, _), part in zip(listed, parts) if part == "val")


def test_a_labels_file_without_a_split_column_is_split_80_20_by_class(workdir):
    listed = flatten(workdir / "images", workdir / "flat")
    labels = write_csv(workdir / "labels.csv", ["path", "labels"], [[name, label] for name, label in listed])
    rows = datamodule(workdir / "flat", labels=str(labels)).source.split_rows()
    assert sorted(Path(path).name for path, _, _ in rows) == sorted(name for name, _ in listed)
    for label in ("class_0", "class_1", "class_2"):
        assert sorted(part for _, part, name in rows if name == label) == ["train"] * 8 + ["val"] * 2


def test_a_bad_labels_file_on_the_command_line_is_one_line(workdir, capsys):
    labels = write_csv(workdir / "labels.csv", ["path", "labels"], [["class_0/001.png", "class_0"],
                                                                    ["class_0/missing.png", "class_0"]])
    code, printed = cli_error(capsys, tiny_args(workdir / "images", "--data.labels", str(labels)))
    lines = printed.strip().splitlines()
    assert code == 2 and len(lines) == 1, printed
    assert f"data.labels {labels}, line 3: class_0/missing.png does not exist" in lines[0]


@pytest.mark.parametrize(("header", "rows", "expected"), [
    (["path", "label"], [["class_0/001.png", "class_0"]], "has no 'labels' column"),
    (["path", "labels"], [], "has no rows"),
    (["path", "labels"], [["class_0/001.png", " "]], "line 2: class_0/001.png has no label"),
    (["path", "labels"], [["class_0/001.png", "class_0 class_1"]], "has 2 labels (class_0 class_1) and "
                                                                   "data.multilabel is false"),
    (["path", "labels"], [["class_0/001.png", "a"], ["class_0/001.png", "b"]], "line 3: class_0/001.png is listed "
                                                                              "twice (line 2 too)"),
    (["path", "labels"], [["class_0/001.png", "a"], ["notes.txt", "b"]], "line 3: notes.txt is not an image file"),
    (["path", "labels"], [["class_0/001.png", "a"], ["class_0/002.png", "a"]], "of one class only (a)"),
    (["path", "labels", "split"], [["class_0/001.png", "a", "train"], ["class_0/002.png", "b", "holdout"]],
     "line 3: split 'holdout' of class_0/002.png: expected train, val or test"),
    (["path", "labels", "split"], [["class_0/001.png", "a", "val"], ["class_0/002.png", "b", "test"]],
     "has a split column but no train row"),
    (["path", "labels", "split"], [["class_0/001.png", "a", "train"], ["class_0/002.png", "b", "train"],
                                   ["class_0/004.png", "c", "val"]], "line 4: 'c' is not a class of the training rows"),
])
def test_each_bad_row_names_the_file_and_the_row(workdir, header, rows, expected):
    (workdir / "images" / "notes.txt").write_text("not an image")
    labels = write_csv(workdir / "labels.csv", header, rows)
    with pytest.raises(UserError) as error:
        list_labels_file(str(labels), workdir / "images", multilabel=False)
    assert str(error.value).startswith(f"data.labels {labels}") and expected in str(error.value), str(error.value)


def test_a_checkpoints_classes_are_the_classes_and_a_label_outside_them_is_refused(workdir):
    labels = write_csv(workdir / "labels.csv", ["path", "labels"], [["class_0/001.png", "cat"],
                                                                    ["class_0/002.png", "dog"]])
    listing = list_labels_file(str(labels), workdir / "images", ("dog", "cat", "bird"))
    assert listing.class_names == ("dog", "cat", "bird") and [target for _, target in listing.files] == [1, 0]
    assert not listing.layout.presplit and listing.parts == (None, None)
    with pytest.raises(UserError, match="line 3: 'dog' is not a class of the model"):
        list_labels_file(str(labels), workdir / "images", ("cat", "bird"))


def test_a_misspelt_column_is_one_line_and_another_column_a_warning(workdir, capsys):
    """``splt`` would have been read as no split column at all: the project's own 80/20 split, without a word."""
    listed = flatten(workdir / "images", workdir / "flat")
    rows = [[name, label, "val" if index % 5 == 0 else "train"] for index, (name, label) in enumerate(listed)]
    misspelt = write_csv(workdir / "flat" / "splt.csv", ["path", "labels", "splt"], rows)
    code, error = cli_error(capsys, without_data_dir(tiny_args(workdir / "flat", "--data.labels", str(misspelt),
                                                               "--trainer.fast_dev_run", "true")))
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "column 'splt'" in lines[0] and "did you mean split?" in lines[0], error
    noted = write_csv(workdir / "flat" / "noted.csv", ["path", "labels", "notes"], [[*row[:2], "x"] for row in rows])
    with pytest.warns(UserWarning, match="its column 'notes' is not read"):
        main(without_data_dir(tiny_args(workdir / "flat", "--data.labels", str(noted), "--trainer.fast_dev_run",
                                        "true")))
