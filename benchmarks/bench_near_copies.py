"""How right the near-copy groups are (``lightning_resnet/data/duplicates.py``): on five kinds of images, with
copies planted, which pairs the groups join and whether they are truly copies.

Each folder holds distinct images of its classes, and for every sixth image one planted copy, the kinds in turn:
re-encoded as JPEG quality 60, resized by -25 % (JPEG 75), resized by +25 % (PNG), cropped by 3 % on each side
(JPEG 90). The kinds of images:

- ``photos``: 80 x 80 patches of scikit-learn's two sample photos (a temple, a flower), side by side without
  overlap (60 of each photo: 2 classes);
- ``fashion``: Fashion-MNIST, 28 px gray photos of clothes (Debian's ``dataset-fashion-mnist``; 40 of each of the
  10 classes);
- ``photo_like``: ``benchmarks/photo_like.py``'s 64 px scenes (shapes on clutter; 40 of each of 6 classes);
- ``drawn``: what issue 51 reported, 96 px drawings on a plain background: a circle, a square, stripes and a
  triangle in random colours, places and sizes (60 of each);
- ``digits``: scikit-learn's digits drawn at 28 px (the demo's images at MNIST's size; 40 of each of 10).

For each folder and each version of the code (``--before``: a checkout of the project to compare with, run in a
process of its own): the pairs the groups join (every two members of a group), how many of them are a planted
copy and its original (precision), how many planted copies were found (recall), the groups that mix classes, the
largest group and the images grouped. Nothing is trained; a run takes about a minute.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import ROOT, command, machine, table
from tests.conftest import DRAWINGS, make_drawing

FASHION = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
COPY_EVERY = 6


def planted_copy(image: Image.Image, kind: int) -> tuple[Image.Image, str]:
    """A copy of ``image`` of the ``kind``-th sort (in turn), and the suffix it is saved with."""
    rgb = image.convert("RGB")
    if kind == 0:
        encoded = io.BytesIO()
        rgb.save(encoded, "JPEG", quality=60)
        return Image.open(io.BytesIO(encoded.getvalue())), ".jpg"
    if kind == 1:
        return rgb.resize((rgb.width * 3 // 4, rgb.height * 3 // 4), Image.Resampling.BILINEAR), ".jpg"
    if kind == 2:
        return rgb.resize((rgb.width * 5 // 4, rgb.height * 5 // 4), Image.Resampling.BILINEAR), ".png"
    cut = max(1, round(0.03 * min(rgb.size)))
    return rgb.crop((cut, cut, rgb.width - cut, rgb.height - cut)), ".jpg"


def photos(rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    from sklearn.datasets import load_sample_images

    found = []
    for name, pixels in zip(("temple", "flower"), load_sample_images().images):
        patches = [(top, left) for top in range(0, pixels.shape[0] - 79, 80)
                   for left in range(0, pixels.shape[1] - 79, 80)]
        for top, left in patches[:60]:
            found.append((name, Image.fromarray(pixels[top : top + 80, left : left + 80])))
    return found


def fashion(rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    with gzip.open(FASHION) as handle:
        images = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION.with_name("train-labels-idx1-ubyte.gz")) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    chosen = [index for label in range(10) for index in np.flatnonzero(labels == label)[:40]]
    return [(f"class_{labels[index]}", Image.fromarray(images[index], "L")) for index in chosen]


def photo_like(rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    from benchmarks.photo_like import CLASSES, scene

    return [(kind, scene(kind, rng)) for kind in CLASSES for _ in range(40)]


def drawn(rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    return [(kind, make_drawing(kind, rng)) for kind in DRAWINGS for _ in range(60)]


def digits(rng: np.random.Generator) -> list[tuple[str, Image.Image]]:
    from sklearn.datasets import load_digits

    loaded = load_digits()
    chosen = [index for label in range(10) for index in np.flatnonzero(loaded.target == label)[:40]]
    return [(str(loaded.target[index]), Image.fromarray(np.uint8(np.rint(loaded.images[index] * 255 / 16)), "L")
             .resize((28, 28), Image.Resampling.BILINEAR)) for index in chosen]


KINDS = {"photos": photos, "fashion": fashion, "photo_like": photo_like, "drawn": drawn, "digits": digits}


def write_folder(root: Path, images: list[tuple[str, Image.Image]]) -> dict[str, str]:
    """The images and their planted copies under ``root/<class>/``; each file's origin (the original's name)."""
    origin = {}
    for number, (label, image) in enumerate(images):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        original = folder / f"{number:04d}.png"
        image.save(original)
        origin[str(original)] = str(original)
        if number % COPY_EVERY == 0:
            copy, suffix = planted_copy(image, (number // COPY_EVERY) % 4)
            path = folder / f"{number:04d}_copy{suffix}"
            copy.save(path, **({"quality": [60, 75, 0, 90][(number // COPY_EVERY) % 4]} if suffix == ".jpg" else {}))
            origin[str(path)] = str(original)
    return origin


GROUPS = """
import json, sys
from pathlib import Path
from lightning_resnet.data.duplicates import duplicate_groups
from lightning_resnet.data.image_records import image_records
paths = json.loads(sys.stdin.read())
records = image_records(Path(paths[0]).parents[1], paths, with_hashes=True)
print(json.dumps([[paths[i] for i in group.members] for group in duplicate_groups(records)]))
"""


def groups_of(code: Path, paths: list[str], cache: Path) -> list[list[str]]:
    """The near-copy groups the project at ``code`` finds among ``paths`` (in a process of its own)."""
    done = subprocess.run([sys.executable, "-c", GROUPS], input=json.dumps(paths), capture_output=True, text=True,
                          check=True, cwd=code, env={"PYTHONPATH": str(code), "XDG_CACHE_HOME": str(cache),
                                                     "PATH": "/usr/bin:/bin"})
    return json.loads(done.stdout)


COPY_KINDS = ("JPEG 60", "-25 %", "+25 %", "crop 3 %")


def scores(groups: list[list[str]], origin: dict[str, str]) -> dict[str, str]:
    planted = {(origin[path], path) for path in origin if origin[path] != path}
    joined = [tuple(sorted(pair)) for group in groups for pair in combinations(group, 2)]
    true = [pair for pair in joined if origin[pair[0]] == origin[pair[1]]]
    together = {frozenset(pair) for pair in joined}
    found = {kind: [0, 0] for kind in COPY_KINDS}
    for original, copy in planted:
        kind = COPY_KINDS[(int(Path(original).stem) // COPY_EVERY) % 4]
        found[kind][0] += frozenset((original, copy)) in together
        found[kind][1] += 1
    return {"pairs joined": str(len(joined)),
            "precision": f"{len(true) / len(joined):.3f}" if joined else "-",
            **{f"found {kind}": f"{hits}/{count}" for kind, (hits, count) in found.items()},
            "groups mixing classes": str(sum(len({Path(path).parent.name for path in group}) > 1
                                             for group in groups)),
            "largest group": str(max(map(len, groups), default=0)),
            "images grouped": f"{sum(map(len, groups))}/{len(origin)}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--before", type=Path, default=None, help="a checkout of the project to compare with")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--show_wrong", action="store_true", help="print the groups of images that are not copies")
    options = parser.parse_args()
    versions = {"this code": ROOT, **({"before": options.before.resolve()} if options.before else {})}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for kind in options.kinds:
            if kind == "fashion" and not FASHION.is_file():
                print(f"fashion: skipped, {FASHION} is missing (apt install dataset-fashion-mnist)")
                continue
            origin = write_folder(Path(scratch) / kind, KINDS[kind](np.random.default_rng(0)))
            for version, code in versions.items():
                found = groups_of(code, sorted(origin), Path(scratch) / f"cache_{version}")
                rows.append({"images": kind, "code": version, **scores(found, origin)})
                print(rows[-1], flush=True)
                if options.show_wrong:
                    for group in found:
                        if len({origin[path] for path in group}) > 1:
                            print("  not copies:", " ".join(group))
    print(f"\n{command()}\n{machine()}\n")
    print(table(list(rows[0]), [list(row.values()) for row in rows]))


if __name__ == "__main__":
    main()
