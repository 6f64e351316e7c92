"""Exact and near-duplicate images: groups that a split must keep together, and leaks between splits.

Exact copies share the digest of their bytes. Near copies (the same photo re-encoded, resized or lightly
cropped) have perceptual hashes (:func:`~.hashing.perceptual_hash`) at most :data:`NEAR_DISTANCE` bits apart
(:data:`SMALL_NEAR_DISTANCE` with an image under :data:`SMALL_SIDE`) and gray thumbnails, decoded again for these
candidates only, at most :data:`THUMBNAIL_RMS` levels apart: drawings, digits and icons on a plain background hash
alike whoever drew them. A group holds images that are each a near copy of every other (complete linkage): no
image joins another through a third. Each threshold's measurement is in benchmarks/README.md ("Duplicate search
thresholds"), the groups' precision on five kinds of images in docs/your-data.md.
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
"""A pair with an image smaller than this on a side may be :data:`SMALL_NEAR_DISTANCE` bits apart (a resized copy of a
small image moves more bits)."""
SMALL_NEAR_DISTANCE = 12
"""The most bits apart the hashes of a pair with a small image may be to be checked on thumbnails."""
THUMBNAIL_RMS = 10.0
"""The most two gray thumbnails (levels 0-255) may differ, root mean square, for a pair to count as near copies."""
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


def near_pair_distances(records: Sequence[ImageRecord]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of near copies ``(first, second, distance)``, the distance in [0, 1]: 0 for the same bytes, else
    the larger of the hash distance and the thumbnails' difference, each as a share of its threshold.

    A pair is near when its hashes are within :data:`NEAR_DISTANCE` bits (:data:`SMALL_NEAR_DISTANCE` with an
    image under :data:`SMALL_SIDE`) and its gray thumbnails, decoded again for these candidates only, within
    :data:`THUMBNAIL_RMS`: the hash alone joins look-alikes (drawn shapes on a plain background, digits), the pixels
    tell them apart. A pair that cannot be decoded again (no path, a file gone) is held to :data:`NEAR_DISTANCE`.
    """
    first_with_digest: dict[str, int] = {}
    exact = np.array([(first_with_digest.setdefault(record.digest, index), index)
                      for index, record in enumerate(records) if record.digest is not None],
                     dtype=np.int64).reshape(-1, 2)
    exact = exact[exact[:, 0] != exact[:, 1]]
    comparable = np.array([index for index, record in enumerate(records) if in_near_search(record)], dtype=np.int64)
    hashes = np.array([records[index].phash for index in comparable], dtype=np.uint64)
    sides = np.array([min(records[index].width, records[index].height) for index in comparable], dtype=np.int64)
    found = [(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64))]
    for rows, columns, bits in near_pairs(hashes, max(NEAR_DISTANCE, SMALL_NEAR_DISTANCE)):
        limit = np.where(np.minimum(sides[rows], sides[columns]) < SMALL_SIDE, SMALL_NEAR_DISTANCE, NEAR_DISTANCE)
        keep = bits <= limit
        found.append((comparable[rows[keep]], comparable[columns[keep]], bits[keep], limit[keep]))
    first, second, bits, limit = map(np.concatenate, zip(*found))
    differences = _thumbnail_differences(records, first, second)
    undecoded = np.isnan(differences)
    near = np.where(undecoded, bits <= NEAR_DISTANCE, differences <= THUMBNAIL_RMS)
    distance = np.maximum(bits / np.maximum(limit, 1), np.where(undecoded, 0.0, differences / THUMBNAIL_RMS))
    return (np.concatenate([exact[:, 0], first[near]]), np.concatenate([exact[:, 1], second[near]]),
            np.concatenate([np.zeros(len(exact)), distance[near]]))


def duplicate_groups(records: Sequence[ImageRecord]) -> list[DuplicateGroup]:
    """Groups of two or more files that are exact or near copies of each other, every pair of a group a near pair
    (:func:`near_pair_distances`): complete linkage (scipy's), so that no image joins another through a third
    (a ~ b and b ~ c group a, b, c only if a ~ c too). Ordered by their smallest member, members ascending."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    first, second, distance = near_pair_distances(records)
    graph = coo_array((np.ones(len(first), dtype=np.int8), (first, second)), shape=(len(records), len(records)))
    _, component_of = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index, component in enumerate(component_of.tolist()):
        members.setdefault(component, []).append(index)
    pairs: dict[int, list[tuple[int, int, float]]] = {}
    for a, b, d in zip(first.tolist(), second.tolist(), distance.tolist()):
        pairs.setdefault(component_of[a], []).append((a, b, d))
    groups = []
    for component, edges in pairs.items():
        candidates = members[component]
        if len(candidates) == 2:
            groups.append(candidates)
            continue
        at = {member: position for position, member in enumerate(candidates)}
        apart = np.full((len(candidates), len(candidates)), 2.0)  # 2: no near pair (a near pair is at most 1 apart)
        np.fill_diagonal(apart, 0.0)
        for a, b, d in edges:
            apart[at[a], at[b]] = apart[at[b], at[a]] = min(d, apart[at[a], at[b]])
        labels = fcluster(linkage(squareform(apart, checks=False), method="complete"), t=1.0, criterion="distance")
        for label in np.unique(labels):
            group = [candidates[position] for position in np.flatnonzero(labels == label)]
            if len(group) > 1:
                groups.append(group)
    return [DuplicateGroup(tuple(group), exact=len({records[i].digest for i in group}) == 1)
            for group in sorted(groups)]


def _search_key(*parts: Sequence[ImageRecord]) -> hashlib._Hash:
    """A digest of the search's thresholds and of each record's hashes and size, part by part."""
    digest = hashlib.sha1(f"complete linkage|{NEAR_DISTANCE}|{MIN_SIDE}|{SMALL_SIDE}|{SMALL_NEAR_DISTANCE}|"
                          f"{THUMBNAIL_RMS}|{_THUMBNAIL_SIDES}".encode())
    for records in parts:
        digest.update(b"--\n")
        for record in records:
            digest.update(f"{record.digest}|{record.phash}|{record.width}|{record.height}\n".encode())
    return digest


def cached_duplicate_groups(records: Sequence[ImageRecord]) -> list[DuplicateGroup]:
    """:func:`duplicate_groups`, kept in the cache under a digest of every file's hashes and size.

    The search compares every pair (seconds on 50,000 files: benchmarks/README.md), so a second start-up on the
    same files reads its result instead.
    """
    cache = cache_dir() / f"duplicates-{_search_key(records).hexdigest()[:16]}.json"
    try:
        return [DuplicateGroup(tuple(members), exact) for members, exact in json.loads(cache.read_text())]
    except (OSError, ValueError):
        pass
    groups = duplicate_groups(records)
    write_json_atomically(cache, [[list(group.members), group.exact] for group in groups], "the duplicate groups")
    return groups


def cached_copies_between(originals: Sequence[ImageRecord], candidates: Sequence[ImageRecord]) -> dict[int, int]:
    """:func:`copies_between`, kept in the cache under a digest of both lists' hashes: the thumbnails of the
    candidate pairs took 42 s of a 61 s start-up with 59,850 unlabelled and 10,050 held-out Fashion-MNIST images."""
    cache = cache_dir() / f"copies-{_search_key(originals, candidates).hexdigest()[:16]}.json"
    try:
        return {int(candidate): original for candidate, original in json.loads(cache.read_text()).items()}
    except (OSError, ValueError):
        pass
    found = copies_between(originals, candidates)
    write_json_atomically(cache, found, "the copies of held-out images")
    return found


def copies_between(originals: Sequence[ImageRecord], candidates: Sequence[ImageRecord]) -> dict[int, int]:
    """Which ``candidates`` are exact or near copies of one of ``originals`` (the rules of :func:`near_pair_distances`),
    as ``{candidate index: original index}``: the pairs across the two lists only, so that a large pool of
    look-alikes (unlabelled images) costs no comparison among its own images."""
    digests = {record.digest: index for index, record in enumerate(originals) if record.digest is not None}
    found = {index: digests[record.digest] for index, record in enumerate(candidates) if record.digest in digests}
    left = np.array([i for i, record in enumerate(originals) if in_near_search(record)], dtype=np.int64)
    right = np.array([i for i, record in enumerate(candidates) if in_near_search(record) and i not in found],
                     dtype=np.int64)
    if not len(left) or not len(right):
        return found
    right_hashes = np.array([candidates[i].phash for i in right], dtype=np.uint64)
    right_sides = np.array([min(candidates[i].width, candidates[i].height) for i in right])
    pairs = []
    for start in range(0, len(left), _ROWS_PER_BLOCK):
        rows = left[start : start + _ROWS_PER_BLOCK]
        hashes = np.array([originals[i].phash for i in rows], dtype=np.uint64)
        sides = np.array([min(originals[i].width, originals[i].height) for i in rows])
        bits = np.bitwise_count(hashes[:, None] ^ right_hashes[None, :])
        limit = np.where(np.minimum(sides[:, None], right_sides[None, :]) < SMALL_SIDE, SMALL_NEAR_DISTANCE,
                         NEAR_DISTANCE)
        at_row, at_column = np.nonzero(bits <= limit)
        pairs.append((rows[at_row], right[at_column], bits[at_row, at_column]))
    first, second, bits = (np.concatenate(each) for each in zip(*pairs))
    differences = _thumbnail_differences([*originals, *candidates], first, second + len(originals))
    near = np.where(np.isnan(differences), bits <= NEAR_DISTANCE, differences <= THUMBNAIL_RMS)
    for original, candidate in zip(first[near].tolist(), second[near].tolist()):
        found.setdefault(candidate, original)
    return found
