"""Duplicate groups from records built by hand, the perceptual hash on generated scenes, and near copies of small
images (28 px digits) from files."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from lightning_resnet.data import SplitRule, duplicates, list_folder, split_folder
from lightning_resnet.data.duplicates import (
    MIN_SIDE,
    NEAR_DISTANCE,
    SMALL_NEAR_DISTANCE,
    DuplicateGroup,
    cached_duplicate_groups,
    duplicate_groups,
)
from lightning_resnet.data.hashing import perceptual_hash
from lightning_resnet.data.image_records import ImageRecord, cache_file, image_records
from lightning_resnet.reports.inspection import inspect_folder
from tests.conftest import DRAWINGS, datamodule, make_drawing, make_scene

BASE_HASH = 0xDCB26F8730588EC6
_serial = itertools.count()


def record(phash: int, digest: str | None = None, side: int = 64) -> ImageRecord:
    """A readable image whose bytes are unique unless ``digest`` is given."""
    return ImageRecord(size=1, mtime_ns=1, format="PNG", mode="RGB", width=side, height=side,
                       digest=digest or f"unique-{next(_serial)}", phash=phash)


def flipped(phash: int, bits: range) -> int:
    return phash ^ sum(1 << bit for bit in bits)


def test_exact_copies_are_one_exact_group():
    far = flipped(BASE_HASH, range(0, 32))
    records = [record(BASE_HASH, "same"), record(far), record(far ^ 0xFFFF_0000_0000_0000, "same")]
    assert duplicate_groups(records) == [DuplicateGroup((0, 2), exact=True)]


def test_near_copies_within_the_distance_are_grouped_and_not_exact():
    records = [record(BASE_HASH), record(flipped(BASE_HASH, range(NEAR_DISTANCE))),
               record(flipped(BASE_HASH, range(NEAR_DISTANCE + 1)))]
    assert duplicate_groups(records[:2]) == [DuplicateGroup((0, 1), exact=False)]
    assert duplicate_groups([records[0], records[2]]) == []


def test_near_copies_do_not_chain_through_a_third_image():
    """b is near a (4 bits) and near c (6 bits), a and c are 10 bits apart: b joins the closer, c stays alone (a
    group chained a circle, a square and stripes, and 25 different triangles, on drawn shapes)."""
    a = BASE_HASH
    b = flipped(a, range(0, 4))
    c = flipped(b, range(10, 16))
    records = [record(c), record(flipped(a, range(20, 52))), record(a), record(b)]
    assert duplicate_groups(records) == [DuplicateGroup((2, 3), exact=False)]
    # with a fourth, 3 bits from a: two pairs, each of images near each other, never c with a
    hashes = [c, flipped(a, range(20, 52)), a, b, flipped(a, range(40, 43))]
    groups = duplicate_groups([record(h) for h in hashes])
    assert groups == [DuplicateGroup((0, 3), exact=False), DuplicateGroup((2, 4), exact=False)]
    assert all(bit_distance(hashes[i], hashes[j]) <= NEAR_DISTANCE
               for group in groups for i in group.members for j in group.members)


def test_groups_are_ordered_by_their_smallest_member_with_members_ascending():
    other = flipped(BASE_HASH, range(16, 48))
    records = [record(other), record(BASE_HASH, "x"), record(BASE_HASH ^ 1), record(other ^ 1),
               record(BASE_HASH, "x")]
    assert duplicate_groups(records) == [DuplicateGroup((0, 3), exact=False),
                                         DuplicateGroup((1, 2, 4), exact=False)]


def test_images_under_min_side_get_no_near_search_but_exact_copies_still_count():
    small = [record(BASE_HASH, side=MIN_SIDE - 1), record(BASE_HASH, side=64)]
    assert duplicate_groups(small) == []
    assert duplicate_groups([record(BASE_HASH, side=MIN_SIDE), record(BASE_HASH, side=64)]) == [
        DuplicateGroup((0, 1), exact=False)]
    tiny_copies = [record(BASE_HASH, "tiny", side=8), record(BASE_HASH, "tiny", side=8)]
    assert duplicate_groups(tiny_copies) == [DuplicateGroup((0, 1), exact=True)]


def test_records_without_hashes_are_left_alone():
    unreadable = ImageRecord(size=1, mtime_ns=1, problem="truncated PNG")
    assert duplicate_groups([unreadable, record(BASE_HASH), unreadable]) == []


def test_distinct_hashes_make_no_group():
    rng = np.random.default_rng(0)
    hashes = (rng.integers(0, 2**63, 300, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, 300, dtype=np.uint64))
    assert duplicate_groups([record(int(h)) for h in hashes]) == []


def bit_distance(a: int, b: int) -> int:
    return bin(a ^ b).count("1")


def resized_jpeg_copy(image: Image.Image) -> Image.Image:
    encoded = io.BytesIO()
    image.resize((image.width * 6 // 10, image.height * 6 // 10), Image.BILINEAR).save(encoded, "JPEG", quality=50)
    return Image.open(io.BytesIO(encoded.getvalue()))


@pytest.mark.parametrize("seed", range(6))
def test_a_resized_jpeg_copy_is_within_the_near_distance(seed):
    scene = make_scene(seed)
    assert bit_distance(perceptual_hash(scene), perceptual_hash(resized_jpeg_copy(scene))) <= NEAR_DISTANCE


def test_different_scenes_are_far_apart():
    hashes = [perceptual_hash(make_scene(seed)) for seed in range(8)]
    closest = min(bit_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :])
    assert closest > 2 * NEAR_DISTANCE


def test_hash_bits_are_those_of_the_cached_hashes():
    """Values from the hand-built DCT matrix the caches on disk were filled with: a change here makes them stale."""
    assert [perceptual_hash(make_scene(seed)) for seed in range(3)] == [
        0xDCB26F8730588EC6, 0xB9649A6639796499, 0xCC3067593C93AC73]


def small_digits(count: int, side: int = 28) -> tuple[list[Image.Image], np.ndarray]:
    """The first ``count`` of scikit-learn's 8x8 handwritten digits (distinct drawings) at MNIST's 28 px, bilinear,
    with light noise; and their classes."""
    digits = load_digits()
    rng = np.random.default_rng(0)
    images = []
    for pixels in digits.images[:count]:
        drawn = Image.fromarray(np.uint8(pixels * 255 / 16), "L").resize((side, side), Image.BILINEAR)
        noisy = np.asarray(drawn, dtype=np.float64) + rng.normal(0, 6, (side, side))
        images.append(Image.fromarray(np.uint8(np.clip(noisy, 0, 255)), "L"))
    return images, digits.target[:count]


COPIES = {"jpeg": ((28, 28), ".jpg"), "smaller": ((21, 21), ".png"), "larger": ((35, 35), ".png")}
"""Size and format of each kind of copy of a 28 px image: JPEG quality 50, and resized by -25 % and +25 %."""


def digit_files(root: Path, count: int, kinds: Sequence[str]) -> tuple[list[str], list[int], list[int]]:
    """``count`` 28 px digits as PNG files under ``root``, each with its copies of ``kinds``; returns the paths, the
    drawing each file shows, and its class."""
    images, classes = small_digits(count)
    root.mkdir(parents=True, exist_ok=True)
    paths, drawings = [], []
    for number, image in enumerate(images):
        paths.append(root / f"{number:03d}.png")
        image.save(paths[-1])
        for kind in kinds:
            size, suffix = COPIES[kind]
            paths.append(root / f"{number:03d}_{kind}{suffix}")
            image.resize(size, Image.BICUBIC).save(paths[-1], quality=50)
        drawings += [number] * (1 + len(kinds))
    return [str(path) for path in paths], drawings, [int(classes[d]) for d in drawings]


@pytest.mark.parametrize("kind", COPIES)
def test_reencoded_and_resized_copies_of_28px_digits_are_grouped(tmp_path, kind):
    paths, drawings, _ = digit_files(tmp_path, 30, [kind])
    records = image_records(tmp_path, paths, with_hashes=True)
    groups = duplicate_groups(records)
    together = {(group.members[0], group.members[1]) for group in groups if len(group.members) == 2}
    found = sum((i, i + 1) in together for i in range(0, len(paths), 2))
    assert found >= 0.9 * 30, found
    assert all(len({drawings[i] for i in group.members}) == 1 for group in groups)


def test_different_28px_digits_are_not_grouped_even_with_their_copies_around(tmp_path):
    paths, drawings, classes = digit_files(tmp_path, 60, list(COPIES))
    groups = duplicate_groups(image_records(tmp_path, paths, with_hashes=True))
    assert len(groups) >= 0.9 * 60
    assert [group.members for group in groups if len({drawings[i] for i in group.members}) > 1] == []
    assert all(len({classes[i] for i in group.members}) == 1 for group in groups)


def test_a_copy_of_a_small_image_stays_on_one_side_of_the_split(tmp_path):
    root = tmp_path / "digits"
    images, classes = small_digits(40)
    copies = []
    for number, (image, target) in enumerate(zip(images, classes)):
        folder = root / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{number:03d}.png")
        if number % 5 == 0:
            image.resize((21, 21), Image.BILINEAR).save(folder / f"{number:03d}_copy.jpg", quality=60)
            copies.append((folder / f"{number:03d}.png", folder / f"{number:03d}_copy.jpg"))
    listing = list_folder(root)
    paths = [path for path, _ in listing.files]
    for seed in range(3):
        index = split_folder(listing, SplitRule(val_fraction=0.5, seed=seed), verify=True, find_duplicates=True)
        for original, copy in copies:
            pair = {paths.index(str(original)), paths.index(str(copy))}
            assert any(set(group.members) == pair and group.kind == "near" for group in index.groups)
            assert len({index.part_of_files[i] for i in pair}) == 1
        assert not index.leaks and len(index.groups) == len(copies)


def test_a_pair_that_cannot_be_decoded_again_is_held_to_the_hash_distance_of_big_images():
    """Records built without a path (or whose file is gone) have no thumbnails to compare."""
    small = [record(BASE_HASH, side=28), record(flipped(BASE_HASH, range(NEAR_DISTANCE)), side=28),
             record(flipped(BASE_HASH, range(32, 32 + SMALL_NEAR_DISTANCE)), side=28)]
    assert duplicate_groups(small) == [DuplicateGroup((0, 1), exact=False)]


def test_records_carry_their_path_which_the_cache_does_not_keep(tmp_path):
    paths, _, _ = digit_files(tmp_path / "images", 2, [])
    records = image_records(tmp_path / "images", paths, with_hashes=True)
    again = image_records(tmp_path / "images", paths, with_hashes=True)
    assert [r.path for r in records] == [r.path for r in again] == paths and again == records
    saved = json.loads(cache_file(tmp_path / "images").read_text())["files"]
    assert all(len(values) == len(fields(ImageRecord)) - 1 for values in saved.values())


def test_cached_groups_are_keyed_by_the_thumbnail_threshold_too(tmp_path, monkeypatch):
    paths, _, _ = digit_files(tmp_path, 1, ["jpeg"])
    records = image_records(tmp_path, paths, with_hashes=True)
    assert cached_duplicate_groups(records) == [DuplicateGroup((0, 1), exact=False)]
    monkeypatch.setattr(duplicates, "THUMBNAIL_RMS", 0.0)
    assert cached_duplicate_groups(records) == []


def test_inspect_says_how_many_images_are_too_small_for_the_near_search(tmp_path):
    root = tmp_path / "tiny"
    for number, image in enumerate(small_digits(12)[0]):
        folder = root / f"class_{number % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        (image.resize((MIN_SIDE - 4, MIN_SIDE - 4)) if number < 6 else image).save(folder / f"{number:02d}.png")
    printed = inspect_folder(datamodule(root), tmp_path / "report")
    assert f"near-copy search: left out 6 image(s) under {MIN_SIDE} px a side" in printed


def test_drawings_that_hash_alike_are_not_grouped_and_the_split_stays_stratified(tmp_path):
    """Issue 51: 240 drawn shapes (60 of each of 4 classes), no copies among them; the hash alone chained a circle,
    a square and stripes into one group and 25 triangles into another, and the stripes split 52/8."""
    rng = np.random.default_rng(0)
    root = tmp_path / "drawn"
    for kind in DRAWINGS:
        (root / kind).mkdir(parents=True)
        for number in range(60):
            make_drawing(kind, rng).save(root / kind / f"{number:03d}.png")
    listing = list_folder(root)
    index = split_folder(listing, SplitRule(val_fraction=0.2, seed=0), verify=True, find_duplicates=True)
    classes = [Path(path).parent.name for path, _ in listing.files]
    assert all(len(group.members) == 2 for group in index.groups)  # at most a pair of look-alikes
    assert [group for group in index.groups if len({classes[i] for i in group.members}) > 1] == []
    validated = [classes[i] for i in index.val]
    assert all(validated.count(kind) == 12 for kind in DRAWINGS), {kind: validated.count(kind) for kind in DRAWINGS}
