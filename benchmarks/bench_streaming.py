"""A folder against its converted form (``python -m lightning_resnet convert``, LitData's streaming format).

Two tables:

- **Start-up**: a fresh process builds ``ImageFolderDataModule`` and times ``setup("fit")`` and the first batch
  of the training loader (1 worker), on ``bench_startup``'s folders of small files (5,000 and 50,000), with
  an empty cache, and on their converted forms. The folder is listed, checked, hashed and split at start-up;
  the converted form was split when it was written, so its start-up reads an index.
- **Loader**: training images/s (random resized crop to 224 px and flip, 2 workers, 2 passes) on
  ``bench_input``'s phone-sized (4032x3024) and photo-sized (500x375 to 1024x768) JPEGs, from the folder
  and from the form converted with ``--max_side 320``.

The converted forms are written once under ``data/`` and reused; the conversion's own time is reported when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_input import PHONE_SIZES, PHOTO_SIZES, make_photos, throughput
from benchmarks.bench_startup import make_small_files
from benchmarks.common import ROOT, interleaved, median, report, table

MEASURE = """
import json, sys, time
from lightning_resnet.data import ImageFolderDataModule
data = ImageFolderDataModule(data_dir=sys.argv[1], num_workers=1, batch_size=64, image_size=32)
start = time.perf_counter()
data.setup("fit")
ready = time.perf_counter()
next(iter(data.train_dataloader()))
print(json.dumps({"setup": ready - start, "first_batch": time.perf_counter() - start, "train": len(data.train_set)}))
"""


def converted(folder: Path, output: Path, *options: str) -> tuple[Path, float | None]:
    """``folder`` converted into ``output`` (once), and the seconds the conversion took when it ran now."""
    if (output / "converted.json").is_file():
        return output, None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lightning_resnet", "convert", "--data.data_dir", str(folder), "--output",
                    str(output), *options], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                   capture_output=True)
    return output, time.perf_counter() - start


def start_up(data_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": cache}
        finished = subprocess.run([sys.executable, "-c", MEASURE, str(data_dir)], env=env, cwd=ROOT,
                                  capture_output=True, text=True, check=True)
    return json.loads(finished.stdout.strip().splitlines()[-1])


def start_up_table(counts: list[int]) -> str:
    rows = []
    for count in counts:
        folder = make_small_files(ROOT / "data" / f"bench_startup_{count}", classes=10, per_class=count // 10)
        streamed, seconds = converted(folder, ROOT / "data" / f"bench_streaming_{count}",
                                      "--data.group_duplicates", "false")
        if seconds is not None:
            print(f"converted {count:,} files in {seconds:.1f} s", flush=True)
        measured = {name: start_up(path) for name, path in (("folder", folder), ("converted", streamed))}
        for name, result in measured.items():
            rows.append([f"{count:,}", name, f"{result['setup']:.2f}", f"{result['first_batch']:.2f}",
                         f"{result['train']:,}"])
        ratio = measured["folder"]["first_batch"] / measured["converted"]["first_batch"]
        rows[-1][3] += f" (**{ratio:.1f}x** faster)"
        print(f"start-up, {count:,} files: {ratio:.1f}x", flush=True)
    return table(["files", "data_dir", "setup('fit') s", "to the first batch s", "training images"], rows)


def loader_table(args) -> str:
    from lightning_resnet.data import ImageFolderDataModule

    rows = []
    for name, count, sizes in (("phone", args.phone_images, PHONE_SIZES), ("photos", args.images, PHOTO_SIZES)):
        # bench_input's folders
        folder = make_photos(ROOT / "data" / ("bench_phone_photos" if name == "phone" else "bench_photos"), 3,
                             count // 3, sizes)
        streamed, seconds = converted(folder, ROOT / "data" / f"bench_streaming_{name}_320", "--max_side", "320",
                                      "--data.val_fraction", "0.05")
        if seconds is not None:
            print(f"converted {name} with --max_side 320 in {seconds:.1f} s", flush=True)
        loaders = {}
        for label, path in (("folder", folder), ("converted", streamed)):
            data = ImageFolderDataModule(data_dir=str(path), val_fraction=0.05, image_size=224, batch_size=32,
                                         num_workers=args.workers, train_augment="standard", normalize="imagenet")
            data.setup("fit")
            loaders[label] = (data, data.train_dataloader())
        results = interleaved({label: lambda pair=pair: throughput(pair[1], args.passes,
                                                                   lambda b, d=pair[0]: d.on_after_batch_transfer(b, 0))
                               for label, pair in loaders.items()}, args.rounds)
        ratio = median([c / f for c, f in zip(results["converted"], results["folder"])])
        rows.append([f"{name} ({len(loaders['folder'][0].train_set)} training images)",
                     f"{median(results['folder']):.1f}", f"{median(results['converted']):.1f}", f"**{ratio:.2f}x**"])
        print(f"loader, {name}: {ratio:.2f}x", flush=True)
    return table(["JPEGs", "folder, images/s", "converted --max_side 320, images/s", "converted / folder"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[5_000, 50_000])
    parser.add_argument("--images", type=int, default=240, help="photo-sized JPEGs")
    parser.add_argument("--phone-images", type=int, default=48, help="phone-camera-sized JPEGs (4032x3024)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=2, help="epochs per measurement")
    args = parser.parse_args()
    report("Start-up: a folder of small files against its converted form (fresh process, empty cache)",
           start_up_table(args.files))
    report(f"Training loader: folder against converted with --max_side 320 ({args.workers} workers, 224 px)",
           loader_table(args))


if __name__ == "__main__":
    main()
