"""Exact and near-duplicate images: groups that a split must keep together, and leaks between splits.

Exact copies share the digest of their bytes. Near copies (the same photo re-encoded, resized or
lightly cropped) have perceptual hashes (:func:`~.catalog.perceptual_hash`) at most
:data:`NEAR_DISTANCE` bits apart. Measured on 300 synthetic scenes of shapes (as
tests/conftest.py's ``make_scene`` draws them): copies resized to 60 % and saved as JPEG quality
50 were 0 to 6 bits away, copies cropped by 3 % on each side a median of 8 (about half are
found), and no two of the 44,850 pairs of distinct scenes were closer than 14. The test
folders' simpler images (a colour, blots, a square) came as close as 10, hence 8 and not the
10 often quoted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from .cache import cache_dir, write_json_atomically
from .catalog import ImageRecord

NEAR_DISTANCE = 8
"""The most bits two perceptual hashes may differ by for their images to count as near copies."""
MIN_SIDE = 32
"""Images smaller than this on a side get no near-copy search: the 32x32 hash thumbnail would invent pixels
(scikit-learn's 8x8 digits, for example, are mostly alike at that level)."""
_ROWS_PER_BLOCK = 512  # 512 x 50,000 hash pairs at once: 25 MB of distances


@dataclass(frozen=True)
class DuplicateGroup:
    """Indices of files that are copies of each other; ``exact`` when every one has the same bytes."""

    members: tuple[int, ...]
    exact: bool

    @property
    def kind(self) -> str:
        return "exact" if self.exact else "near"


def near_pairs(hashes: np.ndarray, max_distance: int = NEAR_DISTANCE) -> Iterator[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of 64-bit hashes at most ``max_distance`` bits apart (all pairs, in blocks)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    for start in range(0, len(hashes), _ROWS_PER_BLOCK):
        block = hashes[start : start + _ROWS_PER_BLOCK]
        distances = np.bitwise_count(block[:, None] ^ hashes[None, start:])
        rows, columns = np.nonzero(distances <= max_distance)
        for row, column in zip(rows.tolist(), columns.tolist()):
            if column > row:
                yield start + row, start + column


def duplicate_groups(records: Sequence[ImageRecord]) -> list[DuplicateGroup]:
    """Groups of two or more files that are exact or near copies (chained: a ~ b and b ~ c group a, b, c).

    The groups are the connected components of a graph whose edges join files with the same digest
    and near pairs among files at least :data:`MIN_SIDE` pixels on each side; ordered by their smallest member.
    """
    first_with_digest: dict[str, int] = {}
    edges = [(first_with_digest.setdefault(record.digest, index), index)
             for index, record in enumerate(records) if record.digest is not None]
    comparable = [index for index, record in enumerate(records)
                  if record.phash is not None and min(record.width, record.height) >= MIN_SIDE]
    hashes = np.array([records[index].phash for index in comparable], dtype=np.uint64)
    edges += [(comparable[a], comparable[b]) for a, b in near_pairs(hashes)]
    sources, targets = np.array(edges, dtype=np.int64).reshape(-1, 2).T
    graph = coo_array((np.ones(len(edges), dtype=np.int8), (sources, targets)), shape=(len(records), len(records)))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(label, []).append(index)
    groups = sorted(group for group in members.values() if len(group) > 1)
    return [DuplicateGroup(tuple(group), exact=len({records[i].digest for i in group}) == 1) for group in groups]


def cached_duplicate_groups(records: Sequence[ImageRecord]) -> list[DuplicateGroup]:
    """:func:`duplicate_groups`, kept in the cache under a digest of every file's hashes and size.

    The search compares every pair (8.5 s for 50,000 files on 2 cores, benchmarks/README.md), so a
    second start-up on the same files reads its result instead.
    """
    digest = hashlib.sha1(f"{NEAR_DISTANCE}|{MIN_SIDE}".encode())
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
