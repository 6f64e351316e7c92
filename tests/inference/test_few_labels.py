"""The images nobody labelled: ``pseudo_label`` writes the model's confident answers, which ``fit --data.extra_labels``
trains on (training part only); ``suggest`` orders the rest for a person to label."""

from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from lightning_resnet.cli import main
from lightning_resnet.data.extra_labels import PSEUDO
from lightning_resnet.inference.suggestions import UNLIKE_LABELLED, suggest_images
from lightning_resnet.tasks.single_label import margin_uncertainty

from ..conftest import cli_error, datamodule, make_image_folder, read_rows, tiny_args


@pytest.fixture
def unlabelled(trained, workdir):
    """Images of the model's three classes made with another seed, in a folder of their own."""
    return make_image_folder(workdir / "unlabelled", classes=3, per_class=4, seed=9)


@pytest.mark.slow  # 1.8-2.9 s in make check's fresh-clone run (pyproject.toml's marker: 1.7 s or more)
def test_pseudo_labels_are_the_confident_predictions_and_join_the_training_part_only(trained, workdir, unlabelled,
                                                                                   capsys):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    main(["pseudo_label", "--ckpt_path", str(best), "--data.predict_dir", "unlabelled", "--min_confidence", "0.4"])
    output = trained / "pseudo_labels.csv"
    assert f"wrote {output.relative_to(workdir)}" in capsys.readouterr().out
    pseudo = {row["path"]: row for row in read_rows(output)}
    main(tiny_args(workdir / "images", "--ckpt_path", str(best), "--data.predict_dir", "unlabelled",
                   "--trainer.logger.init_args.name", "predicted", subcommand="predict"))
    predicted = read_rows(workdir / "logs/predicted/version_0/predictions.csv")
    confident = {row["path"]: row for row in predicted if row["unsure"] == "false" and float(row["confidence"]) >= 0.4}
    assert pseudo.keys() == confident.keys() and 0 < len(pseudo) < 12, (len(pseudo), len(predicted))
    for path, row in pseudo.items():
        assert row["label"] == confident[path]["prediction"]
        assert float(row["confidence"]) == pytest.approx(float(confident[path]["confidence"]), abs=1e-5)

    run = main(tiny_args(workdir / "images", "--data.extra_labels", str(output), "--trainer.max_epochs", "1"))
    rows = read_rows(workdir / "logs/tiny/version_1/split.csv")  # version_0: the shared fit the labels came from
    labels = {(workdir / path).resolve(): row["label"] for path, row in pseudo.items()}
    assert {(workdir / row["path"]).resolve(): row["class"] for row in rows if row["split"] == PSEUDO} == labels
    assert not any("unlabelled" in row["path"] for row in rows if row["split"] != PSEUDO)  # never val or test
    assert len(run.datamodule.train_set) == sum(row["split"] == "train" for row in rows) + len(pseudo)

    # the file that run trained on is not written over: a resume of it would read other labels
    written = output.read_text()
    with pytest.raises(SystemExit) as exit_code:
        main(["pseudo_label", "--ckpt_path", str(best), "--data.predict_dir", "unlabelled", "--min_confidence", "0.9"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1 and "data.extra_labels of logs/tiny/version_1" in lines[0]
    assert output.read_text() == written


@pytest.mark.parametrize(("command", "extra", "words"), [
    ("suggest", ["--budget", "0"], ["--budget", "at least 1", "got 0"]),
    ("suggest", ["--budget", "3", "--data.predict_dir", "images"], ["holds only labelled images"]),
    ("pseudo_label", ["--data.predict_dir", "nowhere"], ["data.predict_dir nowhere", "does not exist"]),
    ("suggest", ["--budget", "3", "--data.predict_dir", "empty"], ["data.predict_dir empty", "holds no image files"]),
    ("pseudo_label", ["--min_confidence", "0"], ["--min_confidence", "(0, 1]"]),
])
def test_a_bad_option_of_the_unlabelled_commands_is_one_line(trained, workdir, unlabelled, capsys, command, extra,
                                                            words):
    (workdir / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_code:
        main([command, "--ckpt_path", str(trained / "checkpoints/last.ckpt"), "--data.predict_dir", "unlabelled",
              *extra])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1 and all(word in lines[0] for word in words), lines


@pytest.mark.parametrize(("name", "rows", "words"), [
    ("inside.csv", "path,label\nimages/class_0/001.png,class_0\n", ["line 2", "labelled folder"]),
    ("unknown.csv", "path,label\nunlabelled/class_0/001.png,cat\n", ["line 2", "'cat' is not a class"]),
    ("missing.csv", "path,label\nunlabelled/gone.png,class_0\n", ["line 2", "does not exist"]),
    ("columns.csv", "path\nunlabelled/class_0/001.png\n", ["no 'label' column"]),
])
def test_a_bad_extra_labels_file_is_one_line_naming_it(workdir, unlabelled, capsys, name, rows, words):
    (workdir / name).write_text(rows)
    with pytest.raises(SystemExit) as exit_code:
        main(tiny_args(workdir / "images", "--data.extra_labels", name, "--trainer.fast_dev_run", "true"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_code.value.code == 2 and len(lines) == 1 and f"data.extra_labels {name}" in lines[0], lines
    assert all(word in lines[0] for word in words), lines


def test_suggest_ranks_the_unseen_and_the_blank_above_images_like_the_training_ones_never_a_labelled_one(
        trained, workdir, unlabelled, capsys):
    shutil.copy(workdir / "images/class_1/004.png", unlabelled / "copy_of_a_labelled_image.png")
    Image.new("RGB", (40, 32), (255, 255, 255)).save(unlabelled / "blank.png")
    unseen = make_image_folder(workdir / "other", classes=5, per_class=1, seed=3) / "class_4" / "000.jpg"
    shutil.copy(unseen, unlabelled / "unseen_class.jpg")
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    main(["suggest", "--ckpt_path", str(best), "--data.predict_dir", "unlabelled", "--budget", "14"])
    assert "14 of 14 unlabelled images to label next" in capsys.readouterr().out
    ranked = read_rows(trained / "to_label.csv")
    names = [row["path"].removeprefix("unlabelled/") for row in ranked]
    assert len(set(names)) == len(names) == 14 and "copy_of_a_labelled_image.png" not in names
    assert [int(row["rank"]) for row in ranked] == list(range(1, 15))
    assert names[0] == "unseen_class.jpg" and ranked[0]["why"] == UNLIKE_LABELLED, names
    clean = sorted(rank for rank, name in enumerate(names) if name.startswith("class_"))  # like the training images
    assert names.index("blank.png") < clean[len(clean) // 2], names  # above most of them
    assert (trained / "to_label.png").stat().st_size > 5000


def test_a_pick_covers_its_near_copies_so_the_next_pick_is_another_case():
    """Five near-copies of one uncertain image and one other, a little less uncertain: two picks take one of each
    (uncertainty alone would take two copies)."""
    features = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]]) + torch.randn(6, 2) * 1e-3
    probabilities = torch.tensor([[0.5, 0.5]] * 5 + [[0.6, 0.4]])
    labelled = torch.tensor([[0.7, 0.7]])
    picks = suggest_images(features, margin_uncertainty(probabilities), labelled, budget=2)
    assert [pick.rank for pick in picks] == [1, 2] and {pick.index < 5 for pick in picks} == {True, False}
    assert margin_uncertainty(probabilities)[0] == pytest.approx(1.0)
    assert margin_uncertainty(probabilities)[5] == pytest.approx(0.8)


def test_fewer_distinct_images_than_the_budget_still_give_the_budget_in_distinct_picks():
    features = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]])  # two distinct images, five to pick from
    probabilities = torch.tensor([[0.5, 0.5]] * 4 + [[0.9, 0.1]])
    picks = suggest_images(features, margin_uncertainty(probabilities), torch.tensor([[0.7, 0.7]]), budget=4)
    assert len({pick.index for pick in picks}) == 4 and [pick.rank for pick in picks] == [1, 2, 3, 4]
    assert 4 in {pick.index for pick in picks}  # the other kind of image, though the least uncertain


def test_an_extra_label_on_a_copy_of_a_validation_image_is_refused(workdir, capsys):
    """The copy lies outside the labelled folder, so only its bytes tell: trained on, it would leak the validation
    image into training."""
    path, _, name = next(row for row in datamodule(workdir / "images").source.split_rows() if row[1] == "val")
    validated = {"path": path, "class": name}
    copy = workdir / "elsewhere" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(validated["path"], copy)
    (workdir / "extra.csv").write_text(f"path,label\n{copy},{validated['class']}\n")
    code, error = cli_error(capsys, tiny_args(workdir / "images", "--data.extra_labels", str(workdir / "extra.csv"),
                                              "--trainer.fast_dev_run", "true"))
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and f"{copy} is a copy of the held-out image {validated['path']}" in lines[0]
