"""``data.exclude`` and ``data.relabel``: the user's decisions about images, taken by ``fit`` without touching the
folder."""

from __future__ import annotations

import csv
from pathlib import Path

from lightning_resnet.cli import main
from lightning_resnet.data import read_split_csv

from ..conftest import tiny_args


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_excluded_images_leave_training_and_relabelled_ones_train_under_their_new_class(workdir):
    images = workdir / "images"
    before = {path.name: path for path in images.rglob("*.*")}
    excluded = [images / "class_0" / "001.png", images / "class_2" / "004.png"]
    relabelled = images / "class_1" / "002.png"
    # as label_issues.csv lists them (absolute, with more columns), and relative to the folder
    exclude = write_csv(workdir / "exclude.csv", ["rank", "path", "label"],
                        [["1", str(excluded[0]), "class_0"], ["2", "class_2/004.png", "class_2"]])
    relabel = write_csv(workdir / "relabel.csv", ["path", "label"], [[str(relabelled), "class_2"]])
    run = main(tiny_args(images, "--trainer.max_epochs", "1", "--data.exclude", str(exclude),
                         "--data.relabel", str(relabel)))

    rows = {row["path"]: row for row in read_split_csv(workdir / "logs" / "tiny" / "version_0" / "split.csv")}
    assert len(rows) == 30
    assert {path for path, row in rows.items() if row["split"] == "excluded"} == {str(p) for p in excluded}
    assert rows[str(relabelled)]["class"] == "class_2" and rows[str(relabelled)]["split"] in ("train", "val")
    data = run.datamodule
    used = dict(data.train_set.samples + data.val_set.samples)
    assert len(used) == 28 and not set(map(str, excluded)) & set(used)
    assert used[str(relabelled)] == data.class_names.index("class_2")
    assert all(used[str(path)] == data.class_names.index(path.parent.name) for path in images.rglob("*.*")
               if str(path) in used and path != relabelled)
    assert {path.name: path for path in images.rglob("*.*")} == before  # nothing moved in the folder
