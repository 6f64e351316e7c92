"""``compare``: runs side by side from what they wrote, only the keys that differ, the best epoch's scores."""

from __future__ import annotations

import csv
import shutil

import pytest

from lightning_resnet.cli import main
from lightning_resnet.training.checkpoints import best_checkpoint, best_checkpoint_of_run

from ..conftest import tiny_args


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, trained_once):
    """The shared tiny fit, a run that differs from it by the seed alone and one with label smoothing (on the
    same images); their best val/acc."""
    root = tmp_path_factory.mktemp("three_runs")
    shutil.copytree(trained_once, root / "logs")
    scores = [best_checkpoint_of_run(root / "logs/tiny/version_0").score]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for extra in (["--seed_everything", "7"], ["--model.label_smoothing", "0.1"]):
            run = main(tiny_args(trained_once.parent / "images", "--trainer.max_epochs", "2", *extra))
            scores.append(best_checkpoint(run.trainer).score)
    return root / "logs" / "tiny", scores


@pytest.mark.slow
def test_compare_shows_the_keys_that_differ_and_groups_runs_that_differ_by_seed(three_runs, capsys):
    experiment, scores = three_runs
    main(["compare", str(experiment)])
    printed = capsys.readouterr().out
    header = printed.splitlines()[1]
    assert "model.label_smoothing" in header and "model.backbone" not in header and "data.data_dir" not in header
    with open(experiment / "compare.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [int(row["runs"]) for row in sorted(table, key=lambda row: row["model.label_smoothing"])] == [2, 1]
    seeded = next(row for row in table if row["model.label_smoothing"] == "0.0")
    assert float(seeded["val/acc"]) == pytest.approx((scores[0] + scores[1]) / 2)
    smoothed = next(row for row in table if row["model.label_smoothing"] == "0.1")
    assert float(smoothed["val/acc"]) == pytest.approx(scores[2]) and float(smoothed["epochs"]) == 2
    ranked = [float(row["val/acc"]) for row in table]
    assert ranked == sorted(ranked, reverse=True)


def test_compare_of_two_runs_prints_their_differences(three_runs, capsys):
    experiment, scores = three_runs
    main(["compare", str(experiment / "version_0"), str(experiment / "version_2")])
    printed = capsys.readouterr().out
    assert "model.label_smoothing: 0 -> 0.1" in printed
    assert f"val/acc: {scores[0]:.4g} -> {scores[2]:.4g} ({scores[2] - scores[0]:+.4f})" in printed


def test_the_table_of_several_run_folders_is_written_where_they_meet_or_to_output(three_runs, workdir, capsys):
    experiment, _ = three_runs
    (experiment / "compare.csv").unlink(missing_ok=True)
    runs = [str(experiment / f"version_{number}") for number in range(3)]
    main(["compare", *runs])
    assert f"written to {experiment / 'compare.csv'}" in capsys.readouterr().out
    assert not any((experiment / f"version_{number}" / "compare.csv").exists() for number in range(3))
    main(["compare", *runs, "--output", "tables/three.csv"])
    with open(workdir / "tables/three.csv", newline="") as handle:
        assert sum(int(row["runs"]) for row in csv.DictReader(handle)) == 3


@pytest.mark.parametrize(("make", "words"), [
    (lambda root: root.mkdir(), ["holds no run"]),
    (lambda root: (root / "version_0" / "checkpoints").mkdir(parents=True) or
     (root / "version_0" / "config.yaml").write_text("model: {}\n"), ["no validated checkpoint yet"]),
])
def test_a_folder_without_runs_or_scores_is_one_line(workdir, capsys, make, words):
    make(workdir / "empty")
    with pytest.raises(SystemExit) as exit_code:
        main(["compare", str(workdir / "empty")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1 and all(word in lines[0] for word in words), lines


def test_an_evaluation_run_given_as_one_of_two_is_named_as_not_a_fit_run(three_runs, workdir, capsys):
    experiment, _ = three_runs
    validated = workdir / "logs/tiny/version_3"  # what `validate --ckpt_path best` writes beside the fit runs
    validated.mkdir(parents=True)
    (validated / "config.yaml").write_text("model: {}\n")
    (validated / "report_val.txt").write_text("accuracy 1.0\n")
    with pytest.raises(SystemExit) as exit_code:
        main(["compare", str(experiment / "version_0"), str(validated)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1, lines
    assert "not a fit run" in lines[0] and str(validated) in lines[0], lines
