"""Where this project keeps what it works out once per folder (file checks, hashes, duplicate groups,
normalization statistics), and how it writes them so that a reader never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lightning_resnet`` (``~/.cache/lightning_resnet`` by default): every cache of this project."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lightning_resnet"


def write_json_atomically(path: Path, content: object, what: str) -> None:
    """Written to a temporary file and renamed, so a process reading it never sees half of it; a warning
    naming ``what`` if it cannot be written (the run goes on without the cache)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as handle:
            json.dump(content, handle)
        os.replace(handle.name, path)
    except OSError as error:
        warnings.warn(f"could not cache {what} in {path}: {error}", stacklevel=3)
