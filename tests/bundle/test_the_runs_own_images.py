"""A trained model knows exactly which images its run trained, validated and tested on (its bundle keeps every data
option that decides them): the INT8 check measures on the run's own validation part, and ``suggest`` and
``pseudo_label`` never take an image the run labelled, excluded, relabelled or tested on."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from lightning_resnet.bundle import read_bundle
from lightning_resnet.cli import main
from lightning_resnet.data import read_split_csv

from ..conftest import description_of, make_image_folder, read_rows, tiny_args


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


@pytest.mark.slow
def test_int8_suggest_and_pseudo_label_use_the_parts_the_runs_split_csv_lists(workdir, capsys):
    images = workdir / "images"
    excluded = sorted((images / "class_0").glob("*.*"))[:6]  # class 0 keeps 4: its validation share changes
    relabelled = sorted((images / "class_1").glob("*.*"))[0]
    exclude = write_csv(workdir / "exclude.csv", ["path"], [[str(path)] for path in excluded])
    relabel = write_csv(workdir / "relabel.csv", ["path", "label"], [[str(relabelled), "class_2"]])
    main(tiny_args(images, "--trainer.max_epochs", "2", "--data.exclude", str(exclude), "--data.relabel",
                   str(relabel), "--data.test_dir", str(workdir / "holdout")))
    run = workdir / "logs" / "tiny" / "version_0"
    best = next((run / "checkpoints").glob("best-*.ckpt"))
    listed = {(row["path"], row["split"], row["class"]) for row in read_split_csv(run / "split.csv")}
    assert {split for _, split, _ in listed} == {"train", "val", "test", "excluded"}
    assert set(read_bundle(best).labelled_source().split_rows()) == listed

    main(["export", "--ckpt_path", str(best), "--quantize", "int8", "--calibration_images", "1000",
          "--keep_accuracy_drop", "true"])
    measured = description_of(best.with_suffix(".int8.onnx"))["export"]["quantization"]
    assert measured["calibration_images"] == sum(split == "train" for _, split, _ in listed)  # all there were
    assert measured["validation_images"] == sum(split == "val" for _, split, _ in listed)
    assert measured["float_accuracy"] == pytest.approx(torch.load(best, weights_only=True)["epoch_metrics"]["val/acc"],
                                                       abs=1e-4)  # fit's own validation accuracy, on the same images

    pool = workdir / "pool"
    shutil.copytree(workdir / "holdout", pool / "copies_of_the_test_images")
    make_image_folder(pool / "new", classes=3, per_class=2, seed=11)
    capsys.readouterr()
    main(["suggest", "--ckpt_path", str(best), "--data.predict_dir", str(pool), "--budget", "100"])
    suggested = [row["path"] for row in read_rows(run / "to_label.csv")]
    assert "6 of 6 unlabelled images" in capsys.readouterr().out
    assert sorted(suggested) == sorted(str(path) for path in (pool / "new").rglob("*.*"))
    main(["pseudo_label", "--ckpt_path", str(best), "--data.predict_dir", str(pool), "--min_confidence", "0.01"])
    pseudo = [row["path"] for row in read_rows(run / "pseudo_labels.csv")]
    assert not any("copies_of_the_test_images" in path for path in pseudo)
    assert "9 labelled already" in capsys.readouterr().out
