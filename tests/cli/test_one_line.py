"""What a new user met, each now one line naming the option or the file and what was expected (exit code 2), nothing
written: jsonargparse's type errors (rewritten in one place, :mod:`lightning_resnet.cli.parser_errors`), files that are
not what a command needs, and outputs named otherwise than their format."""

from __future__ import annotations

import json

import pytest

from lightning_resnet.cli import main
from lightning_resnet.cli.parser_errors import one_line

from ..conftest import cli_error, read_rows, run_cli, tiny_args


def only_line(error: str) -> str:
    lines = [line for line in error.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in error, error
    return lines[0]


@pytest.mark.parametrize(("args", "words"), [
    (["fit", "--data.image_size", "abc"], ["data.image_size abc", "expected a whole number"]),
    (["fit", "--data.train_augment", "strong"], ["data.train_augment strong", "basic", "autoaugment"]),
    (["fit", "--model.distillation.weight", "0.3"], ["model.distillation needs model.distillation.teacher"]),
    (["fit", "--model.class_weights", "bal"], ["model.class_weights bal", "balanced", "a list", "null"]),
    (["pretrain", "--data.normalize", "auto"], ["data.normalize auto", "imagenet", "a mapping"]),
    (["export", "--ckpt_path", "x.ckpt", "--format", "tflite"],
     ["--format tflite", "onnx, openvino, torch_export or timm"]),
    (["serve", "--model", "x.ckpt", "--port", "eighty"], ["--port eighty", "a whole number"]),
], ids=["a number", "a choice", "a class needing an argument", "a union", "pretrain's normalize", "export's format",
        "serve's port"])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_option_the_value_and_what_it_takes(workdir, capsys, args,
                                                                                            words):
    code, error = cli_error(capsys, args)
    line = only_line(error)
    assert code == 2 and all(word in line for word in words), line
    assert f"see: python -m lightning_resnet {args[0]} --help" in error
    assert not (workdir / "logs").exists()


def test_the_rewriting_keeps_what_it_does_not_know_on_one_line():
    assert one_line("Option 'trainer.nope' is not accepted\n  in fit") == "Option 'trainer.nope' is not accepted in fit"
    assert one_line('Parser key "data.seed": Expected a <class \'int\'>. Got value: x', "--") == \
        "--data.seed x: expected a whole number"


@pytest.mark.parametrize(("args", "words"), [
    (["validate", "--ckpt_path", "notes.ckpt"], ["--ckpt_path notes.ckpt is not a checkpoint", "a text file"]),
    (["fit", "--model.distillation.teacher", "notes.ckpt"],
     ["model.distillation.teacher notes.ckpt is not a checkpoint", "a text file"]),
    (["export", "--ckpt_path", "notes.ckpt"], ["--ckpt_path notes.ckpt is not a checkpoint", "a text file"]),
    (["predict_onnx", "--model", "best.ckpt", "--input", "images"],
     ["--model best.ckpt: expected an exported model (.onnx, .xml)", "a checkpoint: export it first"]),
], ids=["validate", "a teacher", "export", "predict_onnx given a checkpoint"])
def test_a_file_that_is_not_what_the_command_needs_is_one_line(trained, workdir, capsys, args, words):
    (workdir / "notes.ckpt").write_text("not a checkpoint at all\n")
    (workdir / "best.ckpt").write_bytes(next((trained / "checkpoints").glob("best-*.ckpt")).read_bytes())
    extra = tiny_args(workdir / "images", "--trainer.max_epochs", "1")[1:] if args[0] == "fit" else []
    code, error = cli_error(capsys, [*args, *extra])
    line = only_line(error)
    assert code == 2 and all(word in line for word in words), line


@pytest.mark.parametrize(("format", "output", "expected"), [
    ("openvino", "q.onnx", ".xml"), ("torch_export", "t.onnx", ".pt2"), ("onnx", "x.xml", ".onnx"),
], ids=["openvino into .onnx", "torch_export into .onnx", "onnx into .xml"])
def test_an_export_named_otherwise_than_its_format_is_refused_before_anything_is_written(trained, workdir, capsys,
                                                                                         format, output, expected):
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    code, error = cli_error(capsys, ["export", "--ckpt_path", str(best), "--format", format, "--output",
                                     str(workdir / "shipped" / output)])
    line = only_line(error)
    assert code == 2 and f"--output {workdir / 'shipped' / output}" in line and f"writes a {expected} file" in line
    assert not (workdir / "shipped").exists()


@pytest.mark.slow
def test_two_exports_of_one_checkpoint_each_keep_their_own_description_and_predictions(trained, workdir):
    """The ONNX and the OpenVINO export of one checkpoint, and predict_onnx over each (OpenVINO in processes of its
    own: its thread pool must not be loaded in the test process, which forks)."""
    best = next((trained / "checkpoints").glob("best-*.ckpt"))
    onnx, xml = best.with_suffix(".onnx"), best.with_suffix(".xml")
    main(["export", "--ckpt_path", str(best)])
    main(["predict_onnx", "--model", str(onnx), "--input", str(workdir / "holdout")])
    run_cli(workdir, "export", "--ckpt_path", str(best), "--format", "openvino")
    run_cli(workdir, "predict_onnx", "--model", str(xml), "--input", str(workdir / "holdout"))

    described = {path: json.loads(path.with_name(path.name + ".json").read_text()) for path in (onnx, xml)}
    assert described[onnx]["export"]["format"] == "onnx" and described[xml]["export"]["format"] == "openvino"
    for path in (onnx, xml):
        assert path.with_name(path.name + ".predictions.csv").read_text().count("\n") == 10  # a header and 9 images
    # the float OpenVINO file answers as the ONNX program it was converted from (32-bit weights and arithmetic)
    from_onnx, from_openvino = ({row["path"]: row for row in read_rows(path.with_name(path.name + ".predictions.csv"))}
                                for path in (onnx, xml))
    assert from_onnx.keys() == from_openvino.keys()
    for path, row in from_onnx.items():
        assert from_openvino[path]["prediction"] == row["prediction"]
        assert float(from_openvino[path]["confidence"]) == pytest.approx(float(row["confidence"]), abs=1e-4)
