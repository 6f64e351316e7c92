"""``inspect``: a data folder as a run sees it, before any training.

Per-class counts per part of the split, formats and colour modes, image sizes, unreadable files, exact and
near-duplicate groups, leaks between the parts, the imbalance ratio; with ``duplicates.csv`` (every copy and the
part it is in), ``split.csv`` (the split ``fit`` would use with the same options) and ``classes.png`` (a few
images per class) written beside the run. With the out-of-fold predictions of a cross-validation, also suspected
label errors, outliers and near-duplicates in feature space (:mod:`.data_issues`). Nothing in the data folder is
changed: ``data.exclude`` and ``data.relabel`` take the user's decisions.

:func:`inspect_folder` reads top to bottom: the split, the counts, the files, the duplicates, the data issues,
the files written.
"""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..data import ConvertedSource, DuplicateGroup, FolderSource, FolderSplit, ImageFolderDataModule, Sample
from ..data.dataset import label_counts, target_names
from ..data.duplicates import MIN_SIDE, left_out_of_near_search
from ..data.splits import SPLIT_CSV, write_split_csv
from ..errors import UserError
from ..stages import PARTS
from ..tasks import MULTI_LABEL, SINGLE_LABEL
from .data_issues import (
    LABEL_ISSUES_CSV,
    LABEL_ISSUES_PNG,
    OUTLIERS_CSV,
    OUTLIERS_PNG,
    LabelIssue,
    Outlier,
    caution,
    feature_duplicates,
    label_issues,
    label_issues_figure,
    outliers,
    outliers_figure,
    write_rows,
)
from .out_of_fold import OutOfFold, read_out_of_fold
from .plots import picture_axes, show_thumbnail

DUPLICATES_CSV = "duplicates.csv"
FEATURES = "features"
"""The ``kind`` in ``duplicates.csv`` of a near-duplicate group found in feature space (the hashes' are exact, near)."""
CLASSES_PNG = "classes.png"


def inspect_folder(data: ImageFolderDataModule, folder: Path, per_class: int = 8,
                   predictions: Path | None = None) -> str:
    """The printed summary of ``data``'s folder; writes ``duplicates.csv``, ``split.csv`` and ``classes.png``
    into ``folder``, and with ``predictions`` (a ``crossval_N`` folder) the files of :func:`data_issue_lines`."""
    source = folder_source(data)
    out_of_fold = read_out_of_fold(predictions) if predictions is not None else None
    split = source.folder_split(find_duplicates=True)
    names = list(source.class_names)
    task = split.listing.task
    lines = [f"{source.layout.describe()}: {len(split.files)} image files, {len(names)} {task.items_described}"]
    lines += count_lines(split, names)
    lines += TASK_LINES[task.name](split, names)
    lines += file_lines(split)
    lines += duplicate_lines(split)
    folder.mkdir(parents=True, exist_ok=True)
    issue_lines, feature_groups = (data_issue_lines(out_of_fold, split.files, split.groups, data.channels, folder)
                                   if out_of_fold is not None else ([], []))
    write_duplicates_csv(folder / DUPLICATES_CSV, split, names, feature_groups)
    write_split_csv(folder / SPLIT_CSV, source.split_rows())
    classes_figure(examples_per_class(split, len(names), per_class), names, data.channels).savefig(
        folder / CLASSES_PNG, dpi=100, bbox_inches="tight")
    lines.append(f"wrote {folder / DUPLICATES_CSV}, {folder / SPLIT_CSV} and {folder / CLASSES_PNG}")
    return "\n".join(lines + issue_lines)


def folder_source(data: ImageFolderDataModule) -> FolderSource:
    """The data module's folder; one line when it reads a converted data set instead."""
    if isinstance(data.source, ConvertedSource):
        raise UserError(f"inspect reads an image folder; data.data_dir {data.data_dir} is a converted data set: "
                        f"give the folder it was converted from ({data.source.converted.source})")
    return data.source


def shown_parts(split: FolderSplit) -> list[str]:
    return [part for part in PARTS if part in split.part_of_files.values()]


def count_lines(split: FolderSplit, names: Sequence[str]) -> list[str]:
    """A table of each class's (or label's) images in each part, and the imbalance ratio."""
    files, part_of = split.files, split.part_of_files
    parts = shown_parts(split)
    counts = {part: label_counts((files[i][1] for i, p in part_of.items() if p == part), len(names)) for part in parts}
    what = split.listing.task.item
    width = max(len(what), *map(len, names))
    lines = [f"{what:<{width}} " + " ".join(f"{part:>7}" for part in parts) + f" {'total':>7}"]
    for index, name in enumerate(names):
        row = [counts[part][index] for part in parts]
        lines.append(f"{name:<{width}} " + " ".join(f"{n:>7,}" for n in row) + f" {sum(row):>7,}")
    totals = label_counts((files[i][1] for i in part_of), len(names))
    largest, smallest = max(totals, default=0), min(totals, default=0)
    lines.append(f"imbalance: largest {what} / smallest = {largest} / {smallest}"
                 + (f" = {largest / smallest:.1f}" if smallest else ""))
    return lines


def co_occurrence_lines(split: FolderSplit, names: Sequence[str], shown: int = 10) -> list[str]:
    """How many labels the images have, and the pairs of labels found together most often."""
    sets = [split.files[i][1] for i in split.part_of_files]
    sizes = Counter(len(labels) for labels in sets)
    pairs = Counter(pair for labels in sets for pair in itertools.combinations(labels, 2))
    together = ", ".join(f"{names[a]} + {names[b]} {count:,}" for (a, b), count in pairs.most_common(shown))
    return [f"labels per image: {', '.join(f'{size}: {sizes[size]:,}' for size in sorted(sizes))}",
            f"together most often: {together or 'no two labels on one image'}"]


def file_lines(split: FolderSplit) -> list[str]:
    """Formats, colour modes, the spread of sizes, and the unreadable files with why."""
    records = split.records
    readable = [i for i, record in enumerate(records) if record.readable]

    def tally(values: list) -> str:
        return ", ".join(f"{value} {count:,}" for value, count in Counter(values).most_common())

    lines = [f"formats: {tally([records[i].format for i in readable])}",
             f"colour modes: {tally([records[i].mode for i in readable])}"]
    for side in ("width", "height"):
        values = np.array([getattr(records[i], side) for i in readable])
        if len(values):
            low, p5, median, p95, high = np.percentile(values, [0, 5, 50, 95, 100]).round().astype(int)
            lines.append(f"{side} px: min {low}, 5% {p5}, median {median}, 95% {p95}, max {high}")
    aspects = np.array([records[i].width / records[i].height for i in readable if records[i].height])
    if len(aspects):
        low, p5, median, p95, high = np.percentile(aspects, [0, 5, 50, 95, 100])
        lines.append(f"aspect ratio (width / height): min {low:.2f}, 5% {p5:.2f}, median {median:.2f}, 95% {p95:.2f}, "
                     f"max {high:.2f}")
    unreadable = [(split.files[i][0], record.problem) for i, record in enumerate(records) if not record.readable]
    lines.append(f"unreadable: {len(unreadable)}" + "".join(f"\n  {path} ({problem})"
                                                             for path, problem in unreadable[:20]))
    return lines


def duplicate_lines(split: FolderSplit) -> list[str]:
    """Exact and near-duplicate groups, images left out of the near-copy search, label conflicts and leaks."""
    files, groups, part_of = split.files, split.groups, split.part_of_files
    lines = []
    for kind in ("exact", "near"):
        chosen = [group for group in groups if group.kind == kind]
        lines.append(f"{kind} duplicates: {len(chosen)} group(s), {sum(len(g.members) for g in chosen)} images")
    too_small = left_out_of_near_search(split.records)
    if too_small:
        lines.append(f"near-copy search: left out {len(too_small)} image(s) under {MIN_SIDE} px a side (too few pixels "
                     "to tell a resized copy from a look-alike; exact copies still count)")
    conflicts = [group for group in groups if len({files[i][1] for i in group.members}) > 1]
    if conflicts:
        lines.append(f"label conflicts: {len(conflicts)} group(s) of copies filed under different classes")
    leaks = [group for group, _ in split.leaks]
    presplit = split.listing.layout.presplit
    lines.append(f"leaks: {len(leaks)} group(s) with copies in more than one of {', '.join(shown_parts(split))}"
                 + ("" if not leaks or presplit else " (data.group_duplicates is off)"))
    for group in leaks[:5]:
        lines.append("  " + " = ".join(f"{files[i][0]} ({part_of.get(i, '-')})" for i in group.members[:3]))
    return lines


def write_duplicates_csv(path: Path, split: FolderSplit, names: Sequence[str],
                         feature_groups: Sequence[tuple[int, ...]]) -> None:
    """Every copy of every group (the hashes' and, with predictions, the feature space's) with its part and class."""
    files, part_of = split.files, split.part_of_files
    found = [(group.kind, group.members) for group in split.groups] + [(FEATURES, group) for group in feature_groups]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["group", "kind", "path", "split", "class"])
        for number, (kind, members) in enumerate(found):
            for i in members:
                writer.writerow([number, kind, files[i][0], part_of.get(i, ""), target_names(files[i][1], names)])


def examples_per_class(split: FolderSplit, num_classes: int, per_class: int) -> dict[int, list[str]]:
    """Up to ``per_class`` readable images of each class (with each label), in listing order."""
    examples: dict[int, list[str]] = {index: [] for index in range(num_classes)}
    for i, record in enumerate(split.records):
        path, target = split.files[i]
        for index in (target,) if isinstance(target, int) else target:
            if record.readable and len(examples[index]) < per_class:
                examples[index].append(path)
    return examples


def data_issue_lines(oof: OutOfFold, files: Sequence[Sample], groups: Sequence[DuplicateGroup], channels: int,
                     folder: Path) -> tuple[list[str], list[tuple[int, ...]]]:
    """The summary lines of the label errors, outliers and feature-space near-duplicates found in ``oof`` (each
    kind's CSV and grid written into ``folder``), and the near-duplicate groups as indices into ``files``."""
    position = {Path(path).resolve(): index for index, (path, _) in enumerate(files)}
    unknown = [path for path in oof.paths if Path(path).resolve() not in position]
    if unknown:
        raise UserError(f"--predictions {oof.folder}: {len(unknown)} of its {len(oof.paths)} images are not in "
                        f"data.data_dir (e.g. {unknown[0]}): give the folder it cross-validated")
    suspected = label_issues(oof)
    write_rows(folder / LABEL_ISSUES_CSV, suspected, LabelIssue)
    label_issues_figure(suspected, channels).savefig(folder / LABEL_ISSUES_PNG, dpi=100, bbox_inches="tight")
    distant = outliers(oof)
    write_rows(folder / OUTLIERS_CSV, distant, Outlier)
    outliers_figure(distant, channels).savefig(folder / OUTLIERS_PNG, dpi=100, bbox_inches="tight")
    feature_groups = [tuple(position[Path(oof.paths[row]).resolve()] for row in group)
                      for group in feature_duplicates(oof)]
    hash_group_of = {member: number for number, group in enumerate(groups) for member in group.members}
    unseen = [group for group in feature_groups if len({hash_group_of.get(i, -1 - i) for i in group}) > 1]
    share = len(suspected) / max(1, int(oof.readable.sum()))
    said = caution(oof)
    return [
        *([said] if said else []),
        f"label errors: {len(suspected)} suspected of {int(oof.readable.sum())} images ({share:.1%}; cleanlab's "
        f"confident learning over {oof.num_folds}-fold out-of-fold probabilities): {folder / LABEL_ISSUES_CSV}, "
        f"{folder / LABEL_ISSUES_PNG}",
        f"outliers: {len(distant)} image(s) far from every image their fold's model trained on: "
        f"{folder / OUTLIERS_CSV}, {folder / OUTLIERS_PNG}",
        f"near-duplicates in feature space: {len(feature_groups)} group(s), "
        f"{sum(map(len, feature_groups))} images, {len(unseen)} of the groups not found by the perceptual hash: "
        f"kind {FEATURES} in {folder / DUPLICATES_CSV}",
    ], feature_groups


def classes_figure(examples: dict[int, list[str]], names: list[str], channels: int, side: int = 96) -> Figure:
    """One row per class: up to ``per_class`` of its images, each fitted into a ``side`` square."""
    rows = max(1, len(names))
    columns = max(1, max(map(len, examples.values()), default=1))
    figure = Figure(figsize=(1.2 * columns + 1.5, 1.2 * rows))
    axes = picture_axes(figure, rows, columns)
    for row, (index, paths) in enumerate(examples.items()):
        axes[row][0].set_ylabel(names[index], rotation=0, ha="right", va="center", fontsize=9)
        for column, path in enumerate(paths[:columns]):
            show_thumbnail(axes[row][column], path, channels, side)
    figure.suptitle("images per class")
    figure.tight_layout()
    return figure


TASK_LINES = {SINGLE_LABEL.name: lambda split, names: [], MULTI_LABEL.name: co_occurrence_lines}
"""What the summary adds for each task: which labels come together, for label sets."""
