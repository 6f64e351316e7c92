"""``predictions.csv``: one row per image of ``predict``, written once however many processes predict, each as the
model's task writes it (:mod:`lightning_resnet.tasks.verdicts`: its top classes and whether it is unsure, or its
labels and every label's probability); with ``cam``, a Grad-CAM overlay per image in ``cam/``."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from ..data import datamodule_of
from ..errors import check
from ..training.run import run_dir
from . import cam

Row = tuple[str, ...]
"""A line of ``predictions.csv``: the path first, the error last (empty for an image that was read)."""


def write_predictions(output: Path, header: Sequence[str], rows: dict[str, Row],
                      cam_folder: Path | None = None) -> None:
    """``predictions.csv``: the rows in path order, under ``header``; says what it holds, in a line."""
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows[path] for path in sorted(rows))
    print(f"wrote {output}: {summary(header, rows.values())}"
          + (f"; Grad-CAM overlays in {cam_folder}" if cam_folder else ""))


def summary(header: Sequence[str], rows: Sequence[Row]) -> str:
    """``N images predicted, U unsure, M unreadable`` (the last two when not zero)."""
    rows = list(rows)
    predicted = [row for row in rows if not row[-1]]
    unsure = sum(row[header.index("unsure")] == "true" for row in predicted) if "unsure" in header else 0
    parts = [f"{len(predicted)} image{'' if len(predicted) == 1 else 's'} predicted"]
    parts += [f"{count} {what}" for what, count in (("unsure", unsure), ("unreadable", len(rows) - len(predicted)))
              if count]
    return ", ".join(parts)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` beside the run: path, class, confidence, the top-k classes, the energy score and
    ``unsure`` (the score is below ``reject_below``: the checkpoint's threshold unless given here); of a multi-label
    model, its labels and every label's probability.

    Each process writes its own part; process 0 joins them in path order (dropping the repeats
    that a distributed sampler pads with) and lists the images that could not be read. With
    ``cam``, each process also writes, for each of its images, the Grad-CAM of the predicted class
    over the image at its own size (``cam/<path under the predicted folder>.png``, see :mod:`.cam`).
    """

    def __init__(self, filename: str = "predictions.csv", top_k: int = 5, cam: bool = False,
                 reject_below: float | None = None) -> None:
        super().__init__(write_interval="batch")
        check(top_k >= 1, f"predictions.top_k must be at least 1, got {top_k}")
        check(reject_below is None or not math.isnan(reject_below),
              "predictions.reject_below must be an energy score (a number; null: the checkpoint's), got nan")
        self.filename = filename
        self.top_k = top_k
        self.cam = cam
        self.reject_below = reject_below
        self.folder: Path | None = None
        self._inputs_root = ""  # the folder the predicted paths share, for the names in cam/

    def _part(self, rank: int) -> Path:
        return self.folder / f".{self.filename}.part{rank}"

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.folder = run_dir(trainer)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._part(trainer.global_rank).write_text("")
        data = datamodule_of(trainer)
        paths = data.predict_paths if data is not None else []
        self._inputs_root = os.path.dirname(paths[0]) if len(paths) == 1 else os.path.commonpath(paths) if paths else ""

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Tensor] | None,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if prediction is None:
            return
        decision = pl_module.decision.with_reject_below(self.reject_below)
        said = decision.verdicts(prediction["probabilities"].cpu(), prediction["logits"].cpu() / decision.temperature,
                                 pl_module.class_names, self.top_k)
        with open(self._part(trainer.global_rank), "a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(each.row(path) for path, each in zip(batch[1], said))
        if self.cam:  # the predicted class, or the most probable label
            shown = [pl_module.class_names.index(each.cam_label) for each in said]
            self._write_cams(trainer, pl_module, batch, torch.tensor(shown, device=batch[0].device))

    def _write_cams(self, trainer: Trainer, pl_module: LightningModule, batch: Any, classes: Tensor) -> None:
        heat = cam.grad_cam(pl_module.model, batch[0], classes).cpu()
        geometry = datamodule_of(trainer).geometry
        for path, image_heat in zip(batch[1], heat):
            target = self.folder / "cam" / Path(os.path.relpath(path, self._inputs_root)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            cam.overlay_on_file(path, image_heat, geometry).save(target)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._join(trainer, pl_module)
        trainer.strategy.barrier()

    def _join(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows: dict[str, Row] = {}
        for rank in range(trainer.world_size):
            part = self._part(rank)
            with open(part, newline="") as handle:
                rows.update((fields[0], tuple(fields)) for fields in csv.reader(handle))
            part.unlink()
        task, names = pl_module.task, pl_module.class_names
        data = datamodule_of(trainer)
        for path in data.predict_paths if data is not None else []:
            rows.setdefault(path, task.unreadable_row(path, names, self.top_k))
        header = task.header(names, self.top_k)
        write_predictions(self.folder / self.filename, header, rows, self.folder / "cam" if self.cam else None)
