"""The start-up check: empty, truncated and undecodable files are found from their headers and last bytes alone,
listed once and left out; what it accepts decodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lightning_resnet.data import load_image, unreadable_reason

from ..conftest import datamodule


def broken_files(folder: Path) -> dict[str, str]:
    """A zero-byte, a truncated JPEG, a truncated PNG and a text file named as an image."""
    good = folder / "001.png"
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    png = good.read_bytes()
    (folder / "cut.png").write_bytes(png[: len(png) // 2])
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image")
    return {"cut.jpg": "truncated JPEG", "cut.png": "truncated PNG", "zero.jpg": "empty file", "text.png": ""}


def test_broken_files_are_found_at_setup_listed_once_and_left_out(image_folder, monkeypatch):
    expected = broken_files(image_folder / "class_1")

    def no_full_decode(self, *args, **kwargs):
        raise AssertionError("the start-up check decoded a whole image")

    Image.init()  # import every format plugin first: some build small images when imported
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_full_decode)
    with pytest.warns(UserWarning) as caught:
        data = datamodule(image_folder, group_duplicates=False)  # the check alone: no hashes, no decoding
        train, val = data.source.split()
    messages = [str(w.message) for w in caught if "unreadable" in str(w.message)]
    assert len(messages) == 1 and "left out 4 unreadable image(s) of 35" in messages[0]
    for name, reason in expected.items():
        assert name in messages[0] and reason in messages[0]
    kept = {Path(path).name for path, _ in train + val}
    assert "whole.jpg" in kept and not set(expected) & kept
    assert unreadable_reason(str(image_folder / "class_1" / "whole.jpg")) is None


def test_load_image_reads_what_the_check_accepts(image_folder):
    for path in image_folder.rglob("*.*"):
        assert unreadable_reason(str(path)) is None
        assert load_image(path).shape[0] == 3
