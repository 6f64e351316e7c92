"""Similar images: which index ``similar`` searches with, and how often a trained model's nearest images share the
query's class.

1. The index. Vectors like a ResNet-18's pooled features (512 non-negative numbers) at 10,000 and 100,000 rows, 100
   queries of the 10 nearest by cosine distance: the seconds to build each library's index and to answer the
   queries, and the share of the exact answer each finds (recall@10). FAISS's flat inner-product index (exact),
   usearch's HNSW graph (approximate) and its exact search, scikit-learn's brute-force ``NearestNeighbors``.
2. The features. The demo recipe (``configs/demo.yaml``) trained on the digits, then ``embed`` over all 1,797; for
   each image, its 10 nearest others: the share of them of its own class, against the same network untrained (the
   random row) and chance (a tenth). An image's exact copy under another name must come first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, report, table

QUERIES = 100
K = 10


def pooled_like(rows: int, dimensions: int, seed: int) -> np.ndarray:
    """Rows shaped like averaged ReLU outputs: non-negative, sparse-ish, clustered around 50 centres."""
    rng = np.random.default_rng(seed)
    centres = np.maximum(rng.normal(size=(50, dimensions)), 0)
    return (centres[rng.integers(0, 50, rows)] + np.maximum(rng.normal(scale=0.7, size=(rows, dimensions)), 0)
            ).astype(np.float32)


def timed(work) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def index_rows(sizes: list[int], dimensions: int) -> list[list[str]]:
    return [row for size in sizes for row in index_rows_of_size(size, dimensions)]


def index_rows_of_size(size: int, dimensions: int) -> list[list[str]]:
    import faiss
    from sklearn.neighbors import NearestNeighbors
    from usearch.index import Index, MetricKind, search

    from lightning_resnet.inference.similarity import unit_rows

    data = unit_rows(pooled_like(size, dimensions, seed=size))
    queries = unit_rows(pooled_like(QUERIES, dimensions, seed=size + 1))
    exact = np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :K]

    def recall(found: np.ndarray) -> str:
        return f"{np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)]):.3f}"

    def faiss_flat():
        index = faiss.IndexFlatIP(dimensions)
        index.add(data)
        return index

    def usearch_hnsw():
        index = Index(ndim=dimensions, metric="cos")
        index.add(np.arange(size), data)
        return index

    rows = []
    build, index = timed(faiss_flat)
    query, (_, found) = timed(lambda: index.search(queries, K))
    rows.append([f"{size:,}", "FAISS IndexFlatIP (exact, chosen)", f"{build:.3f}", f"{query:.3f}", recall(found)])
    build, graph = timed(usearch_hnsw)
    query, matches = timed(lambda: graph.search(queries, K))
    rows.append([f"{size:,}", "usearch HNSW (approximate)", f"{build:.3f}", f"{query:.3f}", recall(matches.keys)])
    query, matches = timed(lambda: search(data, queries, K, MetricKind.Cos, exact=True))
    rows.append([f"{size:,}", "usearch exact search", "-", f"{query:.3f}", recall(matches.keys)])
    build, nearest = timed(lambda: NearestNeighbors(n_neighbors=K, metric="cosine", algorithm="brute").fit(data))
    query, (_, found) = timed(lambda: nearest.kneighbors(queries))
    rows.append([f"{size:,}", "scikit-learn NearestNeighbors (brute, exact)", f"{build:.3f}", f"{query:.3f}",
                 recall(found)])
    return rows


def same_class_share(paths: tuple[str, ...], features: np.ndarray) -> float:
    """For each image, the share of its 10 nearest others (itself left out) of its own class (its folder)."""
    from lightning_resnet.inference.similarity import Embeddings, NearestImages

    index = NearestImages(Embeddings(paths, features, "bench"))
    found = index.search(features, K + 1)
    labels = [Path(path).parent.name for path in paths]
    shares = []
    for path, label, neighbours in zip(paths, labels, found):
        others = [each for each in neighbours if each.path != path][:K]
        shares.append(np.mean([Path(each.path).parent.name == label for each in others]))
    return float(np.mean(shares))


def feature_rows(work: Path) -> tuple[list[list[str]], str]:
    from lightning_resnet.bundle import read_bundle
    from lightning_resnet.cli import main as cli
    from lightning_resnet.data import DIGITS_DIR, write_digits
    from lightning_resnet.models import create_model
    from lightning_resnet.runtimes import TorchPredictor, predict_images
    from lightning_resnet.training.checkpoints import best_checkpoint

    os.chdir(work)
    digits = work / DIGITS_DIR
    write_digits(digits)
    took, run = timed(lambda: cli(["fit", "--config", str(ROOT / "configs/demo.yaml"), "--data.data_dir", str(digits),
                                   "--trainer.enable_progress_bar", "false"]))
    best = best_checkpoint(run.trainer)
    embed_seconds, written = timed(lambda: cli(["embed", "--model", str(best.path), "--input", str(digits),
                                                "--output", str(work / "digits.npz")]))
    saved = np.load(written)
    paths, trained = tuple(saved["paths"].tolist()), saved["features"]
    bundle = read_bundle(best.path)
    architecture = bundle.architecture
    untrained_network = create_model(architecture.backbone, num_classes=bundle.num_classes,
                                     **dict(architecture.options)).eval()
    untrained = predict_images(TorchPredictor(bundle, untrained_network), list(paths), features=True).features.numpy()
    copy = work / "query" / "copy.png"
    copy.parent.mkdir()
    shutil.copy(paths[100], copy)
    cli(["similar", "--embeddings", str(written), "--image", str(copy), "--k", "10", "--output", str(work / "q")])
    first = (work / "q" / "similar.csv").read_text().splitlines()[1].split(",")
    rows = [[f"trained (the demo recipe, {best.monitor} {best.score:.4f})", f"{same_class_share(paths, trained):.3f}"],
            ["the same network untrained", f"{same_class_share(paths, untrained):.3f}"],
            ["chance", "0.100"]]
    note = (f"{len(paths)} digits, {trained.shape[1]} features each; fit {took:.0f} s, embed {embed_seconds:.1f} s. "
            f"An exact copy of {Path(paths[100]).name} as a query: nearest {Path(first[2]).name} at distance "
            f"{float(first[3]):.6f} ({'itself' if first[2] == paths[100] else 'NOT itself'}).")
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dimensions", type=int, default=512)
    options = parser.parse_args()
    report("Similar images: the index", table(
        ["vectors", "index", "build s", f"{QUERIES} queries s", "recall@10"],
        index_rows(options.sizes, options.dimensions)))
    with tempfile.TemporaryDirectory() as work:
        rows, note = feature_rows(Path(work))
        os.chdir(ROOT)
    report("Similar images: the 10 nearest of each digit", table(["features", "share of its own class"], rows)
           + "\n\n" + note)


if __name__ == "__main__":
    main()
