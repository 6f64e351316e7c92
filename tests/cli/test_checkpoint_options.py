"""A checkpoint carries everything: evaluating and predicting from it alone, ``best`` and ``last`` by name,
no untrained model used silently, and a finished run extended by more epochs."""

from __future__ import annotations

import math
import shlex
import sys
from pathlib import Path

import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.training.checkpoints import best_checkpoint_of_run

from ..conftest import cli_error, decision_in, make_image_folder, read_rows, tiny_args


def predictions(run) -> dict[str, tuple[str, float]]:
    return {row["path"]: (row["prediction"], float(row["confidence"])) for row in read_rows(run / "predictions.csv")}


def same_predictions(first: dict[str, tuple[str, float]], second: dict[str, tuple[str, float]]) -> bool:
    """The same classes, and confidences within 2e-6 (two runs that batch the images differently move the CSV's
    sixth decimal now and then)."""
    return first.keys() == second.keys() and all(
        first[path][0] == second[path][0] and abs(first[path][1] - second[path][1]) <= 2e-6 for path in first)


@pytest.mark.slow
def test_predict_and_validate_from_the_checkpoint_alone_match_the_full_command_line(trained, workdir, capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    holdout = str(workdir / "holdout")
    main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", holdout,
                   "--trainer.logger.init_args.name", "full", subcommand="predict"))
    main(["predict", "--ckpt_path", str(best), "--data.predict_dir", holdout, "--trainer.accelerator", "cpu",
          "--trainer.logger.init_args.name", "alone"])
    assert same_predictions(predictions(workdir / "logs/alone/version_0"), predictions(workdir / "logs/full/version_0"))

    full = main(tiny_args(workdir / "images", "--ckpt_path", str(best), subcommand="validate"))
    alone = main(["validate", "--ckpt_path", str(best), "--data.data_dir", str(workdir / "images"),
                  "--trainer.accelerator", "cpu"])
    assert alone.datamodule.geometry.size == (16, 16) and alone.model.hparams.backbone_options["channels"][0] == 16
    reports = Path(alone.trainer.log_dir)  # beside the run it evaluates, as with --ckpt_path best
    assert reports.parent.resolve() == trained.parent.resolve() and (reports / "report_val.txt").is_file()
    for key in ("val/acc", "val/loss"):
        assert float(alone.trainer.callback_metrics[key]) == float(full.trainer.callback_metrics[key])


@pytest.mark.parametrize(("option", "value", "words"), [
    ("--model.backbone", "resnet50", ["model.backbone", "'resnet50'", "'resnet18'"]),
    ("--data.image_size", "32", ["data.image_size", "32", "16"]),
])
def test_an_option_that_contradicts_the_checkpoint_is_one_line(trained, workdir, capsys, option, value, words):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    with pytest.raises(SystemExit) as exit_code:
        main(["validate", "--ckpt_path", str(best), "--data.data_dir", str(workdir / "images"),
              "--trainer.accelerator", "cpu", option, value])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1 and all(word in lines[0] for word in words), lines


@pytest.mark.slow
def test_best_and_last_name_the_newest_runs_checkpoints_for_every_subcommand(trained, workdir):
    run = main(tiny_args(workdir / "images", "--ckpt_path", "best", subcommand="validate"))
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    assert Path(run.config.validate.ckpt_path).resolve() == best.resolve()
    run = main(tiny_args(workdir / "images", "--ckpt_path", "last", "--data.predict_dir", str(workdir / "holdout"),
                         subcommand="predict"))
    assert Path(run.config.predict.ckpt_path).resolve() == (trained / "checkpoints" / "last.ckpt").resolve()
    exported = main(["export", "--ckpt_path", "best", "--experiment", "logs/tiny",
                     "--output", str(workdir / "model.onnx")])
    assert exported is not None and (workdir / "model.onnx").is_file()


@pytest.mark.parametrize("command", [["validate"], ["test"], ["predict", "--data.predict_dir", "holdout"],
                                     ["validate", "--ckpt_path", "best"]])
def test_evaluating_without_weights_is_refused_in_one_line(workdir, capsys, command):
    with pytest.raises(SystemExit) as exit_code:
        main([*command, "--data.data_dir", "images", "--trainer.accelerator", "cpu"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1 and "--ckpt_path" in lines[0], lines


def test_a_finished_run_extended_by_one_epoch_trains_exactly_that_epoch(trained, workdir):
    before = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = before["global_step"] // 2  # the fixture trained 2 epochs
    best_before = best_checkpoint_of_run(trained)
    temperature_before = decision_in(best_before.path)["temperature"]
    extended = main(tiny_args(workdir / "images", "--trainer.max_epochs", "3", "--ckpt_path", "last"))
    assert extended.trainer.global_step == 3 * steps_per_epoch and extended.trainer.current_epoch == 3
    assert "val/acc" in extended.trainer.callback_metrics
    after = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    assert after["epoch"] == 2 and after["global_step"] == 3 * steps_per_epoch
    weights = "model.layer1.0.conv1.weight"
    assert not torch.equal(before["state_dict"][weights], after["state_dict"][weights])
    best_after = best_checkpoint_of_run(trained)
    calibrated_after = decision_in(best_after.path)
    if best_after.path == best_before.path:  # calibrated by the first run, on its own epoch's logits: kept
        assert calibrated_after["temperature"] == temperature_before
    else:  # the new epoch is the best (the same accuracy at a lower loss): calibrated on its logits
        assert math.isfinite(float(calibrated_after["reject_below"]))


@pytest.mark.slow  # 1.8-2.9 s in make check's fresh-clone run (pyproject.toml's marker: 1.7 s or more)
def test_the_hints_fit_ends_with_do_what_they_say_pasted_as_they_stand(workdir, capsys):
    """A fold's best checkpoint is evaluated on that fold's validation images, without the options it was trained
    with; the TensorBoard command names this environment's TensorBoard."""
    main(tiny_args(workdir / "images", "--data.num_folds", "3", "--data.fold", "1", "--trainer.max_epochs", "1",
                   "--trainer.logger.init_args.version", "crossval_0/fold_1"))
    printed = capsys.readouterr().out
    hint = next(line for line in printed.splitlines() if line.startswith("best checkpoint: "))
    words = shlex.split(hint.split("evaluate it on its validation split: ")[1])
    assert Path(words[0]).resolve() == Path(sys.executable).resolve() and words[1:3] == ["-m", "lightning_resnet"]
    main(words[3:])
    held_out = [row for row in read_rows(workdir / "logs/tiny/crossval_0/fold_1/split.csv") if row["split"] == "val"]
    report = (workdir / "logs/default/version_0/report_val.txt").read_text()
    assert report.startswith(f"val: {len(held_out)} images, 3 classes")
    tensorboard = shlex.split(next(line for line in printed.splitlines() if line.startswith("TensorBoard: "))[13:])
    assert Path(tensorboard[0]).is_file() and tensorboard[1:] == ["--logdir", "logs/tiny/crossval_0"]


def test_class_count_mismatch_names_both(trained, workdir, capsys):
    make_image_folder(workdir / "four", classes=4, per_class=3)
    last = trained / "checkpoints" / "last.ckpt"
    code, error = cli_error(capsys, tiny_args(workdir / "four", "--ckpt_path", str(last), subcommand="validate"))
    assert code == 2 and "has 4 class folders and the model 3 classes: class_3 are not among" in error
