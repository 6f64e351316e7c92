""""None of these": the energy score, the unsure threshold fit chooses on the validation split, how it travels
(checkpoint, export) and how predictions report it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.cli.predict_onnx import predictions_file
from lightning_resnet.data import read_split_csv
from lightning_resnet.tasks import SINGLE_LABEL, Decision
from lightning_resnet.tasks.energy import NO_THRESHOLD, choose_reject_below, energy_score

from ..conftest import decision_in, description_of, read_rows, tiny_args


def verdicts(probabilities, calibrated_logits, temperature, class_names, top_k, reject_below):
    """The verdicts of a single-label model of this temperature and threshold."""
    return Decision(SINGLE_LABEL, temperature, reject_below).verdicts(probabilities, calibrated_logits, class_names,
                                                                      top_k)


def test_the_threshold_keeps_the_asked_share_of_the_correctly_classified():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 4, generator=generator).mul(3)
    targets = torch.randint(0, 4, (1000,), generator=generator)
    correct = logits.argmax(dim=1) == targets
    scores = energy_score(logits / 2.0, 2.0)[correct]
    assert torch.allclose(scores, 2.0 * torch.logsumexp(logits.double()[correct] / 2.0, dim=1))
    for keep in (0.5, 0.9, 0.95, 1.0):
        threshold = choose_reject_below(logits / 2.0, targets, 2.0, keep)
        assert (scores >= threshold).double().mean() >= keep  # kept at least the share asked for
        # and the next observed value up would keep fewer: it is the lowest threshold that does
        assert (scores > threshold).double().mean() <= keep + 1 / len(scores)
    assert choose_reject_below(logits / 2.0, targets, 2.0, 1.0) == pytest.approx(float(scores.min()))
    assert choose_reject_below(logits, (logits.argmax(dim=1) + 1) % 4, 1.0) == NO_THRESHOLD  # none correct


def test_the_energy_score_ranks_what_a_float32_softmax_rounds_to_1():
    """Two confident images the calibrated top probability cannot tell apart, and the score can."""
    logits = torch.tensor([[40.0, 0.0, 0.0], [25.0, 0.0, 0.0]])
    assert torch.equal(logits.softmax(dim=1).max(dim=1).values, torch.ones(2))
    assert energy_score(logits, 1.0)[0] > energy_score(logits, 1.0)[1]


def test_a_verdict_is_the_top_classes_and_unsure_below_the_threshold():
    logits = torch.tensor([[0.0, 2.0, 1.0], [0.0, 9.0, 1.0]])
    said = verdicts(logits.softmax(dim=1), logits, 1.0, ["a", "b", "c"], 2, reject_below=5.0)
    assert [each.prediction for each in said] == ["b", "b"] and [len(each.top) for each in said] == [2, 2]
    assert said[0].top[1][0] == "c" and said[0].confidence == pytest.approx(float(logits.softmax(dim=1)[0, 1]))
    assert [each.unsure for each in said] == [True, False]
    assert not any(each.unsure for each in verdicts(logits.softmax(1), logits, 1.0, ["a", "b", "c"], 5, NO_THRESHOLD))


@pytest.mark.slow
def test_fit_stores_the_threshold_predict_and_export_report_it(trained, workdir):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    threshold = decision_in(best)["reject_below"]
    assert math.isfinite(threshold)
    val_folder = workdir / "val"
    for row in read_split_csv(trained / "split.csv"):  # the validation images, made again by workdir
        if row["split"] == "val":
            target = val_folder / row["class"] / Path(row["path"]).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(workdir / "images" / row["class"] / Path(row["path"]).name)
    rows = {}
    for name, extra in (("stored", []), ("all", ["--predictions.reject_below", "1e9"]),
                        ("none", ["--predictions.reject_below=-1e9"])):
        main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", str(val_folder),
                       "--trainer.logger.init_args.name", name, *extra, subcommand="predict"))
        rows[name] = read_rows(workdir / "logs" / name / "version_0" / "predictions.csv")
    stored = rows["stored"]
    # (the CSV's six decimals, and other batches than validation's, blur the image at the threshold itself)
    assert all(row["unsure"] == str(float(row["energy_score"]) < threshold).lower() for row in stored
               if abs(float(row["energy_score"]) - threshold) > 1e-5)
    correct = [float(row["energy_score"]) for row in stored if row["prediction"] == row["path"].split("/")[-2]]
    assert correct and min(correct) == pytest.approx(threshold, abs=1e-5)  # 95 % of 6 or fewer keeps them all
    assert {row["unsure"] for row in rows["all"]} == {"true"} and {row["unsure"] for row in rows["none"]} == {"false"}

    model = workdir / "shipped" / "model.onnx"
    main(["export", "--ckpt_path", str(best), "--output", str(model)])
    assert description_of(model)["decision"]["reject_below"] == pytest.approx(threshold)
    main(["predict_onnx", "--model", str(model), "--input", str(val_folder)])
    from_onnx = read_rows(predictions_file(model))
    assert all(abs(float(a["energy_score"]) - float(b["energy_score"])) < 1e-4 for a, b in zip(from_onnx, stored))
    assert all(a["unsure"] == b["unsure"] for a, b in zip(from_onnx, stored)
               if abs(float(b["energy_score"]) - threshold) > 1e-4)


def test_keep_correct_out_of_range_is_one_line(workdir, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(workdir / "images", "--calibration.keep_correct", "1.5"))
    error = capsys.readouterr().err
    assert exit_code.value.code == 2 and "calibration.keep_correct must be in (0, 1], got 1.5" in error


@pytest.mark.parametrize(("command", "words"), [
    (["predict", "--predictions.reject_below", ".nan"], "predictions.reject_below must be an energy score"),
    (["predict_onnx", "--reject_below", "nan"], "--reject_below must be an energy score"),
], ids=["predict", "predict_onnx"])
def test_a_threshold_that_is_no_probability_is_one_line(trained, workdir, capsys, command, words):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    if command[0] == "predict":
        args = tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", str(workdir / "holdout"),
                         *command[1:], subcommand="predict")
    else:
        args = [*command, "--model", str(workdir / "model.onnx"), "--input", str(workdir / "holdout")]
    with pytest.raises(SystemExit) as exit_code:
        main(args)
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_code.value.code == 2 and len(errors) == 1 and words in errors[0], errors
