"""Duplicate groups from records built by hand, and the perceptual hash on generated scenes."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image

from lightning_resnet.data.catalog import ImageRecord, perceptual_hash
from lightning_resnet.data.duplicates import MIN_SIDE, NEAR_DISTANCE, DuplicateGroup, duplicate_groups
from tests.conftest import make_scene

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


def test_near_copies_chain_into_one_group():
    a = BASE_HASH
    b = flipped(a, range(0, 6))
    c = flipped(b, range(10, 16))  # 12 bits from a: only b joins them
    records = [record(c), record(flipped(a, range(20, 52))), record(a), record(b)]
    assert duplicate_groups(records) == [DuplicateGroup((0, 2, 3), exact=False)]


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
