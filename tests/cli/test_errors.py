"""Every mistake a user can make on the command line ends in one line naming what to fix, exit code 2."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from lightning_resnet.cli import main
from lightning_resnet.models import create_model

from ..conftest import make_image_folder

FAST = ["--data.image_size", "16", "--data.num_workers", "0", "--model.backbone", "resnet18",
        "--trainer.accelerator", "cpu", "--trainer.fast_dev_run", "true"]

# (case, arguments after the subcommand's data folder, the words the error line must hold)
CASES = [
    ("test without a test folder", ["test", "--model.pretrained", "resnet18.pth"], ["data.test_dir"]),
    ("predict without a predict path", ["predict", "--model.pretrained", "resnet18.pth"], ["data.predict_dir"]),
    ("validate without weights", ["validate"], ["validate needs trained weights", "--ckpt_path"]),
    ("weights of another depth", ["fit", "--model.pretrained", "resnet34.pth"],
     ["resnet34.pth", "does not fit the model", "--model.partial_weights true"]),
    ("a negative learning rate", ["fit", "--model.optimizer.init_args.lr", "-1"], ["model.optimizer", "-1"]),
    ("no training batches", ["fit", "--trainer.fast_dev_run", "false", "--trainer.max_epochs", "1",
                             "--trainer.limit_train_batches", "0"], ["trainer.limit_train_batches"]),
    ("a validation share that is no batch", ["fit", "--trainer.fast_dev_run", "false", "--trainer.max_epochs", "1",
                                             "--trainer.limit_val_batches", "0.0001"], ["limit_val_batches"]),
    ("negative epochs", ["fit", "--trainer.fast_dev_run", "false", "--trainer.max_epochs", "-3"],
     ["max_epochs", "-3"]),
    ("a text file as weights", ["fit", "--model.pretrained", "notes.txt"], ["notes.txt"]),
    ("a negative unfreeze epoch", ["fit", "--model.freeze_backbone", "true", "--model.unfreeze_at_epoch", "-1"],
     ["model.unfreeze_at_epoch", "-1"]),
    ("val_fraction 0", ["fit", "--data.val_fraction", "0"], ["data.val_fraction", "between 0 and 1", "0.0"]),
    ("val_fraction 1.5", ["fit", "--data.val_fraction", "1.5"], ["data.val_fraction", "1.5"]),
    ("image_size 0", ["fit", "--data.image_size", "0"], ["data.image_size", "positive"]),
    ("a zero side", ["fit", "--data.image_size", "[0, 32]"], ["data.image_size [0, 32]", "[height, width]"]),
    ("no unlabelled folder", ["fit", "--data.unlabelled_dir", "nowhere"], ["data.unlabelled_dir nowhere",
                                                                             "does not exist"]),
    ("an empty unlabelled folder", ["fit", "--data.unlabelled_dir", "empty"], ["data.unlabelled_dir empty",
                                                                              "holds no image files"]),
    ("a threshold of 1.5", ["fit", "--data.unlabelled_dir", "one_image", "--model.semi_supervised.threshold", "1.5"],
     ["model.semi_supervised.threshold", "(0, 1]", "1.5"]),
    ("an unlabelled ratio of 0", ["fit", "--data.unlabelled_dir", "one_image", "--data.unlabelled_ratio", "0"],
     ["data.unlabelled_ratio", "got 0"]),
    ("an unknown method", ["fit", "--data.unlabelled_dir", "one_image", "--model.semi_supervised.method", "mixmatch"],
     ["model.semi_supervised.method", "fixmatch, freematch", "mixmatch"]),
    ("a method without images", ["fit", "--model.semi_supervised.method", "fixmatch"],
     ["model.semi_supervised needs data.unlabelled_dir"]),
    ("resuming from a best checkpoint", ["fit", "--ckpt_path", "whole.ckpt"],
     ["--ckpt_path whole.ckpt holds the weights alone", "--model.pretrained whole.ckpt"]),
    ("three sides", ["fit", "--data.image_size", "[16, 16, 16]"], ["data.image_size [16, 16, 16]", "[height, width]"]),
    ("a resize mode there is not", ["fit", "--data.resize", "stretch"], ["data.resize", "stretch", "squish", "pad"]),
    ("a letterbox level out of range", ["fit", "--data.resize", "pad", "--data.pad_fill", "300"],
     ["data.pad_fill 300", "0 to 255"]),
    ("odd batch with MixupCutmix", ["fit", "--data.batch_size", "7",
                                    "--trainer.callbacks+=lightning_resnet.callbacks.MixupCutmix"],
     ["data.batch_size", "even", "7"]),
    ("unknown backbone", ["fit", "--model.backbone", "resnet99"],
     ["unknown backbone 'resnet99'; valid names: resnet18, resnet34"]),
    ("missing data folder", ["fit", "--data.data_dir", "nowhere"], ["nowhere", "<class name>/<image files>"]),
    ("backbone option it does not take", ["fit", "--model.backbone_options", "{colour: red}"],
     ["model.backbone_options", "colour"]),
    ("three stage widths", ["fit", "--model.backbone_options", "{channels: [16, 32, 64]}"],
     ["model.backbone_options", "channels must give 4 positive widths", "[16, 32, 64]"]),
    ("default-width weights on a narrow network", ["fit", "--model.pretrained", "stem64.pth",
                                                   "--model.backbone_options", "{channels: [16, 32, 64, 128]}"],
     ["stem64.pth", "not this architecture", "conv1.weight", "(16, 3, 7, 7)"]),
    ("missing weights file", ["fit", "--model.pretrained", "weights/none.pth"], ["weights/none.pth"]),
    ("a folder of one class", ["fit", "--data.data_dir", "one_class"], ["one_class", "two", "class_0"]),
    ("a truncated checkpoint", ["validate", "--ckpt_path", "truncated.ckpt"],
     ["ckpt_path truncated.ckpt", "truncated or damaged"]),
    ("convert without an output folder", ["convert"], ["convert needs --output"]),
    ("a corrupt weights file", ["fit", "--model.pretrained", "corrupt.pth"], ["corrupt.pth", "not a readable"]),
    ("an unknown key in a config", ["fit", "--config", "typo.yaml"], ["data.colour"]),
    ("timm weights of another architecture", ["fit", "--model.backbone", "resnet50", "--model.pretrained",
                                              "timm:resnet18.a1_in1k"], ["resnet18", "resnet50"]),
    ("a torchvision weight the architecture lacks", ["fit", "--model.pretrained", "torchvision:IMAGENET1K_V9"],
     ["IMAGENET1K_V9", "IMAGENET1K_V1"]),
    ("lr_find with no steps", ["lr_find", "--num_training", "0"], ["--num_training", "at least 2"]),
    ("a backbone learning-rate factor of 0", ["fit", "--model.backbone_lr_factor", "0"],
     ["model.backbone_lr_factor", "positive"]),
    ("a ResNet-D weight without the deep stem", ["fit", "--model.backbone", "resnet50", "--model.pretrained",
                                                 "timm:resnet50d.a1_in1k"], ["stem: deep"]),
    ("a folder mixing split and class folders", ["fit", "--data.data_dir", "mixed"], ["mixed", "train", "class_0"]),
    ("split folders whose classes differ", ["fit", "--data.data_dir", "split_differs"],
     ["split_differs/val", "only in val/: class_9", "in train/ but without images in val/: class_2"]),
    ("a val folder lacking a class", ["fit", "--data.data_dir", "val_lacks"],
     ["in train/ but without images in val/: class_2"]),
    ("split folders without train/", ["fit", "--data.data_dir", "no_train"], ["no train/"]),
    ("k-fold on a pre-split folder", ["fit", "--data.data_dir", "presplit", "--data.num_folds", "3"],
     ["data.num_folds", "split already"]),
    ("a fold out of range", ["fit", "--data.num_folds", "3", "--data.fold", "3"], ["data.fold", "got 3"]),
    ("one fold", ["fit", "--data.num_folds", "1"], ["data.num_folds", "2 or more"]),
    ("cross_validate without num_folds", ["cross_validate"], ["data.num_folds", "cross_validate"]),
    ("class weights of the wrong length", ["fit", "--model.class_weights", "[1, 2]"],
     ["model.class_weights", "3 positive numbers"]),
    ("an unknown sampler", ["fit", "--data.sampler", "oversample"], ["data.sampler", "oversample"]),
    ("predicting a text file", ["predict", "--model.pretrained", "resnet18.pth", "--data.predict_dir", "notes.txt"],
     ["notes.txt", "not an image file"]),
    ("a mean without a std", ["fit", "--data.normalize", "{mean: [0.5, 0.5, 0.5]}"], ["data.normalize", "mean"]),
    ("more folds than a class has images", ["cross_validate", "--data.num_folds", "1000"],
     ["data.num_folds 1000", "class_0 has 4", "at most 4 folds"]),
    ("a missing exclude file", ["fit", "--data.exclude", "edited.csv"], ["data.exclude edited.csv", "'path' column"]),
    ("an exclude file without a path column", ["fit", "--data.exclude", "notes.txt"],
     ["data.exclude notes.txt", "no 'path' column"]),
    ("an excluded path not in the folder", ["fit", "--data.exclude", "elsewhere.csv"],
     ["data.exclude elsewhere.csv", "1 path(s) name no image of images", "gone.png"]),
    ("a relabel file without a label column", ["fit", "--data.relabel", "elsewhere.csv"],
     ["data.relabel elsewhere.csv", "no 'label' column"]),
    ("a relabel to an unknown class", ["fit", "--data.relabel", "unknown_class.csv"],
     ["data.relabel unknown_class.csv", "cat is not a class", "class_0, class_1, class_2"]),
    ("an image both excluded and relabelled", ["fit", "--data.exclude", "unknown_class.csv", "--data.relabel",
                                               "unknown_class.csv"], ["both name", "000.jpg"]),
    ("cache_features without a frozen backbone", ["fit", "--model.cache_features", "true"],
     ["model.cache_features", "model.freeze_backbone true"]),
    ("cache_features with a random augmentation",
     ["fit", "--model.freeze_backbone", "true", "--model.cache_features", "true"],
     ["model.cache_features", "train_augment basic", "standard"]),
    ("inspect predictions that are no cross-validation", ["inspect", "--predictions", "images"],
     ["--predictions images", "oof_predictions.csv", "crossval_N"]),
    ("pretraining on a missing folder", ["pretrain", "--data.data_dir", "nowhere"],
     ["data.data_dir nowhere", "does not exist"]),
    ("pretraining on an empty folder", ["pretrain", "--data.data_dir", "empty"],
     ["data.data_dir empty", "holds no image files"]),
    ("pretraining on one image", ["pretrain", "--data.data_dir", "one_image"], ["data.data_dir one_image", "two"]),
    ("a view option lightly's transform lacks", ["pretrain", "--data.view_options", "{colour: red}"],
     ["data.view_options", "colour"]),
    ("pretraining's best checkpoint", ["pretrain", "--ckpt_path", "best"], ["--ckpt_path best", "last"]),
    ("an unknown pretraining method", ["pretrain", "--model.method", "moco"], ["model.method", "simclr", "moco"]),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A working folder with the images, files and configs the cases point at."""
    root = tmp_path_factory.mktemp("errors")
    make_image_folder(root / "images", classes=3, per_class=4)
    make_image_folder(root / "one_class", classes=1, per_class=4)
    make_image_folder(root / "mixed" / "train", classes=2, per_class=3)
    make_image_folder(root / "mixed", classes=1, per_class=3)
    for name in ("split_differs", "val_lacks", "presplit"):
        make_image_folder(root / name / "train", classes=3, per_class=3)
    make_image_folder(root / "split_differs" / "val", classes=2, per_class=2)
    make_image_folder(root / "split_differs" / "val" / "class_9", classes=1, per_class=1)
    make_image_folder(root / "val_lacks" / "val", classes=3, per_class=2)
    for image in (root / "val_lacks" / "val" / "class_2").iterdir():
        image.unlink()
    make_image_folder(root / "presplit" / "val", classes=3, per_class=2)
    make_image_folder(root / "no_train" / "val", classes=2, per_class=2)
    make_image_folder(root / "no_train" / "test", classes=2, per_class=2)
    torch.save({"state_dict": {"weight": torch.zeros(1000)}}, root / "whole.ckpt")
    (root / "truncated.ckpt").write_bytes((root / "whole.ckpt").read_bytes()[:1500])
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, root / "stem64.pth")
    (root / "corrupt.pth").write_bytes(b"\x80\x02 not a pickle at all")
    (root / "typo.yaml").write_text("data:\n  colour: red\n")
    torch.save(create_model("resnet18", num_classes=3).state_dict(), root / "resnet18.pth")
    torch.save(create_model("resnet34", num_classes=3).state_dict(), root / "resnet34.pth")
    (root / "notes.txt").write_text("learning rate 1e-3 worked best\n")
    (root / "elsewhere.csv").write_text("path\nimages/class_0/001.png\nimages/class_0/gone.png\n")
    (root / "unknown_class.csv").write_text("path,label\nimages/class_0/000.jpg,cat\n")
    (root / "empty").mkdir()
    (root / "one_image").mkdir()
    shutil.copy(next((root / "images" / "class_0").iterdir()), root / "one_image")
    return root


def command(case: str) -> list[str]:
    subcommand, *args = next(arguments for name, arguments, _ in CASES if name == case)
    return [subcommand, "--data.data_dir", "images", *FAST, *args]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(("case", "words"), [(case, words) for case, _, words in CASES], ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_naming_the_option(folder, monkeypatch, capsys, caplog, case, words):
    caplog.set_level(logging.INFO)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder / "cache"))
    with pytest.raises(SystemExit) as exit_code:
        main(command(case))
    stderr = capsys.readouterr().err
    errors = error_lines(stderr)
    assert exit_code.value.code == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    assert len(errors) == 1 and errors[0] in stderr.strip().splitlines()[-2:]
    assert all(word in errors[0] for word in words) and "[Errno" not in errors[0], errors[0]
    start_up = [record.getMessage() for record in caplog.records
                if record.getMessage().startswith(("Seed set", "GPU available", "TPU available"))]
    assert not start_up, start_up  # the refusal alone: no seed or accelerator lines before it
