"""Folders as users have them: a missing or wrong data folder is one line naming it and the layout; empty class
folders are left out with a warning; hidden, stray and upper-case files are handled as a user expects."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ..conftest import cli_error, datamodule, tiny_args


@pytest.mark.parametrize("case", ["missing", "a file", "no class folders"])
def test_bad_data_dir_is_one_line_naming_the_path_and_layout(workdir, capsys, case):
    target = workdir / "bad"
    if case == "a file":
        target.write_text("not a folder")
    elif case == "no class folders":
        target.mkdir()
        (target / "loose.jpg").write_bytes(b"")
    code, error = cli_error(capsys, tiny_args(target, "--trainer.fast_dev_run", "true"))
    assert code == 2
    assert error.count("\n") == 1 and "Traceback" not in error
    assert str(target) in error and f"expected {target}/<class name>/<image files>" in error


def test_an_empty_class_folder_is_warned_about_and_left_out(image_folder):
    (image_folder / "class_9").mkdir()
    with pytest.warns(UserWarning, match="left out 1 empty class folder.*class_9"):
        assert datamodule(image_folder).class_names == ["class_0", "class_1", "class_2"]


def test_stray_hidden_and_upper_case_files(image_folder):
    folder = image_folder / "class_0"
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "._001.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (folder / "notes.txt").write_text("photographer's notes")
    (image_folder / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(folder / "UPPER.JPG")
    Image.new("RGB", (12, 12), (1, 2, 3)).save(folder / "Mixed.Png", format="PNG")
    data = datamodule(image_folder)
    paths = {Path(path).name for path, _ in data.source.split()[0] + data.source.split()[1]}
    assert {"UPPER.JPG", "Mixed.Png"} <= paths
    assert not {".DS_Store", "._001.png", "notes.txt"} & paths
    assert data.class_names == ["class_0", "class_1", "class_2"]
