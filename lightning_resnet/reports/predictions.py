"""``predictions.csv``: one row per image of ``predict``, written once however many processes predict, each
with its top classes and whether it is unsure (see :mod:`lightning_resnet.inference.verdict`), or with a
multi-label model, its predicted labels and every label's probability; with ``cam``, a Grad-CAM overlay per image in
``cam/``."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor

from ..data import datamodule_of
from ..errors import check
from ..inference.verdict import Verdict, verdicts
from ..training.run import run_dir
from . import cam


@dataclass
class PredictionRow:
    """One line of ``predictions.csv``; the class and probability columns are empty for an unreadable image."""

    path: str
    prediction: str = ""
    confidence: str = ""
    top_classes: str = ""  # "|"-joined, most probable first
    top_probabilities: str = ""
    energy_score: str = ""
    unsure: str = ""  # "true" when the energy score is below the model's threshold
    error: str = ""

    @staticmethod
    def header(top_k: int) -> list[str]:
        return ["path", "prediction", "confidence", f"top{top_k}_classes", f"top{top_k}_probabilities",
                "energy_score", "unsure", "error"]

    @classmethod
    def from_verdict(cls, path: str, said: Verdict) -> PredictionRow:
        """The row of one image from what the model said of it."""
        return cls(path=path, prediction=said.prediction, confidence=f"{said.confidence:.6f}",
                   top_classes="|".join(name for name, _ in said.top),
                   top_probabilities="|".join(f"{value:.6f}" for _, value in said.top),
                   energy_score=f"{said.score:.6f}", unsure=str(said.unsure).lower())

    def fields(self) -> tuple[str, ...]:
        return astuple(self)


@dataclass
class LabelSetRow:
    """One line of a multi-label model's ``predictions.csv``: the labels predicted (at or above their thresholds,
    space-separated) and every label's probability; empty for an unreadable image."""

    path: str
    labels: str = ""
    probabilities: tuple[str, ...] = ()
    error: str = ""
    unsure = ""  # a label set has no unsure rule

    @staticmethod
    def header(class_names: Sequence[str]) -> list[str]:
        return ["path", "labels", *(f"probability_{name}" for name in class_names), "error"]

    @classmethod
    def predicted(cls, path: str, probabilities: Tensor, predicted: Tensor, class_names: Sequence[str]) -> LabelSetRow:
        return cls(path, " ".join(name for name, chosen in zip(class_names, predicted.tolist()) if chosen),
                   tuple(f"{value:.6f}" for value in probabilities.tolist()))

    @classmethod
    def from_fields(cls, fields: Sequence[str]) -> LabelSetRow:
        return cls(fields[0], fields[1], tuple(fields[2:-1]), fields[-1])

    def fields(self) -> tuple[str, ...]:
        return (self.path, self.labels, *self.probabilities, self.error)


Row = PredictionRow | LabelSetRow


def write_predictions(output: Path, header: Sequence[str], rows: dict[str, Row],
                      cam_folder: Path | None = None) -> None:
    """``predictions.csv``: the rows in path order, under ``header``; says what it holds, in a line."""
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows[path].fields() for path in sorted(rows))
    print(f"wrote {output}: {summary(rows.values())}" + (f"; Grad-CAM overlays in {cam_folder}" if cam_folder else ""))


def summary(rows: Iterable[Row]) -> str:
    """``N images predicted, U unsure, M unreadable`` (the last two when not zero)."""
    rows = list(rows)
    predicted = [row for row in rows if not row.error]
    unsure = sum(row.unsure == "true" for row in predicted)
    parts = [f"{len(predicted)} image{'' if len(predicted) == 1 else 's'} predicted"]
    parts += [f"{count} {what}" for what, count in (("unsure", unsure), ("unreadable", len(rows) - len(predicted)))
              if count]
    return ", ".join(parts)


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` beside the run: path, class, confidence, the top-k classes, the energy score and
    ``unsure`` (the score is below ``reject_below``: the checkpoint's threshold unless given here; see
    :mod:`lightning_resnet.inference.verdict`).

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
        probabilities = prediction["probabilities"].cpu()
        if pl_module.multilabel:
            rows: list[Row] = [LabelSetRow.predicted(path, each, chosen, pl_module.class_names)
                               for path, each, chosen in zip(batch[1], probabilities, prediction["predictions"].cpu())]
        else:
            temperature = float(pl_module.temperature)
            reject_below = float(pl_module.reject_below) if self.reject_below is None else self.reject_below
            said = verdicts(probabilities, prediction["logits"].cpu() / temperature, temperature,
                            pl_module.class_names, self.top_k, reject_below)
            rows = [PredictionRow.from_verdict(path, each) for path, each in zip(batch[1], said)]
        with open(self._part(trainer.global_rank), "a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerows(row.fields() for row in rows)
        if self.cam:  # the predicted class, or the most probable label
            self._write_cams(trainer, pl_module, batch, probabilities.argmax(dim=1).to(batch[0].device))

    def _write_cams(self, trainer: Trainer, pl_module: LightningModule, batch: Any, classes: Tensor) -> None:
        heat = cam.grad_cam(pl_module.model, batch[0], classes).cpu()
        resize_size = datamodule_of(trainer).resize_size
        for path, image_heat in zip(batch[1], heat):
            target = self.folder / "cam" / Path(os.path.relpath(path, self._inputs_root)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            cam.overlay_on_file(path, image_heat, resize_size).save(target)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._join(trainer, pl_module)
        trainer.strategy.barrier()

    def _join(self, trainer: Trainer, pl_module: LightningModule) -> None:
        kind = LabelSetRow if pl_module.multilabel else PredictionRow
        read = LabelSetRow.from_fields if pl_module.multilabel else lambda fields: PredictionRow(*fields)
        rows: dict[str, Row] = {}
        for rank in range(trainer.world_size):
            part = self._part(rank)
            with open(part, newline="") as handle:
                rows.update((fields[0], read(fields)) for fields in csv.reader(handle))
            part.unlink()
        data = datamodule_of(trainer)
        for path in data.predict_paths if data is not None else []:
            rows.setdefault(path, kind(path, error="could not be read"))
        header = LabelSetRow.header(pl_module.class_names) if pl_module.multilabel else PredictionRow.header(self.top_k)
        write_predictions(self.folder / self.filename, header, rows, self.folder / "cam" if self.cam else None)
