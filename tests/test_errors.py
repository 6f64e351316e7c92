"""Every mistake a user can make on the command line ends in one line naming what to fix, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from .conftest import ROOT, make_image_folder

FAST = ["--data.image_size", "16", "--data.num_workers", "0", "--model.backbone", "resnet18",
        "--trainer.accelerator", "cpu", "--trainer.fast_dev_run", "true"]

# (case, arguments after the subcommand's data folder, the words the error line must hold)
CASES = [
    ("test without a test folder", ["test"], ["data.test_dir"]),
    ("predict without a predict path", ["predict"], ["data.predict_dir"]),
    ("val_fraction 0", ["fit", "--data.val_fraction", "0"], ["data.val_fraction", "between 0 and 1", "0.0"]),
    ("val_fraction 1.5", ["fit", "--data.val_fraction", "1.5"], ["data.val_fraction", "1.5"]),
    ("image_size 0", ["fit", "--data.image_size", "0"], ["data.image_size", "positive"]),
    ("odd batch with MixupCutmix", ["fit", "--data.batch_size", "7",
                                    "--trainer.callbacks+=lightning_resnet.callbacks.MixupCutmix"],
     ["data.batch_size", "even", "7"]),
    ("unknown backbone", ["fit", "--model.backbone", "resnet99"], ["unknown backbone 'resnet99'", "resnet18"]),
    ("missing data folder", ["fit", "--data.data_dir", "nowhere"], ["nowhere", "<class name>/<image files>"]),
    ("backbone option it does not take", ["fit", "--model.backbone_options", "{colour: red}"],
     ["model.backbone_options", "colour"]),
    ("missing weights file", ["fit", "--model.pretrained", "weights/none.pth"], ["weights/none.pth"]),
    ("a folder of one class", ["fit", "--data.data_dir", "one_class"], ["one_class", "two", "class_0"]),
    ("a truncated checkpoint", ["validate", "--ckpt_path", "truncated.ckpt"], ["ckpt_path truncated.ckpt"]),
    ("a corrupt weights file", ["fit", "--model.pretrained", "corrupt.pth"], ["corrupt.pth", "not a readable"]),
    ("an unknown key in a config", ["fit", "--config", "typo.yaml"], ["data.colour"]),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """All cases, run as real processes at the same time (each spends most of its time importing)."""
    root = tmp_path_factory.mktemp("errors")
    make_image_folder(root / "images", classes=3, per_class=4)
    make_image_folder(root / "one_class", classes=1, per_class=4)
    torch.save({"state_dict": {"weight": torch.zeros(1000)}}, root / "whole.ckpt")
    (root / "truncated.ckpt").write_bytes((root / "whole.ckpt").read_bytes()[:1500])
    (root / "corrupt.pth").write_bytes(b"\x80\x02 not a pickle at all")
    (root / "typo.yaml").write_text("data:\n  colour: red\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(root / "cache")}
    processes = {}
    for case, (subcommand, *args), _ in CASES:
        command = [sys.executable, "-m", "lightning_resnet", subcommand, "--data.data_dir", "images", *FAST, *args]
        processes[case] = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True)
    return {case: subprocess.CompletedProcess(p.args, p.wait(timeout=300), *p.communicate())
            for case, p in processes.items()}


@pytest.mark.parametrize(("case", "words"), [(case, words) for case, _, words in CASES], ids=[c[0] for c in CASES])
def test_a_user_error_is_one_line_naming_the_option(outcomes, case, words):
    outcome = outcomes[case]
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
    assert outcome.returncode == 2, outcome.stderr[-2000:]
    assert "Traceback" not in outcome.stderr
    assert len(errors) == 1 and errors[0] in outcome.stderr.strip().splitlines()[-2:]
    assert all(word in errors[0] for word in words), errors[0]
