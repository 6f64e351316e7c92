"""``embed`` and ``similar`` through the command line: a folder's features in one ``.npz`` numpy reads, the nearest
images of a query (its exact copy first) as ``similar.csv`` and ``similar.png``, the same neighbours from a checkpoint
and from its ONNX export, and one line for each bad input."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from lightning_resnet.cli import main
from lightning_resnet.inference.similarity import Embeddings, NearestImages

from ..conftest import cli_error


def best_of(trained: Path) -> Path:
    return next((trained / "checkpoints").glob("best-*.ckpt"))


def neighbours(csv_file: Path) -> dict[str, list[tuple[str, float]]]:
    """Each query's neighbours, nearest first, with their distances."""
    found: dict[str, list[tuple[str, float]]] = {}
    with open(csv_file, newline="") as handle:
        for row in csv.DictReader(handle):
            assert int(row["rank"]) == len(found.setdefault(row["query"], [])) + 1
            found[row["query"]].append((row["path"], float(row["distance"])))
    return found


def test_the_index_answers_the_exact_nearest_by_cosine_distance():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 16)).astype(np.float32)
    index = NearestImages(Embeddings(tuple(f"{row}.png" for row in range(200)), features, "model.ckpt"))
    queries = np.concatenate([features[[7]] * 3.0, rng.normal(size=(4, 16)).astype(np.float32)])  # a scaled copy
    found = index.search(queries, 5)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    for query, answered in zip(queries, found):
        distances = 1 - unit @ (query / np.linalg.norm(query))
        expected = np.argsort(distances, kind="stable")[:5]
        assert [each.path for each in answered] == [f"{row}.png" for row in expected]
        assert np.allclose([each.distance for each in answered], distances[expected], atol=1e-5)
    assert found[0][0].path == "7.png" and found[0][0].distance < 1e-6 and found[0][0].rank == 1
    assert len(index.search(queries[:1], 500)[0]) == 200  # k beyond the index: all of it


@pytest.mark.slow  # embeds the folder twice (checkpoint and ONNX) and exports
def test_embed_then_similar_from_a_checkpoint_and_from_its_onnx_export_give_the_same_neighbours(trained, workdir,
                                                                                              capsys):
    best = best_of(trained)
    folder = workdir / "images"
    original = sorted((folder / "class_1").iterdir())[3]
    query = workdir / "queries" / f"copy_of_one{original.suffix}"
    query.parent.mkdir()
    shutil.copy(original, query)
    (workdir / "queries" / "another.png").write_bytes(sorted((folder / "class_2").iterdir())[0].read_bytes())

    written = main(["embed", "--model", str(best), "--input", str(folder)])
    assert written == best.with_name(best.name + ".embeddings.npz")
    saved = np.load(written)  # a user's two lines
    features, paths = saved["features"], saved["paths"]
    images = sorted(str(path) for path in folder.rglob("*") if path.is_file())
    assert sorted(paths.tolist()) == images and features.shape == (len(images), 128) and features.dtype == np.float32
    assert "similar --embeddings" in capsys.readouterr().out

    answered = main(["similar", "--embeddings", str(written), "--image", str(workdir / "queries"), "--k", "5",
                     "--output", str(workdir / "from_checkpoint")])
    from_checkpoint = neighbours(answered)
    assert set(from_checkpoint) == {str(query), str(workdir / "queries" / "another.png")}
    first_path, first_distance = from_checkpoint[str(query)][0]
    assert first_path == str(original) and first_distance < 1e-5  # its exact copy first
    assert all(len(found) == 5 for found in from_checkpoint.values())
    assert all(a[1] <= b[1] for found in from_checkpoint.values() for a, b in zip(found, found[1:]))
    assert (workdir / "from_checkpoint" / "similar.png").stat().st_size > 1000

    onnx = workdir / "shipped" / "model.onnx"
    main(["export", "--ckpt_path", str(best), "--output", str(onnx)])
    main(["embed", "--model", str(onnx), "--input", str(folder)])
    from_onnx = neighbours(main(["similar", "--embeddings", str(onnx) + ".embeddings.npz", "--image",
                                 str(workdir / "queries"), "--k", "5", "--output", str(workdir / "from_onnx")]))
    assert from_onnx.keys() == from_checkpoint.keys()
    for key in from_checkpoint:
        assert [path for path, _ in from_onnx[key]] == [path for path, _ in from_checkpoint[key]]
        assert np.allclose([d for _, d in from_onnx[key]], [d for _, d in from_checkpoint[key]], atol=1e-4)


def test_bad_inputs_are_one_line(trained, workdir, capsys):
    best = best_of(trained)
    folder = workdir / "images"
    embedded = Embeddings(tuple(str(path) for path in sorted(folder.rglob("*.png"))[:4]),
                          np.ones((4, 128), np.float32), str(best)).save(workdir / "few.npz")
    other_width = Embeddings(("a.png",), np.ones((1, 7), np.float32), str(best)).save(workdir / "other.npz")
    (workdir / "notes.txt").write_text("not an image")
    (workdir / "broken.png").write_bytes(b"\x89PNG not really")
    (workdir / "junk.npz").write_bytes(b"junk")
    image = str(sorted(folder.rglob("*.png"))[0])
    cases = [
        (["similar", "--embeddings", str(embedded), "--image", image, "--k", "0"], ["--k must be at least 1", "0"]),
        (["similar", "--embeddings", str(embedded), "--image", str(workdir / "notes.txt")],
         ["--image", "notes.txt", "is not an image file"]),
        (["similar", "--embeddings", str(embedded), "--image", str(workdir / "broken.png")],
         ["--image", "broken.png", "is not a readable image"]),
        (["similar", "--embeddings", str(workdir / "missing.npz"), "--image", image],
         ["--embeddings", "missing.npz", "does not exist", "embed"]),
        (["similar", "--embeddings", str(workdir / "junk.npz"), "--image", image],
         ["--embeddings", "junk.npz", "is not a file of embed's"]),
        (["similar", "--embeddings", str(other_width), "--image", image], ["gives 128 features", "7"]),
        (["embed", "--model", str(best), "--input", str(workdir / "nowhere")],
         ["--input", "nowhere", "does not exist"]),
        (["embed", "--model", str(best), "--input", str(folder), "--output", str(workdir / "e.csv")],
         ["--output", "e.csv", ".npz"]),
        (["embed", "--model", str(workdir / "nomodel.ckpt"), "--input", str(folder)], ["nomodel.ckpt"]),
    ]
    for args, words in cases:
        code, error = cli_error(capsys, args)
        lines = [line for line in error.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in error, (args, error)
        assert all(word in lines[0] for word in words), (args, lines[0])
    assert not (workdir / "similar.csv").exists() and not (workdir / "e.csv").exists()
