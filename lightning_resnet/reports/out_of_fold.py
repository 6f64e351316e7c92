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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data import SPLIT_CSV, ImageSamples, collate_readable, read_split_csv
from ..data.sources.converted import indexed_images
from ..data.sources.converted_manifest import ConvertedData
from ..data.workers import worker_options
from ..errors import UserError, check
from ..stages import TRAIN, VAL

OOF_CSV = "oof_predictions.csv"
OOF_EMBEDDINGS = "oof_embeddings.npy"
FOLD_PROBABILITIES = "probabilities.npy"
FOLD_THRESHOLDS = "label_thresholds.npy"
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
    arrays: read from their files, or from the fold parts of ``converted``. An image that cannot be read now
    has NaN rows. A backbone whose features of these files are in the feature cache (``model.cache_features``,
    frozen to the end) is not run again: its head reads them."""
    from ..inference.shipped import CheckpointClassifier
    from ..training.feature_cache import cached_features

    classifier = CheckpointClassifier(checkpoint, "--ckpt_path")
    classifier.to("cuda" if torch.cuda.is_available() else "cpu")
    cached = cached_features(classifier.network, classifier.view, classifier.normalization, paths) \
        if converted is None else None
    if cached is not None:
        with torch.inference_mode():
            logits = classifier.network.forward_head(cached.to(classifier.shipped.shift.device))
            probabilities = classifier.shipped.probabilities(logits / classifier.temperature)
        np.save(output / FOLD_PROBABILITIES, probabilities.float().cpu().numpy())
        save_thresholds(classifier.label_thresholds, output)
        np.save(output / FOLD_EMBEDDINGS, cached.float().numpy())
        return
    if converted is None:
        dataset = ImageSamples([(path, path) for path in paths], classifier.view)
    else:
        dataset = indexed_images(converted, converted.labelled_parts(), classifier.view, target="path")
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_readable, **worker_options(workers))
    row_of = {path: row for row, path in enumerate(paths)}
    probabilities = np.full((len(paths), len(classifier.class_names)), np.nan, dtype=np.float32)
    features = None
    for batch in loader:
        if batch is None:
            continue
        crops, batch_paths = batch
        rows = np.array([row_of[path] for path in batch_paths])
        batch_probabilities, batch_features = classifier.embed(crops)
        if features is None:
            features = np.full((len(paths), batch_features.shape[1]), np.nan, dtype=np.float32)
        probabilities[rows] = batch_probabilities.numpy()
        features[rows] = batch_features.numpy()
    check(features is not None, f"{checkpoint}: none of the {len(paths)} images could be read")
    np.save(output / FOLD_PROBABILITIES, probabilities)
    np.save(output / FOLD_EMBEDDINGS, features)
    save_thresholds(classifier.label_thresholds, output)


def save_thresholds(thresholds: Sequence[float] | None, output: Path) -> None:
    """A multi-label fold model's label thresholds, beside its probabilities (nothing for one class per image)."""
    if thresholds is not None:
        np.save(output / FOLD_THRESHOLDS, np.array(thresholds, dtype=np.float32))


def write_out_of_fold(group: Path, images: CrossValidatedImages, class_names: Sequence[str]) -> Path:
    """``oof_predictions.csv`` and ``oof_embeddings.npy``: each image's row from the fold that validated it."""
    folds = np.array(images.folds)
    probabilities = np.empty((len(folds), len(class_names)), dtype=np.float32)
    thresholds = np.full((len(folds), len(class_names)), np.nan, dtype=np.float32)  # a multi-label fold model's
    embeddings = None
    for fold in range(int(folds.max()) + 1):
        rows = folds == fold
        probabilities[rows] = np.load(fold_folder(group, fold) / FOLD_PROBABILITIES)[rows]
        if (fold_folder(group, fold) / FOLD_THRESHOLDS).is_file():
            thresholds[rows] = np.load(fold_folder(group, fold) / FOLD_THRESHOLDS)
        fold_features = np.load(fold_folder(group, fold) / FOLD_EMBEDDINGS, mmap_mode="r")
        if embeddings is None:
            embeddings = np.empty((len(folds), fold_features.shape[1]), dtype=np.float32)
        embeddings[rows] = fold_features[rows]
    np.save(group / OOF_EMBEDDINGS, embeddings)
    with open(group / OOF_CSV, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([*LABEL_COLUMNS, *(PROBABILITY_PREFIX + name for name in class_names)])
        for path, label, fold, row, cut in zip(images.paths, images.labels, images.folds, probabilities, thresholds):
            if not np.isfinite(row).all():
                prediction = ""
            elif np.isfinite(cut).all():  # a label set: the labels at or above their fold model's thresholds
                prediction = " ".join(name for name, value, at in zip(class_names, row, cut) if value >= at)
            else:
                prediction = class_names[int(np.argmax(row))]
            writer.writerow([path, fold, label, prediction, *(f"{p:.6g}" for p in row)])
    return group / OOF_CSV


@dataclass(frozen=True)
class OutOfFold:
    """A cross-validation's out-of-fold predictions as ``inspect --predictions`` reads them back."""

    folder: Path
    class_names: tuple[str, ...]
    paths: tuple[str, ...]
    labels: np.ndarray
    """Class index of each image (its given label); -1 in a multi-label set, whose labels are :attr:`label_sets`."""
    folds: np.ndarray
    probabilities: np.ndarray
    """Out-of-fold calibrated probabilities (each label's, in a multi-label set), a row per image (NaN where the
    image could not be read)."""
    label_sets: tuple[tuple[int, ...], ...] | None = None
    """A multi-label set's given labels of each image; None for one class per image."""
    predictions: tuple[str, ...] = ()
    """What the fold model that validated each image predicts (a class, or labels separated by spaces)."""

    def label_text(self, row: int) -> str:
        """The image's given class, or its labels separated by spaces."""
        if self.label_sets is None:
            return self.class_names[self.labels[row]]
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
    """The ``crossval_N`` folder of ``cross_validate``; one line naming ``--predictions`` when it is not one."""
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
    sets = [tuple(sorted(index.get(name, -1) for name in row["label"].split())) for row in rows]
    multilabel = any(len(labels) != 1 for labels in sets)
    check(all(-1 not in labels for labels in sets), f"--predictions {table}: a label column names a class its "
                                                    f"probability columns do not have ({', '.join(names)})")
    return OutOfFold(
        folder=folder,
        class_names=names,
        paths=tuple(row["path"] for row in rows),
        labels=np.array([-1 if multilabel else labels[0] for labels in sets]),
        folds=np.array([int(row["fold"]) for row in rows]),
        probabilities=np.array([[float(row[PROBABILITY_PREFIX + n]) for n in names] for row in rows],
                               dtype=np.float64),
        label_sets=tuple(sets) if multilabel else None,
        predictions=tuple(row["prediction"] for row in rows),
    )
