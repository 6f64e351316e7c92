""""None of these": the unsure threshold fit chooses on the validation split, how it travels (checkpoint,
export) and how predictions report it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.data import read_split_csv
from lightning_resnet.inference.verdict import choose_reject_below, verdict

from ..conftest import read_rows, tiny_args


def test_the_threshold_keeps_the_asked_share_of_the_correctly_classified():
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.randn(1000, 4, generator=generator).mul(3).softmax(dim=1)
    targets = torch.randint(0, 4, (1000,), generator=generator)
    confidence, predicted = probabilities.max(dim=1)
    correct = confidence[predicted == targets]
    for keep in (0.5, 0.9, 0.95, 1.0):
        threshold = choose_reject_below(probabilities, targets, keep)
        assert (correct >= threshold).float().mean() >= keep  # kept at least the share asked for
        # and the next observed value up would keep fewer: it is the lowest threshold that does
        assert (correct > threshold).float().mean() <= keep + 1 / len(correct)
    assert choose_reject_below(probabilities, targets, 1.0) == pytest.approx(float(correct.min()))
    assert choose_reject_below(probabilities, (predicted + 1) % 4) == 0.0  # none correct: nothing to keep


def test_verdict_is_the_top_classes_and_unsure_below_the_threshold():
    said = verdict(torch.tensor([0.1, 0.6, 0.3]), ["a", "b", "c"], 2, reject_below=0.7)
    assert said.top == (("b", pytest.approx(0.6)), ("c", pytest.approx(0.3))) and said.unsure
    assert not verdict(torch.tensor([0.1, 0.6, 0.3]), ["a", "b", "c"], 5, reject_below=0.6).unsure


def test_fit_stores_the_threshold_predict_and_export_report_it(trained, workdir):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    threshold = float(torch.load(best, weights_only=True)["state_dict"]["reject_below"])
    assert 0 < threshold < 1
    val_folder = workdir / "val"
    for row in read_split_csv(trained / "split.csv"):  # the validation images, made again by workdir
        if row["split"] == "val":
            target = val_folder / row["class"] / Path(row["path"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(workdir / "images" / row["class"] / Path(row["path"]).name)
    rows = {}
    for name, extra in (("stored", []), ("all", ["--predictions.reject_below", "1.0"]),
                        ("none", ["--predictions.reject_below", "0"])):
        main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", str(val_folder),
                       "--trainer.logger.init_args.name", name, *extra, subcommand="predict"))
        rows[name] = read_rows(workdir / "logs" / name / "version_0" / "predictions.csv")
    stored = rows["stored"]
    # (the CSV's six decimals, and other batches than validation's, blur the image at the threshold itself)
    assert all(row["unsure"] == str(float(row["confidence"]) < threshold).lower() for row in stored
               if abs(float(row["confidence"]) - threshold) > 2e-6)
    correct = [float(row["confidence"]) for row in stored if row["prediction"] == row["path"].split("/")[-2]]
    assert correct and min(correct) == pytest.approx(threshold, abs=2e-6)  # 95 % of 6 or fewer keeps them all
    assert {row["unsure"] for row in rows["all"]} == {"true"} and {row["unsure"] for row in rows["none"]} == {"false"}

    model = workdir / "shipped" / "model.onnx"
    main(["export", "--ckpt_path", str(best), "--output", str(model)])
    assert json.loads(model.with_suffix(".json").read_text())["reject_below"] == pytest.approx(threshold)
    main(["predict_onnx", "--model", str(model), "--input", str(val_folder)])
    from_onnx = read_rows(model.with_suffix(".predictions.csv"))
    assert [row["unsure"] for row in from_onnx] == [row["unsure"] for row in stored]


def test_keep_correct_out_of_range_is_one_line(workdir, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(workdir / "images", "--calibration.keep_correct", "1.5"))
    error = capsys.readouterr().err
    assert exit_code.value.code == 2 and "calibration.keep_correct must be in (0, 1], got 1.5" in error
