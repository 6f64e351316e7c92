"""A folder's split: listed once, checked, grouped and split into one immutable value."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from lightning_resnet.data import SplitRule, list_folder, split_folder
from lightning_resnet.stages import TRAIN, VAL

from ..conftest import datamodule, make_image_folder


def test_a_folder_split_is_a_value_made_once_and_remade_only_for_a_new_question(image_folder):
    data = datamodule(image_folder, group_duplicates=False)
    first = data.source.folder_split()
    assert data.source.folder_split() is first and not first.hashed
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.train = ()
    hashed = data.source.folder_split(find_duplicates=True)
    assert hashed is not first and hashed.hashed and (hashed.train, hashed.val) == (first.train, first.val)
    assert data.source.folder_split() is hashed  # a split with hashes answers the question without them too


def test_split_folder_splits_every_readable_file_once_and_keeps_copies_together(tmp_path):
    root = make_image_folder(tmp_path / "images", classes=2, per_class=10)
    shutil.copy(root / "class_0" / "001.png", root / "class_0" / "001_copy.png")
    (root / "class_1" / "broken.png").write_bytes(b"\x89PNG not really")
    listing = list_folder(root)
    split = split_folder(listing, SplitRule(val_fraction=0.25, seed=3), verify=True, find_duplicates=True)
    paths = [path for path, _ in listing.files]
    broken = paths.index(str(root / "class_1" / "broken.png"))
    assert broken not in split.train + split.val and not split.readable(broken)
    assert sorted(split.train + split.val) == [i for i in range(len(paths)) if i != broken]
    copies = {paths.index(str(root / "class_0" / name)) for name in ("001.png", "001_copy.png")}
    assert any(set(group.members) == copies and group.exact for group in split.groups)
    assert len({split.part_of_files[i] for i in copies}) == 1 and not split.leaks
    assert set(split.part_of_files.values()) == {TRAIN, VAL}
    assert split.class_counts(split.val) == [3, 2]  # a quarter of 11 and of 10 readable images, rounded
