"""Exact and near-duplicate images: groups that a split must keep together, and leaks between splits.

Exact copies share the digest of their bytes. Near copies (the same photo re-encoded, resized or lightly
cropped) have perceptual hashes (:func:`~.hashing.perceptual_hash`) at most :data:`NEAR_DISTANCE` bits apart.
Small images (under :data:`SMALL_SIDE`: digits, letters, icons) are mostly strokes on a plain background, which
hash alike whoever drew them: a pair with one is a near copy if its hashes are at most
:data:`SMALL_NEAR_DISTANCE` bits apart and its gray thumbnails, decoded again for these candidates only, differ
by at most :data:`THUMBNAIL_RMS` levels. Each threshold's measurement is in benchmarks/README.md ("Duplicate
search thresholds").
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from .cache import cache_dir, write_json_atomically
from .decode import DECODE_ERRORS, to_rgb
from .image_records import ImageRecord

NEAR_DISTANCE = 8
"""The most bits two perceptual hashes may differ by for their images to count as near copies."""
SMALL_SIDE = 64
"""A pair with an image smaller than this on a side is checked on thumbnails as well (the hash alone joins
look-alike drawings); an image this small is quick to decode again."""
SMALL_NEAR_DISTANCE = 12
"""The most bits apart the hashes of a pair with a small image may be to be checked on thumbnails."""
THUMBNAIL_RMS = 10.0
"""The most two gray thumbnails (levels 0-255) may differ, root mean square, for a pair with a small image to count as
near copies."""
MIN_SIDE = 12
"""Images smaller than this on a side get no near-copy search, which cannot tell their copies from look-alikes."""
_THUMBNAIL_SIDES = ((21, 16), (18, 12), (MIN_SIDE, 8))
"""(the pair's smaller image at least this on a side, thumbnail side), largest first: well under both sizes, so that
both images are smoothed alike, and no smaller, which would join more look-alikes."""
_ROWS_PER_BLOCK = 512  # 512 x 50,000 hash pairs at once: 25 MB of distances
_PAIRS_PER_CHUNK = 65_536  # thumbnail differences of 64k pairs at once: 64 MB


@dataclass(frozen=True)
class DuplicateGroup:
    """Indices of files that are copies of each other; ``exact`` when every one has the same bytes."""

    members: tuple[int, ...]
    exact: bool

    @property
    def kind(self) -> str:
        return "exact" if self.exact else "near"


def near_pairs(hashes: np.ndarray, max_distance: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per block of rows: the rows, columns (``row < column``) and bit distances of the 64-bit hashes at most
    ``max_distance`` bits apart (all pairs, a block at a time)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    for start in range(0, len(hashes), _ROWS_PER_BLOCK):
        block = hashes[start : start + _ROWS_PER_BLOCK]
        distances = np.bitwise_count(block[:, None] ^ hashes[None, start:])
        rows, columns = np.nonzero(np.triu(distances <= max_distance, 1))
        yield (rows + start).astype(np.int32), (columns + start).astype(np.int32), distances[rows, columns]


def in_near_search(record: ImageRecord) -> bool:
    """Whether ``record`` is hashed and at least :data:`MIN_SIDE` pixels on each side."""
    return record.phash is not None and min(record.width, record.height) >= MIN_SIDE


def left_out_of_near_search(records: Sequence[ImageRecord]) -> list[int]:
    """Indices of the hashed images under :data:`MIN_SIDE` on a side, which only exact copies can join."""
    return [index for index, record in enumerate(records) if record.phash is not None and not in_near_search(record)]


def gray_thumbnail(image: Image.Image, side: int) -> np.ndarray:
    """``image`` in gray levels, resized to ``side`` x ``side`` (bilinear, so smoothed when reduced), flattened."""
    gray = to_rgb(image).convert("L").resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.float32).ravel()


def _thumbnails(path: str | None) -> dict[int, np.ndarray] | None:
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            image.draft("L", (64, 64))  # only the big JPEG of a pair is decoded at a reduced scale
            return {side: gray_thumbnail(image, side) for _, side in _THUMBNAIL_SIDES}
    except DECODE_ERRORS:
        return None


def _thumbnail_differences(records: Sequence[ImageRecord], first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The RMS difference of the gray thumbnails of each pair ``(first[k], second[k])`` of record indices, the
    thumbnail side chosen by the pair's smaller image; NaN where a file could not be decoded again."""
    if not len(first):
        return np.empty(0, dtype=np.float32)
    involved, at = np.unique(np.concatenate([first, second]), return_inverse=True)
    a, b = at[: len(first)], at[len(first) :]
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:  # decoding releases the GIL
        thumbnails = list(pool.map(_thumbnails, [records[i].path for i in involved]))
    smaller = np.array([min(records[i].width, records[i].height) for i in involved])
    smaller = np.minimum(smaller[a], smaller[b])
    side_of_pair = np.select([smaller >= at_least for at_least, _ in _THUMBNAIL_SIDES],
                             [side for _, side in _THUMBNAIL_SIDES], 0)
    differences = np.full(len(first), np.nan, dtype=np.float32)
    for _, side in _THUMBNAIL_SIDES:
        missing = np.full(side * side, np.nan, dtype=np.float32)
        table = np.stack([missing if t is None else t[side] for t in thumbnails])
        chosen = np.flatnonzero(side_of_pair == side)
        for start in range(0, len(chosen), _PAIRS_PER_CHUNK):
            pairs = chosen[start : start + _PAIRS_PER_CHUNK]
            differences[pairs] = np.sqrt(np.mean((table[a[pairs]] - table[b[pairs]]) ** 2, axis=1))
    return differences


def duplicate_groups(records: Sequence[ImageRecord]) -> list[DuplicateGroup]:
    """Groups of two or more files that are exact or near copies (chained: a ~ b and b ~ c group a, b, c).

    The groups are the connected components of a graph whose edges join files with the same digest
    and near pairs among files at least :data:`MIN_SIDE` pixels on each side; ordered by their smallest member.
    A pair with an image under :data:`SMALL_SIDE` is checked on thumbnails, or, where a file cannot be
    decoded again (or the record has no path), held to :data:`NEAR_DISTANCE` like the others.
    """
    first_with_digest: dict[str, int] = {}
    edges = [np.array([(first_with_digest.setdefault(record.digest, index), index)
                       for index, record in enumerate(records) if record.digest is not None],
                      dtype=np.int64).reshape(-1, 2)]
    comparable = np.array([index for index, record in enumerate(records) if in_near_search(record)], dtype=np.int64)
    hashes = np.array([records[index].phash for index in comparable], dtype=np.uint64)
    sides = np.array([min(records[index].width, records[index].height) for index in comparable], dtype=np.int64)
    candidates = []
    for rows, columns, distances in near_pairs(hashes, max(NEAR_DISTANCE, SMALL_NEAR_DISTANCE)):
        small = np.minimum(sides[rows], sides[columns]) < SMALL_SIDE
        near = ~small & (distances <= NEAR_DISTANCE)
        edges.append(np.stack([comparable[rows[near]], comparable[columns[near]]], axis=1))
        small &= distances <= SMALL_NEAR_DISTANCE
        candidates.append((comparable[rows[small]], comparable[columns[small]], distances[small]))
    if candidates:
        first, second, distances = map(np.concatenate, zip(*candidates))
        differences = _thumbnail_differences(records, first, second)
        kept = np.where(np.isnan(differences), distances <= NEAR_DISTANCE, differences <= THUMBNAIL_RMS)
        edges.append(np.stack([first[kept], second[kept]], axis=1))
    sources, targets = np.concatenate(edges).T
    graph = coo_array((np.ones(len(sources), dtype=np.int8), (sources, targets)), shape=(len(records), len(records)))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(label, []).append(index)
    groups = sorted(group for group in members.values() if len(group) > 1)
    return [DuplicateGroup(tuple(group), exact=len({records[i].digest for i in group}) == 1) for group in groups]


def cached_duplicate_groups(records: Sequence[ImageRecord]) -> list[DuplicateGroup]:
    """:func:`duplicate_groups`, kept in the cache under a digest of every file's hashes and size.

    The search compares every pair (seconds on 50,000 files: benchmarks/README.md), so a second start-up on the
    same files reads its result instead.
    """
    digest = hashlib.sha1(f"{NEAR_DISTANCE}|{MIN_SIDE}|{SMALL_SIDE}|{SMALL_NEAR_DISTANCE}|{THUMBNAIL_RMS}|"
                          f"{_THUMBNAIL_SIDES}".encode())
    for record in records:
        digest.update(f"{record.digest}|{record.phash}|{record.width}|{record.height}\n".encode())
    cache = cache_dir() / f"duplicates-{digest.hexdigest()[:16]}.json"
    try:
        return [DuplicateGroup(tuple(members), exact) for members, exact in json.loads(cache.read_text())]
    except (OSError, ValueError):
        pass
    groups = duplicate_groups(records)
    write_json_atomically(cache, [[list(group.members), group.exact] for group in groups], "the duplicate groups")
    return groups
