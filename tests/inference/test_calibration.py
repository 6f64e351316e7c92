"""Temperature scaling after fit: it lowers the validation NLL and ECE of an over-confident model, travels
in the checkpoint, and changes predict's probabilities but never its top-1."""

from __future__ import annotations

import contextlib
import io
import math
import os
import random
import re
import shutil
from pathlib import Path

import pytest
import torch

from lightning_resnet.bundle import BUNDLE_KEY
from lightning_resnet.cli import main
from lightning_resnet.tasks.temperature import fit_temperature, mean_nll

from ..conftest import decision_in, make_image_folder, read_rows, tiny_args

CALIBRATION_LINE = re.compile(r"calibration on (\d+) validation images: temperature ([\d.]+); "
                              r"NLL ([\d.]+) -> ([\d.]+), ECE ([\d.]+) -> ([\d.]+)")


HALF_WIDTH = ["--model.backbone_options", "{stem: cifar, channels: [32, 64, 128, 256]}"]
VALIDATION = ["--data.val_fraction", "0.6"]


def noisy_labels(root: Path, share: float = 0.3) -> Path:
    """A learnable folder where ``share`` of the images sit in a random class folder: a model that
    memorises them is sure of itself on validation images it gets wrong."""
    make_image_folder(root, classes=3, per_class=54, size=(16, 16))
    rng = random.Random(0)
    for path in sorted(root.rglob("*.*")):
        if rng.random() < share:
            shutil.move(path, root / f"class_{rng.randrange(3)}" / f"moved_{path.parent.name}_{path.name}")
    return root




@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> tuple[Path, str]:
    """An over-confident fit (5 epochs on noisy labels, 97 of the 162 images held out: a temperature is fitted on
    96 validation images or more); its folder and output.

    A ResNet-18 at half its width memorises the moved images within 5 epochs (temperature 1.96; the full width,
    about 3, took 13 s here against 4.5 s); the quarter width of ``tiny_args`` had not by then, and its best
    checkpoint came from before it was over-confident."""
    root = tmp_path_factory.mktemp("calibration")
    noisy_labels(root / "noisy")
    previous = os.getcwd()
    os.chdir(root)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            main(tiny_args(root / "noisy", *VALIDATION, "--trainer.max_epochs", "5", *HALF_WIDTH))
    finally:
        os.chdir(previous)
    return root, printed.getvalue()


@pytest.mark.slow
def test_the_fitted_temperature_lowers_validation_nll_and_ece_and_is_stored(calibrated):
    root, printed = calibrated
    found = CALIBRATION_LINE.search(printed)
    assert found, printed[-2000:]
    images, temperature, nll_before, nll_after, ece_before, ece_after = found.groups()
    assert int(images) == 97
    assert float(temperature) > 1  # over-confident: the probabilities are flattened
    assert float(nll_after) < float(nll_before) and float(ece_after) < float(ece_before)
    best = next((root / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt"))
    stored = decision_in(best)["temperature"]
    assert float(stored) == pytest.approx(float(temperature), abs=1e-3)
    last = decision_in(root / "logs/tiny/version_0/checkpoints/last.ckpt")
    assert float(last["temperature"]) == 1.0  # the one to resume from keeps the raw model


@pytest.mark.slow
def test_the_temperature_changes_predicted_probabilities_never_the_class(calibrated, monkeypatch, capsys):
    root, _ = calibrated
    monkeypatch.chdir(root)
    best = next((root / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt"))
    raw = root / "raw.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    checkpoint[BUNDLE_KEY]["decision"]["temperature"] = 1.0
    torch.save(checkpoint, raw)
    rows = {}
    for name, path in (("calibrated", best), ("raw", raw)):
        main(tiny_args(root / "noisy", *HALF_WIDTH, "--ckpt_path", str(path), "--data.predict_dir", str(root / "noisy"),
                       "--trainer.logger.init_args.name", name, subcommand="predict"))
        rows[name] = read_rows(root / "logs" / name / "version_0" / "predictions.csv")
    assert [row["prediction"] for row in rows["calibrated"]] == [row["prediction"] for row in rows["raw"]]
    assert all(float(a["confidence"]) < float(b["confidence"]) for a, b in zip(rows["calibrated"], rows["raw"])
               if float(b["confidence"]) < 0.999)

    main(tiny_args(root / "noisy", *HALF_WIDTH, *VALIDATION, "--ckpt_path", str(best), subcommand="validate"))
    report = capsys.readouterr().out
    assert re.search(r"ECE\s+[\d.]+ \(15 bins; calibrated: temperature [\d.]+ fitted on the validation split\)",
                     report)
    assert (root / "logs/tiny/version_1/calibration_val.png").exists()


@pytest.mark.parametrize(("option", "said"), [
    ("false", "temperature 1 (model.calibrate is off); unsure below"),
    ("true", "temperature 1 (fewer than 96 validation images: a temperature fitted on so few made the NLL of other "
             "images worse); unsure below"),
], ids=["calibrate false", "6 validation images"])
def test_without_a_temperature_to_fit_it_stays_1_and_the_threshold_is_still_chosen(workdir, capsys, option, said):
    main(tiny_args(workdir / "images", "--trainer.max_epochs", "1", "--model.calibrate", option))
    assert said in capsys.readouterr().out
    best = next((workdir / "logs/tiny/version_0/checkpoints").glob("best-*.ckpt"))
    state = decision_in(best)
    assert float(state["temperature"]) == 1.0 and math.isfinite(float(state["reject_below"]))


def test_fit_temperature_recovers_the_temperature_that_made_the_logits_over_confident():
    generator = torch.Generator().manual_seed(0)
    honest = torch.randn(4000, 5, generator=generator) * 2
    targets = torch.multinomial(honest.softmax(dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(honest * 3.0, targets) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(honest / 2.0, targets) == pytest.approx(0.5, rel=0.05)
    nll = [mean_nll(honest * 3.0, targets, temperature) for temperature in (1.0, 3.0)]
    assert nll[1] < nll[0]
