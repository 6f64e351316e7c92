"""A folder converted to LitData's streaming format: the same split, images and metrics as the folder; an exact
mid-epoch resume; smaller files with ``--max_side``; converted in folds for ``cross_validate``;
damaged data sets refused in one line."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import signal
from pathlib import Path

import pytest
import torch
from PIL import Image

from lightning_resnet.cli import main
from lightning_resnet.data import ImageFolderDataModule
from lightning_resnet.data.sources.converted_manifest import use_litdata

from ..conftest import ROOT, cli_error, make_image_folder, tiny_args
from ..training.interrupters import (
    AUGMENTED,
    LETTERBOXED,
    UninterruptedRuns,
    assert_resumed_exactly,
    run_until_interrupted,
)

ODD_SPLIT = ["--data.val_fraction", "0.25"]  # 60 images: 45 to train on, 15 to validate (8 and 7 under DDP)


use_litdata()
from litdata import StreamingDataset  # noqa: E402  (after use_litdata: no question to PyPI)


def one_error_line(error: str) -> bool:
    return error.startswith("error: ") and error.count("\n") == 1


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """60 generated images and 15 more to test on, a 2-epoch fit on the folder, and the folder converted with the
    same split."""
    root = tmp_path_factory.mktemp("streaming")
    make_image_folder(root / "images", classes=3, per_class=20, seed=3)
    make_image_folder(root / "holdout", classes=3, per_class=5, seed=9)
    test = ["--data.test_dir", str(root / "holdout")]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        main(tiny_args(root / "images", *ODD_SPLIT, *test, "--trainer.max_epochs", "2", "--test_after_fit", "false",
                       "--trainer.logger.init_args.name", "folder"))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            main(tiny_args(root / "images", *ODD_SPLIT, *test, "--output", str(root / "converted"),
                           subcommand="convert"))
    assert "converted 75 images of 3 classes (train 45, val 15, test 15)" in printed.getvalue()
    return root


FOLDS = 2


@pytest.fixture(scope="module")
def in_folds(converted) -> Path:
    """The same 60 images converted in 2 folds, with each fold's training statistics measured."""
    folds = converted / "folds"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(converted)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            main(tiny_args(converted / "images", "--data.num_folds", str(FOLDS), "--data.normalize", "auto",
                           "--output", str(folds), subcommand="convert"))
    assert "converted 60 images of 3 classes (fold_0 30, fold_1 30)" in printed.getvalue()
    return folds


@pytest.mark.slow
def test_convert_keeps_the_split_and_fit_reads_the_same_images(converted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder_run = converted / "logs/folder/version_0"
    assert rows(converted / "converted/split.csv") == rows(folder_run / "split.csv")
    manifest = json.loads((converted / "converted/converted.json").read_text())
    assert manifest["class_counts"] == {"train": [15, 15, 15], "val": [5, 5, 5], "test": [5, 5, 5]}

    streamed = main(tiny_args(converted / "converted", "--trainer.max_epochs", "2", "--test_after_fit", "false"))
    assert streamed.trainer.global_step == 2 * 6  # 45 images, batches of 8: 5 full and one of 5, kept
    assert rows(tmp_path / "logs/tiny/version_0/split.csv") == rows(folder_run / "split.csv")

    # one checkpoint evaluated on the folder and on its converted form: the same images, the same numbers
    last = folder_run / "checkpoints/last.ckpt"
    scores = []
    for data_dir in (converted / "images", converted / "converted"):
        run = main(tiny_args(data_dir, *ODD_SPLIT, "--ckpt_path", str(last), subcommand="validate"))
        scores.append({key: float(run.trainer.callback_metrics[key]) for key in ("val/acc", "val/loss")})
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    reports = sorted((tmp_path / "logs/tiny").glob("version_*/report_val.txt"))
    assert [report.read_text().splitlines()[0] for report in reports[-2:]] == ["val: 15 images, 3 classes"] * 2


FOLD = ["--data.num_folds", str(FOLDS), "--data.fold", "1", "--data.batch_size", "4"]  # step 8 in the second epoch
MOMENTS = {
    # (options, loader workers, the interrupting callback, the interrupted run's exit code, a process of its own):
    # per-sample augmentation seeds and stochastic depth throughout
    "step start, no workers": (AUGMENTED, 0, "InterruptAtStep", 130, False),
    "inside on_train_batch_end": (AUGMENTED, 0, "InterruptInBatchEnd", 130, False),
    "step start, letterboxed into 16 x 24": ([*AUGMENTED, *LETTERBOXED], 0, "InterruptAtStep", 130, False),
    "SIGTERM to the process group, 2 workers": (AUGMENTED, 2, "SigtermToTheGroup", 128 + signal.SIGTERM, True),
    "an epoch's end": (AUGMENTED, 0, "InterruptAfterEpoch", 130, False),
    # a fold trains on the other folds' parts read by index, in the folder path's shuffle (and the one Ctrl-C
    # mid-forward with workers: the same loader and its saved place as the plain conversion's)
    "a fold of a conversion in folds, Ctrl-C mid-forward, 2 workers": ([*AUGMENTED, *FOLD], 2, "CtrlCMidForward",
                                                                       130, False),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> UninterruptedRuns:
    """The uninterrupted run of each data set and option set, trained once for the moments that compare with it."""
    return UninterruptedRuns(tmp_path_factory.mktemp("uninterrupted"))


@pytest.mark.parametrize("moment", [pytest.param(name, marks=pytest.mark.slow)
                                    if MOMENTS[name][4] or MOMENTS[name][1] or "letterboxed" in name else name
                                    for name in MOMENTS])  # a real process, loader workers, a second data set: slow
def test_an_interrupted_streaming_fit_resumes_to_the_uninterrupted_runs_weights(request, uninterrupted, tmp_path,
                                                                                monkeypatch, moment):
    """LitData's loader saves the batches it fetched, one ahead of those trained on: the saved place must be the
    trained one (LitData #775: a restore that did not happen)."""
    monkeypatch.chdir(tmp_path)
    options, workers, interrupter, exit_code, own_process = MOMENTS[moment]
    if "--data.num_folds" in options:
        data, steps = request.getfixturevalue("in_folds"), 8  # 30 training images: 7 batches of 4 and one of 2
    else:
        data, steps = request.getfixturevalue("converted") / "converted", 6  # 45: 5 of 8 and one of 5
    # LitData shares the chunks out among the loader workers: their number is part of the streamed order
    common = ["--trainer.max_epochs", "3", "--data.batch_size", "8", "--test_after_fit", "false", *options,
              "--data.num_workers", str(workers)]
    straight = uninterrupted.of(data, common)
    interrupted = tiny_args(data, *common)
    run_until_interrupted(tmp_path, interrupted, interrupter, exit_code, own_process)
    saved = torch.load(tmp_path / "logs/tiny/version_0/checkpoints/last.ckpt", weights_only=True)
    assert steps <= saved["global_step"] <= 2 * steps  # in or at the end of the second of three epochs
    resumed = main([*interrupted, "--ckpt_path", "last"])
    assert straight.global_step == 3 * steps
    assert_resumed_exactly(straight, tmp_path / "logs/tiny/version_0", resumed)


@pytest.mark.slow
def test_max_side_writes_smaller_files_that_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "images", classes=2, per_class=6, size=(120, 90))
    for name, extra in (("whole", []), ("small", ["--max_side", "32"])):
        main(tiny_args(tmp_path / "images", "--output", str(tmp_path / name), *extra, subcommand="convert"))
    whole, small = (sum(file.stat().st_size for file in (tmp_path / name).rglob("*.bin"))
                    for name in ("whole", "small"))
    assert small < whole / 3
    assert json.loads((tmp_path / "small/converted.json").read_text())["max_side"] == 32

    stream = StreamingDataset(str(tmp_path / "small/train"))
    sides = {max(Image.open(io.BytesIO(bytes(item["image"]))).size) for item in stream}
    assert sides == {32}
    run = main(tiny_args(tmp_path / "small", "--trainer.max_epochs", "1"))
    assert run.trainer.global_step == 2  # 10 training images, batches of 8


@pytest.mark.slow  # a process per fold
def test_cross_validate_from_a_conversion_in_folds_stores_each_image_once_and_validates_as_the_folder(
        converted, in_folds, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    images = converted / "images"
    everything = {str(path) for path in images.rglob("*.*")}
    manifest = json.loads((in_folds / "converted.json").read_text())
    assert sorted(manifest["class_counts"]) == ["fold_0", "fold_1"] and manifest["num_folds"] == FOLDS
    stored = [row["path"] for row in rows(in_folds / "split.csv")]
    assert len(stored) == len(set(stored)) == 60 and set(stored) == everything  # once each, not once per fold
    # each fold's statistics are those the folder measures for it (its training images, the other folds')
    for fold, measured in enumerate(manifest["normalizations"]):
        folder = ImageFolderDataModule(str(images), num_folds=FOLDS, fold=fold, normalize="auto", image_size=16,
                                       num_workers=0)
        assert measured["mean"] == pytest.approx(list(folder.normalization.mean), abs=1e-9)
        assert measured["std"] == pytest.approx(list(folder.normalization.std), abs=1e-9)

    main(["cross_validate", *tiny_args(in_folds)[1:], "--trainer.max_epochs", "1", "--data.num_folds", str(FOLDS),
          "--data.normalize", "auto"])
    group = tmp_path / "logs/tiny/crossval_0"
    assert "out-of-fold predictions of 60 images" in capsys.readouterr().out
    for fold in range(FOLDS):
        # the folder's fold: the same images validated, the rest trained on
        train, val = ImageFolderDataModule(str(images), num_folds=FOLDS, fold=fold, num_workers=0).source.split()
        split = rows(group / f"fold_{fold}/split.csv")
        assert {row["path"] for row in split if row["split"] == "val"} == {path for path, _ in val}
        assert {row["path"] for row in split if row["split"] == "train"} == {path for path, _ in train}
    oof = rows(group / "oof_predictions.csv")
    assert sorted(row["path"] for row in oof) == sorted(everything)
    assert all(abs(sum(float(row[f"p_class_{c}"]) for c in range(3)) - 1) < 1e-4 for row in oof)

    # a fold's checkpoint validated on the folder's fold and on the converted fold: the same numbers
    best = next((group / "fold_1/checkpoints").glob("best-*.ckpt"))
    scores = []
    for data_dir in (images, in_folds):
        run = main(tiny_args(data_dir, "--data.num_folds", str(FOLDS), "--data.fold", "1", "--ckpt_path", str(best),
                             subcommand="validate"))
        scores.append({key: float(run.trainer.callback_metrics[key]) for key in ("val/acc", "val/loss")})
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


@pytest.mark.slow
def test_bad_converted_data_sets_are_one_line(converted, in_folds, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(converted / "converted", broken)
    chunk = next((broken / "train").glob("*.bin"))
    chunk.write_bytes(chunk.read_bytes()[:1000])
    code, error = cli_error(capsys, tiny_args(broken))
    assert code == 2 and one_error_line(error) and f"chunk {chunk} is 1000 bytes" in error and "convert again" in error

    unfinished = tmp_path / "unfinished"
    shutil.copytree(converted / "converted", unfinished)
    (unfinished / "val/index.json").unlink()
    code, error = cli_error(capsys, tiny_args(unfinished))
    assert code == 2 and one_error_line(error) and "val/index.json is missing" in error

    code, error = cli_error(capsys, tiny_args(converted / "converted", "--data.num_folds", "3"))
    assert code == 2 and one_error_line(error) and "converted as one split" in error and "--data.num_folds 3" in error
    for folds in ([], ["--data.num_folds", "4"]):
        code, error = cli_error(capsys, tiny_args(in_folds, *folds))
        assert code == 2 and one_error_line(error) and "converted in 2 folds" in error and "--data.num_folds 2" in error

    code, error = cli_error(capsys, tiny_args(converted / "converted", subcommand="inspect"))
    assert code == 2 and one_error_line(error) and "inspect reads an image folder" in error
    assert str(converted / "images") in error  # the folder it was converted from

    code, error = cli_error(capsys, tiny_args(converted / "converted", "--data.sampler", "balanced"))
    assert code == 2 and "data.sampler balanced" in error and "class_weights: balanced" in error

    code, error = cli_error(capsys, tiny_args(converted / "images", "--output", str(converted / "converted"),
                                              subcommand="convert"))
    assert code == 2 and "exists and is not empty" in error
    assert (converted / "converted/converted.json").is_file()  # nothing of the user's lost

    code, error = cli_error(capsys, tiny_args(converted / "converted", "--model.freeze_backbone", "true",
                                              "--model.cache_features", "true"))
    assert code == 2 and "model.cache_features" in error and "converted data set" in error
