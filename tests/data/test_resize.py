"""Images of any shape: ``data.resize`` (``crop``, ``squish``, ``pad``) and a ``[height, width]`` ``data.image_size``,
from the command line to every place the model's input is made (the views, the checkpoint, export, serve, CAM)."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_resnet.cli import main
from lightning_resnet.cli.predict_onnx import predictions_file
from lightning_resnet.data import Geometry
from lightning_resnet.reports.cam import place_in_original
from lightning_resnet.serving.api import ClassifierAPI
from lightning_resnet.serving.served import ServedModel, identity
from lightning_resnet.serving.uploads import UploadLimits, prepare
from lightning_resnet.training import tta

from ..conftest import description_of, make_edge_label_sets, read_rows, tiny_args

EDGE_FIT = ["--trainer.max_epochs", "6", "--data.batch_size", "8", "--data.crop_scale", "[0.85, 1.0]",
            "--data.hflip", "0.0", "--data.val_fraction", "0.3"]


@pytest.fixture(scope="module")
def edges(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("edges")
    make_edge_label_sets(root, count=60)
    return root


def fit_edges(root: Path, name: str, *options: str):
    return main(tiny_args(root, "--data.labels", str(root / "labels.csv"), *EDGE_FIT,
                          "--trainer.logger.init_args.name", name, *options))


@pytest.mark.slow
def test_a_label_at_the_edge_of_a_wide_image_is_learned_whole_and_lost_to_a_centre_crop(edges, monkeypatch,
                                                                                        capsys, recwarn):
    """3:1 images whose labels are squares at the ends and in the middle, at a 16 px square input: the default for
    label sets (``pad``) and ``squish`` see both ends and learn them; ``crop`` keeps the centre third, says so at the
    start, and learns the middle alone."""
    monkeypatch.chdir(edges)
    scores = {}
    for mode in ("default", "squish", "crop"):
        cli = fit_edges(edges, mode, *(["--data.resize", mode] if mode != "default" else []))
        scores[mode] = float(cli.trainer.checkpoint_callback.best_model_score)
        said = [str(warning.message) for warning in recwarn if "data.resize crop" in str(warning.message)]
        recwarn.clear()
        if mode == "crop":
            assert said and "drops" in said[0] and "--data.resize pad" in said[0], said
        else:
            assert not said
    assert cli.datamodule.geometry.resize == "crop"
    assert scores["default"] >= 0.95 and scores["squish"] >= 0.95, scores
    # the middle is learned, but the ends' average precision is about their share of the images (a third)
    assert scores["crop"] <= 0.8, scores

    capsys.readouterr()
    main(["inspect", "--data.labels", str(edges / "labels.csv"), "--data.image_size", "16"])
    printed = capsys.readouterr().out
    assert "aspect ratio (width / height): min 3.00" in printed and "median 3.00" in printed


@pytest.mark.slow
def test_a_rectangular_size_trains_exports_and_serves_with_the_checkpoints_answers(edges, monkeypatch, capsys):
    """[16, 32] letterboxed: the checkpoint remembers the shape and the mode, predict and the ONNX program (run by
    predict_onnx and by serve's worker) give the same answers, and the overlays cover the image as it was."""
    monkeypatch.chdir(edges)
    fit_edges(edges, "rectangle", "--data.image_size", "[16, 32]", "--data.resize", "pad", "--data.pad_fill", "20",
              "--trainer.max_epochs", "2")
    best = next((edges / "logs/rectangle/version_0/checkpoints").glob("best-*.ckpt"))
    validated = main(["validate", "--ckpt_path", str(best)])
    assert validated.datamodule.geometry == Geometry(16, 32, "pad", 0.875, 20)
    five_crops = main(["validate", "--ckpt_path", str(best), "--model.tta", "five_crop"])  # of the rectangle
    assert five_crops.model.tta == "five_crop" and "val/mAP" in five_crops.trainer.callback_metrics
    assert [tuple(view.shape) for view in tta.test_time_views(torch.zeros(2, 3, 16, 32), "five_crop")] == \
        [(2, 3, 16, 32)] * 5
    new = edges / "new"
    new.mkdir()
    for path in sorted((edges / "images").iterdir())[:6]:
        (new / path.name).write_bytes(path.read_bytes())
    predicted = main(["predict", "--ckpt_path", str(best), "--data.predict_dir", str(new), "--predictions.cam",
                      "true"])
    run = Path(predicted.trainer.log_dir)
    from_checkpoint = {row["path"]: row for row in read_rows(run / "predictions.csv")}
    overlay = Image.open(run / "cam" / "000.png")
    assert overlay.size[0] / overlay.size[1] == pytest.approx(3.0)  # the whole 3:1 image, enlarged

    main(["export", "--ckpt_path", str(best)])
    exported = best.with_suffix(".onnx")
    described = description_of(exported)["export"]["input"]
    assert described["shape"] == ["batch", 3, 16, 32] and "bars of level 20" in described["preprocessing"]
    main(["predict_onnx", "--model", str(exported), "--input", str(new)])
    from_onnx = {row["path"]: row for row in read_rows(predictions_file(exported))}
    assert from_onnx.keys() == from_checkpoint.keys()
    labels = ("left", "middle", "right")
    for path, row in from_checkpoint.items():
        assert from_onnx[path]["labels"] == row["labels"]
        for label in labels:
            assert float(from_onnx[path][f"probability_{label}"]) == pytest.approx(float(row[f"probability_{label}"]),
                                                                                   abs=1e-4)

    api = ClassifierAPI(ServedModel(exported, *identity(exported), top_k=2, reject_below=None), None,
                        UploadLimits(), 4)
    ctrl_c = signal.getsignal(signal.SIGINT)
    api.setup("cpu")  # a worker ignores Ctrl-C (its server stops it): this process must not
    signal.signal(signal.SIGINT, ctrl_c)
    crops = np.stack([prepare(Path(path).read_bytes(), api.model.view, UploadLimits()) for path in from_onnx])
    assert crops.shape[1:] == (3, 16, 32)
    for path, said in zip(from_onnx, api.predict(crops)):
        answer = api.encode_response(said)["answer"]
        assert " ".join(answer["labels"]) == from_onnx[path]["labels"]
        for given in answer["probabilities"]:
            assert given["probability"] == pytest.approx(float(from_onnx[path][f"probability_{given['label']}"]),
                                                         abs=1e-4)


def test_each_mode_fits_the_whole_image_or_its_centre():
    wide = torch.full((3, 20, 60), 200, dtype=torch.uint8)
    wide[:, :, :10] = 10  # a dark left end
    padded = Geometry(32, 32, "pad", fill=7).fit(wide)
    assert padded.shape == (3, 32, 32)
    assert int(padded[0, 0, 0]) == 7 and int(padded[0, 31, 0]) == 7  # bars above and below, of the fill
    assert int(padded[0, 16, 0]) < 50  # the dark end is in
    squished = Geometry(32, 32, "squish").fit(wide)
    assert squished.shape == (3, 32, 32) and int(squished[0, 16, 0]) < 50
    cropped = Geometry(32, 32, "crop", crop_fraction=1.0).fit(wide)
    assert cropped.shape == (3, 32, 32) and int(cropped[0, 16, 0]) > 150  # the centre: the dark end is cut away
    tall = Geometry(16, 32, "crop", crop_fraction=1.0).fit(torch.zeros(3, 90, 30, dtype=torch.uint8))
    assert tall.shape == (3, 16, 32)
    assert Geometry(32, 32, "crop").dropped_share(20, 60) == pytest.approx(1 - (20 * 0.875) ** 2 / (20 * 60),
                                                                           abs=0.01)
    assert Geometry(32, 32, "pad").dropped_share(20, 60) == 0.0


@pytest.mark.parametrize("mode", ["crop", "squish", "pad"])
def test_a_map_of_the_view_goes_back_where_the_view_came_from(mode):
    """A map lit only in the view's top-left quarter lands on the part of the original the quarter showed."""
    geometry = Geometry(32, 32, mode, crop_fraction=1.0)
    (top, left, height, width), (source_top, source_left, _, _) = geometry.where_the_view_came_from(40, 120)
    heat = torch.zeros(32, 32)
    heat[top: top + height // 2, left: left + width // 2] = 1.0
    placed = place_in_original(heat, (40, 120), geometry)
    lit = np.argwhere(np.nan_to_num(placed) > 0.5)
    assert lit[:, 0].max() < 22 and lit[:, 1].min() >= round(source_left) - 1
    expected_right = {"crop": 40 + 20, "squish": 60, "pad": 60}[mode]  # the centre 40 x 40, or half the width
    assert abs(int(lit[:, 1].max()) + 1 - expected_right) <= 2, (mode, lit[:, 1].max())
    if mode == "crop":
        assert np.isnan(placed[:, :30]).all()  # the crop never showed the left end
