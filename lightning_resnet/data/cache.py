"""Where this project keeps what it works out once per folder (file checks, hashes, duplicate groups,
normalization statistics, backbone features), and the one way it writes a file that another process may
be reading: to a temporary file beside it, renamed into place, so that a reader never sees half of it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lightning_resnet`` (``~/.cache/lightning_resnet`` by default): every cache of this project."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightning_resnet"


def path_key(path: Path) -> str:
    """16 hex digits naming ``path`` (resolved) in a cache file's name."""
    return hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary)`` a file beside ``path``, then rename it to ``path``; the temporary file is removed if
    ``write`` fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, content: object, what: str) -> None:
    """A cache file written with :func:`write_atomically`; a warning naming ``what`` if it cannot be written (the
    run goes on without the cache)."""
    try:
        write_atomically(path, lambda temporary: temporary.write_text(json.dumps(content)))
    except OSError as error:
        warnings.warn(f"could not cache {what} in {path}: {error}", stacklevel=3)
