"""Out-of-fold predictions of a cross-validation: every image seen by the fold model that never trained on it.

After each fold, ``cross_validate`` runs the fold's best checkpoint over every image of the
cross-validation, read as ``predict`` reads it, and keeps in the fold's folder the calibrated
probabilities (``probabilities.npy``) and the penultimate layer's pooled features
(``embeddings.npy``) of all of them, row for row in the order of ``oof_predictions.csv``. At the
end, each image's row is taken from the fold that validated it: ``oof_predictions.csv`` (path,
fold, label, prediction, the probability of every class; of a multi-label set, the label sets, the prediction at
each fold model's thresholds, and every label's probability) and ``oof_embeddings.npy``. The arrays
are numpy's ``.npy`` (float32; ``numpy.load`` reads them, memory-mapped if need be): plain arrays
of one dtype need nothing more. A fold's features of all images, not only of its validation images,
let ``inspect`` compare an image with the images its model trained on, in that model's feature space.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from ..bundle import read_bundle
from ..data import SPLIT_CSV, read_split_csv
from ..data.sources.converted import indexed_images
from ..data.sources.converted_manifest import ConvertedData
from ..errors import UserError, check
from ..runtimes import TorchPredictor, predict_images
from ..stages import TRAIN, VAL
from ..tasks import Decision, Task, decision_from, task_of

OOF_CSV = "oof_predictions.csv"
OOF_EMBEDDINGS = "oof_embeddings.npy"
FOLD_PROBABILITIES = "probabilities.npy"
FOLD_DECISION = "decision.json"
FOLD_EMBEDDINGS = "embeddings.npy"
PROBABILITY_PREFIX = "p_"
"""``oof_predictions.csv`` has one ``p_<class>`` column per class, in class index order."""
LABEL_COLUMNS = ("path", "fold", "label", "prediction")


def fold_folder(group: Path, fold: int) -> Path:
    return group / f"fold_{fold}"


@dataclass(frozen=True)
class CrossValidatedImages:
    """The images of a cross-validation in row order, each with its class name and the fold that validated it."""

    paths: tuple[str, ...]
    labels: tuple[str, ...]
    folds: tuple[int, ...]

    @classmethod
    def from_splits(cls, group: Path, num_folds: int) -> CrossValidatedImages:
        """From the folds' ``split.csv``: fold K's validation rows are the images fold K validated."""
        validated: dict[str, tuple[str, int]] = {}
        for fold in range(num_folds):
            for row in read_split_csv(fold_folder(group, fold) / SPLIT_CSV):
                if row["split"] == VAL:
                    validated[row["path"]] = (row["class"], fold)
        everything = set(cross_validated_paths(fold_folder(group, 0)))
        check(set(validated) == everything, f"{group}: the folds' split.csv files do not cover the same images "
                                            "once each; were the folds run with different data options?")
        paths = tuple(sorted(validated))
        return cls(paths, tuple(validated[p][0] for p in paths), tuple(validated[p][1] for p in paths))


def cross_validated_paths(fold_run: Path) -> list[str]:
    """Every image of the cross-validation (each fold trains or validates each), in row order, from one fold's
    ``split.csv``."""
    return sorted(row["path"] for row in read_split_csv(fold_run / SPLIT_CSV) if row["split"] in (TRAIN, VAL))


def run_fold_model(checkpoint: Path, paths: Sequence[str], output: Path, workers: int,
                   converted: ConvertedData | None = None, batch_size: int = 128) -> None:
    """The probabilities and features of every image of ``paths`` under ``checkpoint``, written as the fold's two
    arrays with its decision beside them: read from their files, or from the fold parts of ``converted``. An image
    that cannot be read now has NaN rows. A backbone whose features of these files are in the feature cache
    (``model.cache_features``, frozen to the end) is not run again: its head reads them."""
    from ..training.feature_cache import cached_features

    predictor = TorchPredictor(read_bundle(checkpoint)).to("cuda" if torch.cuda.is_available() else "cpu")
    (output / FOLD_DECISION).write_text(json.dumps(predictor.bundle.decision.as_dict()) + "\n")
    cached = cached_features(predictor.network, predictor.view, predictor.bundle.preprocessing.normalization,
                             paths) if converted is None else None
    if cached is not None:
        outputs = predictor.head(cached)
        np.save(output / FOLD_PROBABILITIES, outputs.probabilities.float().numpy())
        np.save(output / FOLD_EMBEDDINGS, cached.float().numpy())
        return
    images = paths if converted is None else indexed_images(converted, converted.labelled_parts(), predictor.view,
                                                            target="path")
    seen = predict_images(predictor, images, batch_size, workers, features=True)
    check(len(seen.keys) > 0, f"{checkpoint}: none of the {len(paths)} images could be read")
    row_of = {path: row for row, path in enumerate(paths)}
    rows = np.array([row_of[path] for path in seen.keys])
    probabilities = np.full((len(paths), len(predictor.class_names)), np.nan, dtype=np.float32)
    features = np.full((len(paths), seen.features.shape[1]), np.nan, dtype=np.float32)
    probabilities[rows], features[rows] = seen.probabilities.numpy(), seen.features.numpy()
    np.save(output / FOLD_PROBABILITIES, probabilities)
    np.save(output / FOLD_EMBEDDINGS, features)


def fold_decision(group: Path, fold: int, num_classes: int) -> Decision:
    return decision_from(json.loads((fold_folder(group, fold) / FOLD_DECISION).read_text()), num_classes)


def write_out_of_fold(group: Path, images: CrossValidatedImages, class_names: Sequence[str]) -> Path:
    """``oof_predictions.csv`` and ``oof_embeddings.npy``: each image's row from the fold that validated it, its
    prediction as that fold model's decision answers."""
    folds = np.array(images.folds)
    probabilities = np.empty((len(folds), len(class_names)), dtype=np.float32)
    predictions = [""] * len(folds)
    embeddings = None
    for fold in range(int(folds.max()) + 1):
        rows = folds == fold
        probabilities[rows] = np.load(fold_folder(group, fold) / FOLD_PROBABILITIES)[rows]
        readable = np.flatnonzero(rows & np.isfinite(probabilities).all(axis=1))
        decision = fold_decision(group, fold, len(class_names))
        answers = decision.task.answers(torch.from_numpy(probabilities[readable]), decision, class_names)
        for row, answer in zip(readable.tolist(), answers):
            predictions[row] = answer
        fold_features = np.load(fold_folder(group, fold) / FOLD_EMBEDDINGS, mmap_mode="r")
        if embeddings is None:
            embeddings = np.empty((len(folds), fold_features.shape[1]), dtype=np.float32)
        embeddings[rows] = fold_features[rows]
    np.save(group / OOF_EMBEDDINGS, embeddings)
    with open(group / OOF_CSV, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*LABEL_COLUMNS, *(PROBABILITY_PREFIX + name for name in class_names)])
        for path, label, fold, prediction, row in zip(images.paths, images.labels, images.folds, predictions,
                                                      probabilities):
            writer.writerow([path, fold, label, prediction, *(f"{p:.6g}" for p in row)])
    return group / OOF_CSV


@dataclass(frozen=True)
class OutOfFold:
    """A cross-validation's out-of-fold predictions as ``inspect --predictions`` reads them back."""

    folder: Path
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    label_sets: tuple[tuple[int, ...], ...]
    """The given class of each image (a set of one), or its given labels."""
    folds: np.ndarray
    probabilities: np.ndarray
    """Out-of-fold calibrated probabilities (each label's, in a multi-label set), a row per image (NaN where the
    image could not be read)."""
    task: Task
    predictions: tuple[str, ...] = ()
    """What the fold model that validated each image predicts (a class, or labels separated by spaces)."""

    @property
    def labels(self) -> np.ndarray:
        """The given class index of each image, of one class per image."""
        return np.array([labels[0] for labels in self.label_sets])

    def label_text(self, row: int) -> str:
        """The image's given class, or its labels separated by spaces."""
        return " ".join(self.class_names[index] for index in self.label_sets[row])

    @property
    def num_folds(self) -> int:
        return int(self.folds.max()) + 1

    def fold_embeddings(self, fold: int) -> np.ndarray:
        """Every image's features under fold ``fold``'s model."""
        return np.load(fold_folder(self.folder, fold) / FOLD_EMBEDDINGS, mmap_mode="r")

    @cached_property
    def readable(self) -> np.ndarray:
        return np.isfinite(self.probabilities).all(axis=1)


def read_out_of_fold(folder: Path) -> OutOfFold:
    """The ``crossval_N`` folder of ``cross_validate``; one line naming ``--predictions`` when it is not one. The
    task is the fold models' (a folder written before they kept their decision: a label set where some image has
    other than one label)."""
    table = folder / OOF_CSV
    if not table.is_file():
        raise UserError(f"--predictions {folder} has no {OOF_CSV}: expected the crossval_N folder a "
                        "cross_validate run wrote (logs/<experiment>/crossval_N)")
    with open(table, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        rows = list(reader)
    names = tuple(column[len(PROBABILITY_PREFIX):] for column in columns[len(LABEL_COLUMNS):])
    check(tuple(columns[:len(LABEL_COLUMNS)]) == LABEL_COLUMNS and names and rows,
          f"--predictions {table} is not an {OOF_CSV} of cross_validate")
    index = {name: number for number, name in enumerate(names)}
    sets = tuple(tuple(sorted(index.get(name, -1) for name in row["label"].split())) for row in rows)
    check(all(-1 not in labels for labels in sets), f"--predictions {table}: a label column names a class its "
                                                    f"probability columns do not have ({', '.join(names)})")
    decided = fold_folder(folder, 0) / FOLD_DECISION
    task = (fold_decision(folder, 0, len(names)).task if decided.is_file() else
            task_of(any(len(labels) != 1 for labels in sets)))
    return OutOfFold(
        folder=folder,
        class_names=names,
        paths=tuple(row["path"] for row in rows),
        label_sets=sets,
        folds=np.array([int(row["fold"]) for row in rows]),
        probabilities=np.array([[float(row[PROBABILITY_PREFIX + n]) for n in names] for row in rows],
                               dtype=np.float64),
        task=task,
        predictions=tuple(row["prediction"] for row in rows),
    )
