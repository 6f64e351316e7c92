"""Several labels per image through the command line: ``fit`` on a labels file of label sets trains a sigmoid per
label chosen by its validation mAP, chooses each label's threshold, and ``validate`` and ``predict`` read the task and
the thresholds from the checkpoint."""

from __future__ import annotations

import torch

from lightning_resnet.cli import main
from lightning_resnet.data import read_split_csv

from ..conftest import LABEL_CORNERS, make_label_sets, read_rows, tiny_args


def test_fit_validate_and_predict_label_sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    labels = make_label_sets(tmp_path / "sets", count=64)
    truth = {f"images/{line.split(',')[0].split('/')[-1]}": set(line.split(",")[1].split())
             for line in labels.read_text().splitlines()[1:]}
    run = main(tiny_args(tmp_path / "sets", "--data.labels", str(labels), "--trainer.max_epochs", "6"))

    folder = tmp_path / "logs" / "tiny" / "version_0"
    best = next((folder / "checkpoints").glob("best-*.ckpt"))
    assert "-mAP" in best.name  # chosen by the validation mAP
    saved = torch.load(best, map_location="cpu", weights_only=True)
    assert saved["hyper_parameters"]["task"] == "multilabel"
    thresholds = saved["state_dict"]["label_thresholds"]
    assert thresholds.shape == (4,) and torch.equal(thresholds, run.model.label_thresholds.cpu())
    split = read_split_csv(folder / "split.csv")
    for name in LABEL_CORNERS:  # every label in both parts
        assert {row["split"] for row in split if name in row["class"].split()} == {"train", "val"}, name

    validated = main(["validate", "--ckpt_path", str(best), "--trainer.enable_progress_bar", "false"])
    assert validated.model.multilabel and torch.equal(validated.model.label_thresholds.cpu(), thresholds)
    report = (tmp_path / "logs" / "default" / "version_0" / "report_val.txt").read_text()
    assert "mean average precision" in report and all(f"  {name} " in report for name in LABEL_CORNERS), report

    main(["predict", "--ckpt_path", str(best), "--data.predict_dir", str(tmp_path / "sets" / "images"),
          "--trainer.enable_progress_bar", "false"])
    rows = read_rows(tmp_path / "logs" / "default" / "version_1" / "predictions.csv")
    assert len(rows) == 64 and list(rows[0])[2:6] == [f"probability_{name}" for name in sorted(LABEL_CORNERS)]
    exact = sum(set(row["labels"].split()) == truth[f"images/{row['path'].split('/')[-1]}"] for row in rows) / 64
    assert exact > 0.5, exact  # 14 label sets: chance is 1/14
    for row in rows:  # a label is predicted exactly when its probability reaches its threshold
        chosen = {name for index, name in enumerate(sorted(LABEL_CORNERS))
                  if float(row[f"probability_{name}"]) >= float(thresholds[index]) - 1e-6}
        assert chosen == set(row["labels"].split()), row
