"""What is known about each image file of a folder, worked out once and cached: the start-up check and the hashes.

One pass over a file gives its :class:`ImageRecord`: whether it can be read (from its header and
last bytes), its format, colour mode and size, and, when duplicates are looked for, a digest of
its bytes (exact copies) and a perceptual hash (near copies; :mod:`.hashing`, :mod:`.duplicates`). Records are
kept per folder under ``$XDG_CACHE_HOME/lightning_resnet`` with each file's size and modification
time, so a second start-up only lists the folder and reads the cache, and a changed file is
worked out again. Under DDP the data module's ``prepare_data`` fills the cache on one process
per node and the others read it.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from PIL import Image

from .cache import cache_dir, path_key, write_json_atomically
from .decode import DECODE_ERRORS, decode_problem
from .hashing import content_digest, perceptual_hash

CACHE_VERSION = 1


@dataclass(frozen=True)
class ImageRecord:
    """One image file as the start-up check and the duplicate search saw it."""

    size: int
    """Bytes on disk (with ``mtime_ns``, what tells a cached record from a stale one)."""
    mtime_ns: int
    problem: str | None = None
    """Why the file cannot be an image (empty, truncated, not an image), or None."""
    format: str | None = None
    mode: str | None = None
    width: int = 0
    height: int = 0
    digest: str | None = None
    """BLAKE2b of the bytes: equal for exact copies. None until duplicates are looked for."""
    phash: int | None = None
    """64-bit perceptual hash (:func:`perceptual_hash`). None until duplicates are looked for."""
    path: str | None = field(default=None, compare=False, repr=False)
    """The file, so that the duplicate search can decode it again; not cached (the cache is keyed by it)."""

    @property
    def readable(self) -> bool:
        return self.problem is None

    @property
    def hashed(self) -> bool:
        return self.problem is not None or self.digest is not None


_CACHED_FIELDS = tuple(f.name for f in fields(ImageRecord) if f.name != "path")


def _truncation(data: bytes, kind: str | None) -> str | None:
    end_marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(kind)
    if end_marker and end_marker not in data[-1024:]:
        return f"truncated {kind}"
    return None


def _tail(path: str, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(max(0, size - 1024))
        return handle.read()


def examine(path: str, with_hashes: bool) -> ImageRecord:
    """The record of one file: its header and last bytes, and, ``with_hashes``, all of it decoded small."""
    try:
        stat = os.stat(path)
    except OSError as error:
        return ImageRecord(0, 0, problem=error.strerror or type(error).__name__)
    if stat.st_size == 0:
        return ImageRecord(0, stat.st_mtime_ns, problem="empty file")
    try:
        data = Path(path).read_bytes() if with_hashes else None
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            kind, mode, (width, height) = image.format, image.mode, image.size
            problem = _truncation(data if data is not None else _tail(path, stat.st_size), kind)
            if problem:
                return ImageRecord(stat.st_size, stat.st_mtime_ns, problem, kind, mode, width, height)
            if data is None:
                return ImageRecord(stat.st_size, stat.st_mtime_ns, None, kind, mode, width, height)
            phash = perceptual_hash(image)
        digest = content_digest(data)
        return ImageRecord(stat.st_size, stat.st_mtime_ns, None, kind, mode, width, height, digest, phash)
    except DECODE_ERRORS as error:
        return ImageRecord(stat.st_size, stat.st_mtime_ns, problem=decode_problem(error))


def unreadable_reason(path: str) -> str | None:
    """Why ``path`` cannot be an image, from its header and its last bytes only; None if it looks whole."""
    return examine(path, with_hashes=False).problem


def cache_file(root: Path) -> Path:
    """Where the records of the files under ``root`` are kept (one file per folder)."""
    key = path_key(root)
    return cache_dir() / f"image-records-{root.name}-{key}.json"


def _read_cache(path: Path) -> dict[str, ImageRecord]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if saved.get("version") != CACHE_VERSION:
        return {}
    return {name: ImageRecord(*values, path=name) for name, values in saved["files"].items()}


def _write_cache(path: Path, records: dict[str, ImageRecord]) -> None:
    files = {name: [getattr(record, key) for key in _CACHED_FIELDS] for name, record in records.items()}
    write_json_atomically(path, {"version": CACHE_VERSION, "files": files}, "the image checks")


def image_records(root: Path, paths: Sequence[str], with_hashes: bool, workers: int | None = None) -> list[ImageRecord]:
    """The records of ``paths`` (files under ``root``), from the cache where the file has not changed.

    Only new and changed files are read; the cache is rewritten when any was.
    """
    cache = cache_file(root)
    known = _read_cache(cache)
    records: list[ImageRecord | None] = []
    todo = []
    for index, path in enumerate(paths):
        record = known.get(path)
        if record is not None and (not with_hashes or record.hashed):
            try:
                stat = os.stat(path)
            except OSError:
                record = None
            else:
                if (stat.st_size, stat.st_mtime_ns) != (record.size, record.mtime_ns):
                    record = None
        if record is None or (with_hashes and not record.hashed):
            todo.append(index)
            record = None
        records.append(record)
    if todo:
        workers = workers or min(32, 4 * (os.cpu_count() or 1))  # decoding releases the GIL
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for index, record in zip(todo, pool.map(lambda i: examine(paths[i], with_hashes), todo)):
                records[index] = replace(record, path=paths[index])
        known.update(zip(paths, records))
        _write_cache(cache, known)
    return records


def warn_unreadable(paths: Sequence[str], records: Sequence[ImageRecord], where: Path) -> None:
    """One warning naming the files of ``paths`` that cannot be images (the first ten) and why."""
    bad = [(path, record.problem) for path, record in zip(paths, records) if not record.readable]
    if bad:
        listed = "; ".join(f"{path} ({problem})" for path, problem in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        warnings.warn(f"{where}: left out {len(bad)} unreadable image(s) of {len(paths)}: {listed}{more}",
                      stacklevel=3)
