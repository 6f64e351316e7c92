"""Several labels per image through the command line: ``fit`` on a labels file of label sets trains a sigmoid per
label chosen by its validation mAP and chooses each label's threshold; ``validate``, ``predict``, ``export`` and
``predict_onnx`` read the task and the thresholds from the checkpoint (or the export)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.cli.predict_onnx import predictions_file
from lightning_resnet.data import read_split_csv

from ..conftest import (
    LABEL_CORNERS,
    decision_in,
    description_of,
    make_label_sets,
    read_rows,
    tiny_args,
)

LABELS = sorted(LABEL_CORNERS)


@pytest.fixture(scope="module")
def label_sets_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """One 6-epoch fit on 64 images of label sets: the folder it ran in, its best checkpoint and what it printed."""
    root = tmp_path_factory.mktemp("label_sets")
    labels = make_label_sets(root / "sets", count=64)
    previous = os.getcwd()
    os.chdir(root)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            main(tiny_args(root / "sets", "--data.labels", str(labels), "--trainer.max_epochs", "6"))
    finally:
        os.chdir(previous)
    return root, next((root / "logs" / "tiny" / "version_0" / "checkpoints").glob("best-*.ckpt")), printed.getvalue()


def truth_of(labels: Path) -> dict[str, set[str]]:
    """Each image's label set, by file name."""
    return {line.split(",")[0].split("/")[-1]: set(line.split(",")[1].split())
            for line in labels.read_text().splitlines()[1:]}


@pytest.mark.slow
def test_fit_chooses_by_map_and_thresholds_which_validate_and_predict_read(label_sets_run, monkeypatch):
    root, best, printed = label_sets_run
    monkeypatch.chdir(root)
    assert "-mAP" in best.name  # chosen by the validation mAP
    saved = torch.load(best, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["task"] == "multilabel"
    thresholds = torch.tensor(decision_in(best)["label_thresholds"])
    chosen = re.search(r"label thresholds chosen on \d+ validation images, each maximising its F1 \(0.5 where that "
                       r"is within two images' worth of it\): (.*) \(stored in "
                       + re.escape(str(best.relative_to(root))), printed)
    assert chosen.group(1) == ", ".join(f"{name} {value:.2f}" for name, value in zip(LABELS, thresholds.tolist()))
    split = read_split_csv(best.parent.parent / "split.csv")
    for name in LABELS:  # every label in both parts
        assert {row["split"] for row in split if name in row["class"].split()} == {"train", "val"}, name

    validated = main(["validate", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false"])
    assert validated.model.task.name == "multilabel"
    assert torch.equal(torch.tensor(validated.model.decision.label_thresholds), thresholds)
    report = (Path(validated.trainer.logger.log_dir) / "report_val.txt").read_text()
    assert "mean average precision" in report and all(f"  {name} " in report for name in LABELS), report
    exact_set = float(re.search(r"exact-set accuracy\s+([\d.]+)", report).group(1))
    figures = {path.name for path in Path(validated.trainer.logger.log_dir).glob("*.png")}
    assert figures == {"precision_recall_val.png"} | ({"mistakes_val.png"} if exact_set < 1 else set()), figures

    predicted = main(["predict", "--ckpt_path", str(best), "--data.predict_dir", str(root / "sets" / "images"),
                      "--trainer.enable_progress_bar", "false"])
    rows = read_rows(Path(predicted.trainer.logger.log_dir) / "predictions.csv")
    truth = truth_of(root / "sets" / "labels.csv")
    assert len(rows) == 64 and list(rows[0])[2:6] == [f"probability_{name}" for name in LABELS]
    exact = sum(set(row["labels"].split()) == truth[Path(row["path"]).name] for row in rows) / 64
    assert exact > 0.5, exact  # 14 label sets: chance is 1/14
    for row in rows:  # a label is predicted exactly when its probability reaches its threshold
        chosen = {name for index, name in enumerate(LABELS)
                  if float(row[f"probability_{name}"]) >= float(thresholds[index]) - 1e-6}
        assert chosen == set(row["labels"].split()), row


@pytest.mark.slow
def test_export_predict_onnx_and_the_server_answer_the_label_sets_predict_gives(label_sets_run, tmp_path,
                                                                                 monkeypatch, capsys):
    """The export carries the task and the thresholds; predict_onnx and the server's inference worker (its setup,
    a batch, the answers) give each image the labels predict gives it."""
    from lightning_resnet.serving.api import ClassifierAPI
    from lightning_resnet.serving.served import ServedModel, identity
    from lightning_resnet.serving.uploads import UploadLimits, prepare

    root, best, _ = label_sets_run
    monkeypatch.chdir(tmp_path)
    images = root / "sets" / "images"
    main(["export", "--ckpt_path", str(best), "--output", str(tmp_path / "model.onnx")])
    main(["predict_onnx", "--model", str(tmp_path / "model.onnx"), "--input", str(images)])
    exported = {row["path"]: row for row in read_rows(predictions_file(tmp_path / "model.onnx"))}
    predicted = main(["predict", "--ckpt_path", str(best), "--data.predict_dir", str(images),
                      "--trainer.enable_progress_bar", "false"])
    rows = read_rows(Path(predicted.trainer.logger.log_dir) / "predictions.csv")
    for row in rows:
        assert exported[row["path"]]["labels"] == row["labels"], row["path"]
        for name in LABELS:
            assert float(exported[row["path"]][f"probability_{name}"]) == pytest.approx(
                float(row[f"probability_{name}"]), abs=1e-4)

    api = ClassifierAPI(ServedModel(best, *identity(best), top_k=3, reject_below=0.0), None, UploadLimits(), 8)
    ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
    signal.signal(signal.SIGINT, ctrl_c)
    crops = np.stack([prepare(Path(row["path"]).read_bytes(), api.model.view, UploadLimits()) for row in rows[:8]])
    for row, said in zip(rows, api.predict(crops)):
        answered = api.encode_response(said)["answer"]  # what /predict answers
        assert " ".join(answered["labels"]) == row["labels"], (answered, row)
        assert [each["label"] for each in answered["probabilities"]] == LABELS
        assert answered["probabilities"][0]["probability"] == pytest.approx(float(row[f"probability_{LABELS[0]}"]),
                                                                            abs=1e-5)

    from lightning_resnet.serving.page import Demo, build_page  # the demo page's calls, without a browser

    demo = Demo(api.model, api.served)
    for row in rows[:4]:
        chart, overlay, verdict = demo.classify({"path": row["path"]})
        assert sorted(chart) == LABELS and overlay is not None
        assert verdict.startswith(f"**{', '.join(row['labels'].split())}**" if row["labels"] else "**No label**")
    assert "every label's probability" in build_page(api.model, api.served, [], "").config["components"].__repr__()


def probabilities_by_path(best: Path, folder: Path) -> dict[str, list[float]]:
    """What ``predict`` gives each image of ``folder``: every label's probability, in LABELS' order."""
    predicted = main(["predict", "--ckpt_path", str(best), "--data.predict_dir", str(folder),
                      "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.name", "probabilities"])
    return {row["path"]: [float(row[f"probability_{name}"]) for name in LABELS]
            for row in read_rows(Path(predicted.trainer.logger.log_dir) / "predictions.csv")}


@pytest.mark.slow
def test_suggest_and_pseudo_label_take_a_label_sets_model_by_each_labels_decision(label_sets_run, tmp_path,
                                                                                 monkeypatch, capsys):
    """suggest ranks label sets by their least certain label; pseudo_label keeps an image when every label's decision
    is sure (given at or above the confidence, left out at or below one minus it), and fit takes its label sets."""
    from lightning_resnet.tasks import MULTI_LABEL, decision_from

    root, best, _ = label_sets_run
    monkeypatch.chdir(root)
    pool = make_label_sets(tmp_path / "pool", count=24, seed=7).parent / "images"
    decision = decision_from(decision_in(best), len(LABELS))
    probabilities = probabilities_by_path(best, pool)
    main(["suggest", "--ckpt_path", str(best), "--data.predict_dir", str(pool), "--budget", "5",
          "--output", str(tmp_path / "suggested")])
    picks = read_rows(tmp_path / "suggested" / "to_label.csv")
    assert len(picks) == 5 and [int(row["rank"]) for row in picks] == [1, 2, 3, 4, 5]
    for row in picks:
        scores = torch.tensor([probabilities[row["path"]]])
        assert float(row["uncertainty"]) == pytest.approx(float(MULTI_LABEL.uncertainty(scores, decision)), abs=1e-3)
        assert row["predicted"] == MULTI_LABEL.answers(scores, decision, LABELS)[0]

    main(["pseudo_label", "--ckpt_path", str(best), "--data.predict_dir", str(pool), "--min_confidence", "0.7",
          "--output", str(tmp_path / "pseudo_labels.csv")])
    pseudo = read_rows(tmp_path / "pseudo_labels.csv")
    thresholds = decision.label_thresholds
    sure = {path for path, row in probabilities.items()
            if all(p >= 0.7 if p >= at else p <= 0.3 for p, at in zip(row, thresholds))
            and any(p >= at for p, at in zip(row, thresholds))}
    assert {row["path"] for row in pseudo} == sure and sure, (len(sure), len(probabilities))
    for row in pseudo:
        given = [name for name, p, at in zip(LABELS, probabilities[row["path"]], decision.label_thresholds) if p >= at]
        assert row["label"] == " ".join(given) and row["energy_score"] == ""

    student = main(tiny_args(root / "sets", "--data.labels", str(root / "sets" / "labels.csv"), "--data.extra_labels",
                             str(tmp_path / "pseudo_labels.csv"), "--trainer.max_epochs", "1",
                             "--trainer.logger.init_args.name", "with_pseudo_labels"))
    listed = {row["path"]: row for row in read_split_csv(Path(student.trainer.log_dir) / "split.csv")}
    assert {listed[row["path"]]["class"] for row in pseudo} == {row["label"] for row in pseudo}
    assert {listed[row["path"]]["split"] for row in pseudo} == {"pseudo"}


@pytest.mark.slow
def test_int8_is_checked_by_map_and_exact_sets_and_a_teacher_teaches_each_label(label_sets_run, tmp_path,
                                                                                monkeypatch):
    from lightning_resnet.tasks import MULTI_LABEL

    root, best, _ = label_sets_run
    monkeypatch.chdir(root)
    int8 = tmp_path / "sets.int8.onnx"
    main(["export", "--ckpt_path", str(best), "--quantize", "int8", "--calibration_images", "16",
          "--keep_accuracy_drop", "true", "--output", str(int8)])
    measured = description_of(int8)["export"]["quantization"]
    chosen_by = torch.load(best, weights_only=True)["epoch_metrics"]
    assert measured["float_mAP"] == pytest.approx(chosen_by["val/mAP"], abs=1e-4)
    assert measured["float_exact_match"] == pytest.approx(chosen_by["val/exact_match"], abs=1e-4)
    assert {"int8_mAP", "int8_exact_match", "set_agreement"} <= set(measured)
    main(["predict_onnx", "--model", str(int8), "--input", str(root / "sets" / "images")])
    assert len(read_rows(predictions_file(int8))) == 64

    # each label's KL divergence between the two Bernoulli distributions, averaged, times T²
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    p, q = torch.sigmoid(teacher / 2), torch.sigmoid(student / 2)
    by_hand = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * 4
    assert MULTI_LABEL.distillation_loss(student, teacher, 2.0).item() == pytest.approx(by_hand.item(), rel=1e-4)
    assert MULTI_LABEL.distillation_loss(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    taught = main(tiny_args(root / "sets", "--data.labels", str(root / "sets" / "labels.csv"),
                            "--model.distillation.teacher", str(best), "--trainer.max_epochs", "1",
                            "--trainer.logger.init_args.name", "taught"))
    assert taught.model.teacher is not None and taught.model.teacher.task is MULTI_LABEL


def test_a_labels_threshold_maximises_its_f1_half_way_between_scores():
    from lightning_resnet.tasks.label_thresholds import best_f1_threshold, choose_label_thresholds

    # positives scored 0.30-0.48, negatives 0.00-0.20: F1 is 0 at 0.5, 1 from half-way between 0.20 and 0.30
    scores = torch.cat([torch.linspace(0.30, 0.48, 10), torch.linspace(0.0, 0.20, 10)])
    positives = torch.cat([torch.ones(10), torch.zeros(10)])
    assert best_f1_threshold(scores.numpy(), positives.numpy() == 1) == pytest.approx(0.25)
    # one negative at 0.55 among positives from 0.6 up: moving the threshold gains one image's worth of F1
    near = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.2])
    assert best_f1_threshold(near, np.array([1, 1, 1, 1, 0, 0]) == 1) == 0.5
    both = choose_label_thresholds(torch.stack([scores, scores], dim=1), torch.stack([positives, 0 * positives], 1))
    assert both.tolist() == pytest.approx([0.25, 0.5])  # a label no image has keeps the default


def test_the_multi_label_losses_smooth_towards_one_half_and_asymmetric_is_timms():
    from timm.loss import AsymmetricLossMultiLabel

    from lightning_resnet.errors import UserError
    from lightning_resnet.tasks import MULTI_LABEL, SINGLE_LABEL

    logits, targets = torch.randn(6, 4), (torch.rand(6, 4) > 0.5).float()
    smoothed = MULTI_LABEL.loss(0.2, "bce", False)(logits, targets)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets * 0.8 + 0.1)
    assert torch.allclose(smoothed, expected)
    asymmetric = MULTI_LABEL.loss(0.0, "asymmetric", False)(logits, targets)
    assert torch.allclose(asymmetric, AsymmetricLossMultiLabel(reduction="mean")(logits, targets))
    with pytest.raises(UserError, match="model.multilabel_loss asymmetric is a loss of several labels per image"):
        SINGLE_LABEL.loss(0.0, "asymmetric", False)


@pytest.mark.slow  # a process per fold
def test_cross_validation_writes_every_labels_out_of_fold_probability_which_inspect_reads(tmp_path, monkeypatch,
                                                                                        capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    labels = make_label_sets(tmp_path / "sets", count=24)
    main(["cross_validate", *tiny_args(tmp_path / "sets", "--data.labels", str(labels), "--data.num_folds", "2",
                                       "--trainer.max_epochs", "1")[1:]])
    group = tmp_path / "logs" / "tiny" / "crossval_0"
    table = read_rows(group / "cross_validation.csv")
    assert [row["fold"] for row in table] == ["0", "1", "mean", "std"] and "val/mAP" in table[0]
    rows = read_rows(group / "oof_predictions.csv")
    truth = truth_of(labels)
    assert sorted(Path(row["path"]).name for row in rows) == sorted(truth)
    for row in rows:
        assert set(row["label"].split()) == truth[Path(row["path"]).name]
        probabilities = [float(row[f"p_{name}"]) for name in LABELS]
        assert all(0.0 <= value <= 1.0 for value in probabilities), row
        thresholds = decision_in(next((group / f"fold_{row['fold']}" / "checkpoints").glob("best-*.ckpt")))[
            "label_thresholds"]
        assert row["prediction"].split() == [name for name, value, at in zip(LABELS, probabilities, thresholds)
                                             if value >= at - 1e-5], row

    capsys.readouterr()
    main(["inspect", "--predictions", str(group), "--data.labels", str(labels), "--data.image_size", "16"])
    printed = capsys.readouterr().out
    assert "label errors: " in printed and "outliers: " in printed, printed
    written = Path(re.search(r"wrote (\S+)/duplicates.csv", printed).group(1))
    issues = read_rows(written / "label_issues.csv")  # each a label set, and what its fold model predicts
    assert all(set(row["label"].split()) == truth[Path(row["path"]).name] for row in issues), issues
