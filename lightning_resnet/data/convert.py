"""``convert``: a folder, after its checks and split (or its folds), written in LitData's streaming format, which
:mod:`.sources.converted` reads back (its docstring describes the layout).

Each part's images go in already shuffled (LitData's shuffle mixes chunks and the items of a few chunks, not the
whole set), as the files' own bytes or, with ``max_side``, as smaller JPEGs, with their class index and path.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from ..errors import check
from ..stages import TEST, TRAIN, VAL
from .cache import write_atomically
from .dataset import Sample
from .decode import to_rgb
from .normalization import Normalization
from .sources import FolderSource, ImageSource
from .sources.converted_manifest import FORMAT, MANIFEST, fold_part, use_litdata
from .splits import SPLIT_CSV, SplitRow, write_split_csv

CHUNK_BYTES = "64MB"  # LitData's advice for images; a chunk is the unit each loader worker downloads and reads
JPEG_QUALITY = 90

Measure = Callable[[list[Sample]], Normalization]
"""The mean and std of a list of images, as the run's evaluation view shows them (``data.normalize: auto``)."""


def encoded_sample(item: Sample, max_side: int | None) -> dict[str, Any]:
    """One sample as LitData stores it: the file's bytes, or with ``max_side`` a JPEG whose longer side is at
    most that (a file already that small is kept as it is), its class index and its path."""
    path, target = item
    data = Path(path).read_bytes()
    if max_side is not None:
        data = shrunk(data, max_side)
    # the path as bytes: LitData stores a string that names an existing image file as that image, decoded
    return {"image": data, "label": target, "path": str(path).encode()}


def shrunk(data: bytes, max_side: int) -> bytes:
    """``data`` as a JPEG with its longer side at most ``max_side``, EXIF orientation applied; unchanged when
    it is no larger. A photo-sized JPEG decodes in a fraction of a phone-sized one's time (FFCV's trick)."""
    with Image.open(io.BytesIO(data)) as image:
        if max(image.size) <= max_side:
            return data
        image.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale when that is enough
        image = to_rgb(ImageOps.exif_transpose(image))
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=JPEG_QUALITY)
        return out.getvalue()


def conversion_parts(source: FolderSource) -> dict[str, list[Sample]]:
    """The parts to write: ``train`` and ``val``, or each fold's validation images; and ``test`` when there is one."""
    if source.options.split_rule.num_folds is None:
        parts = dict(zip((TRAIN, VAL), source.split()))
    else:
        parts = {fold_part(fold): samples for fold, samples in enumerate(source.fold_samples())}
    if source.has_test:
        parts[TEST] = source.test_samples()
    return parts


def training_normalizations(parts: dict[str, list[Sample]], num_folds: int | None,
                            measure: Measure | None) -> list[Normalization]:
    """With ``measure`` (``data.normalize: auto``), the training split's statistics: one, or each fold's (of the
    other folds' images)."""
    if measure is None:
        return []
    if num_folds is None:
        return [measure(parts[TRAIN])]
    return [measure([sample for other in range(num_folds) if other != fold for sample in parts[fold_part(other)]])
            for fold in range(num_folds)]


def conversion_rows(source: FolderSource, parts: dict[str, list[Sample]]) -> list[SplitRow]:
    """The conversion's ``split.csv``: each image with the part it is stored in, then the excluded ones."""
    names = source.class_names
    rows = [(path, part, names[target]) for part, samples in parts.items() for path, target in samples]
    return rows + [row for row in source.split_rows() if row[1] not in (TRAIN, VAL, TEST)]


def convert_folder(source: ImageSource, output: Path, max_side: int | None, num_workers: int,
                   measure: Measure | None = None) -> str:
    """Write ``source``'s split (or its folds, under ``data.num_folds``) as a converted data set in ``output``;
    returns what was written, in a line."""
    check(max_side is None or max_side >= 1, f"--max_side must be a positive number of pixels, got {max_side}")
    check(not output.exists() or (output.is_dir() and not any(output.iterdir())),
          f"--output {output} exists and is not empty: name a new folder (nothing is overwritten)")
    check(isinstance(source, FolderSource), f"data.data_dir {source.location} is a converted data set already")
    use_litdata()
    from litdata import optimize

    parts = conversion_parts(source)
    names = source.class_names
    num_folds = source.options.split_rule.num_folds
    output.mkdir(parents=True, exist_ok=True)
    for part, samples in parts.items():
        order = list(samples)
        random.Random(source.options.split_rule.seed).shuffle(order)  # so that a chunk is never one class
        print(f"{part}: {len(order)} images", flush=True)
        # LitData prints its set-up, its workers' shares and an advertisement: its progress bar (stderr) says enough
        with contextlib.redirect_stdout(io.StringIO()):
            optimize(fn=partial(encoded_sample, max_side=max_side), inputs=order, output_dir=str(output / part),
                     chunk_bytes=CHUNK_BYTES, num_workers=max(1, min(num_workers, len(order))), reorder_files=False,
                     keep_data_ordered=True, mode="overwrite", start_method="fork",
                     verbose=sys.stderr.isatty())  # its progress bar's cursor codes would fill a log file
    counts = {part: [sum(target == index for _, target in samples) for index in range(len(names))]
              for part, samples in parts.items()}
    manifest = {"format": FORMAT, "class_names": list(names), "class_counts": counts, "max_side": max_side,
                "num_folds": num_folds,
                "normalizations": [{"mean": list(stats.mean), "std": list(stats.std)}
                                   for stats in training_normalizations(parts, num_folds, measure)],
                "source": str(source.root.resolve())}
    write_split_csv(output / SPLIT_CSV, conversion_rows(source, parts))
    # the manifest last, and whole: a folder without it is not a converted data set
    write_atomically(output / MANIFEST, lambda temporary: temporary.write_text(json.dumps(manifest, indent=1) + "\n"))
    total = sum(len(samples) for samples in parts.values())
    size = sum(file.stat().st_size for file in output.rglob("*.bin"))
    shares = ", ".join(f"{part} {len(samples)}" for part, samples in parts.items())
    return (f"converted {total} images of {len(names)} classes ({shares}) into {output}: "
            f"{size / 2**20:.1f} MiB of chunks"
            + (f", longer sides at most {max_side} px" if max_side else ""))
