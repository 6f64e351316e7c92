"""``similar``: the images of an embedded folder (``embed``'s ``.npz``) nearest to a query image, or to each image of
a folder of queries, by the cosine distance of the model's pooled features: ``similar.csv`` (query, rank, path,
distance) and ``similar.png``, a row of pictures per query."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

from jsonargparse import Namespace

from ..data import scan_unlabelled
from ..errors import UserError, check
from ..hints import shown
from ..inference.similarity import Embeddings, NearestImages, Neighbour
from ..reports import plots
from .options import CommandParser

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..runtimes import Predictor

COMMAND = "similar"
SIMILAR_CSV = "similar.csv"
SIMILAR_PNG = "similar.png"
PICTURED_QUERIES = 8
"""The queries ``similar.png`` pictures (the CSV has them all)."""


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    parser.add_argument("--embeddings", type=Path, required=True, help="the .npz that embed wrote of a folder")
    parser.add_argument("--image", type=Path, required=True, help="a query image, or a folder of them")
    parser.add_argument("--k", type=int, default=10, help="the nearest images to answer for each query")
    parser.add_argument("--model", type=Path | None, default=None,
                        help="the model that reads the queries (default: the one that computed the embeddings)")
    parser.add_argument("--output", type=Path | None, default=None,
                        help=f"the folder of {SIMILAR_CSV} and {SIMILAR_PNG} (default: beside the embeddings)")
    return parser.parse_args(args)


def similar(args: list[str]) -> Path:
    """Answer the ``--k`` nearest images of each query; returns ``similar.csv``."""
    from ..runtimes import open_predictor, predict_images

    options = parse(args)
    check(options.k >= 1, f"--k must be at least 1, got {options.k}")
    embeddings = Embeddings.load(options.embeddings.expanduser())
    queries = scan_unlabelled(options.image.expanduser(), "--image")
    model_path = options.model or Path(embeddings.model)
    model = open_predictor(model_path, "--model" if options.model else f"the model of --embeddings {embeddings.model}")
    seen = predict_images(model, queries, features=True)
    unreadable = ", ".join(map(str, seen.unreadable[:3]))
    check(not seen.unreadable, f"--image {options.image}: {unreadable} is not a readable image")
    index = NearestImages(embeddings)
    check(seen.features.shape[1] == index.dimensions,
          f"--model {model_path} gives {seen.features.shape[1]} features an image, the embeddings of "
          f"{options.embeddings} {index.dimensions}: give the model that embedded them")
    found = index.search(seen.features.numpy(), options.k)
    folder = options.output or options.embeddings.parent
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / SIMILAR_CSV, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("query", "rank", "path", "distance"))
        writer.writerows((query, each.rank, each.path, f"{each.distance:.6f}")
                         for query, neighbours in zip(seen.keys, found) for each in neighbours)
    picture(model, list(zip(seen.keys, found))[:PICTURED_QUERIES]).savefig(folder / SIMILAR_PNG, dpi=100)
    nearest = found[0][0]
    print(f"wrote {shown(folder / SIMILAR_CSV)} and {SIMILAR_PNG}: the {len(found[0])} nearest of "
          f"{len(embeddings.paths)} images for {len(queries)} {'query' if len(queries) == 1 else 'queries'}; "
          f"nearest to {Path(seen.keys[0]).name}: {nearest.path} (cosine distance {nearest.distance:.4f})")
    return folder / SIMILAR_CSV


def picture(model: Predictor, rows: list[tuple[str, list[Neighbour]]]) -> Figure:
    """A row per query: the query, then its neighbours nearest first, each titled with its rank and distance."""
    grid = []
    for query, neighbours in rows:
        row = []
        titled = [(query, "query"), *((each.path, f"{each.rank}. {each.distance:.3f}") for each in neighbours)]
        for path, title in titled:
            try:
                row.append((model.view(path).float() / 255, f"{title}\n{Path(path).name}"))
            except (OSError, ValueError, UserError):  # an embedded image since moved or removed
                row.append((None, f"{title}\n(unreadable)"))
        grid.append(row)
    return plots.pictures_figure(grid)
