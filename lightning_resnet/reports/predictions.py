"""``predictions.csv``: one row per image of ``predict``, written once however many processes predict;
with ``cam``, a Grad-CAM overlay per image in ``cam/``."""

from __future__ import annotations

import csv
import os
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor

from ..data import datamodule_of, load_image
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
    error: str = ""

    @staticmethod
    def header(top_k: int) -> list[str]:
        return ["path", "prediction", "confidence", f"top{top_k}_classes", f"top{top_k}_probabilities", "error"]

    @classmethod
    def from_probabilities(cls, path: str, probabilities: Tensor, names: list[str], top_k: int) -> PredictionRow:
        """The row of one image from its class probabilities."""
        top = probabilities.float().topk(min(top_k, len(probabilities)))
        values, indices = top.values.tolist(), top.indices.tolist()
        return cls(path=path, prediction=names[indices[0]], confidence=f"{values[0]:.6f}",
                   top_classes="|".join(names[i] for i in indices),
                   top_probabilities="|".join(f"{v:.6f}" for v in values))


def write_predictions(output: Path, rows: dict[str, PredictionRow], top_k: int) -> None:
    """``predictions.csv``: the rows in path order, under the header; says how many and how many unreadable."""
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(PredictionRow.header(top_k))
        writer.writerows(astuple(rows[path]) for path in sorted(rows))
    unreadable = sum(1 for row in rows.values() if row.error)
    print(f"wrote {len(rows)} predictions to {output}" + (f" ({unreadable} unreadable)" if unreadable else ""))


class PredictionWriter(BasePredictionWriter):
    """Writes ``predictions.csv`` beside the run: path, class, confidence and the top-k classes.

    Each process writes its own part; process 0 joins them in path order (dropping the repeats
    that a distributed sampler pads with) and lists the images that could not be read. With
    ``cam``, each process also writes, for each of its images, the Grad-CAM of the predicted class
    over the image at its own size (``cam/<path under the predicted folder>.png``, see :mod:`.cam`).
    """

    def __init__(self, filename: str = "predictions.csv", top_k: int = 5, cam: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.filename = filename
        self.top_k = top_k
        self.cam = cam
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
        with open(self._part(trainer.global_rank), "a", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            for path, image in zip(batch[1], probabilities):
                writer.writerow(astuple(PredictionRow.from_probabilities(path, image, pl_module.class_names,
                                                                         self.top_k)))
        if self.cam:
            self._write_cams(trainer, pl_module, batch, prediction["predictions"])

    def _write_cams(self, trainer: Trainer, pl_module: LightningModule, batch: Any, classes: Tensor) -> None:
        heat = cam.grad_cam(pl_module.model, batch[0], classes).cpu()
        resize_size = datamodule_of(trainer).resize_size
        for path, image_heat in zip(batch[1], heat):
            original = load_image(path, channels=3).permute(1, 2, 0).numpy()
            placed = cam.place_in_original(image_heat, original.shape[:2], resize_size)
            target = self.folder / "cam" / Path(os.path.relpath(path, self._inputs_root)).with_suffix(".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(cam.overlay(original, placed)).resize(
                cam.viewing_size(original.shape[1], original.shape[0]), Image.Resampling.NEAREST).save(target)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self._join(trainer)
        trainer.strategy.barrier()

    def _join(self, trainer: Trainer) -> None:
        rows: dict[str, PredictionRow] = {}
        for rank in range(trainer.world_size):
            part = self._part(rank)
            with open(part, newline="") as handle:
                rows.update((fields[0], PredictionRow(*fields)) for fields in csv.reader(handle))
            part.unlink()
        data = datamodule_of(trainer)
        for path in data.predict_paths if data is not None else []:
            rows.setdefault(path, PredictionRow(path, error="could not be read"))
        write_predictions(self.folder / self.filename, rows, self.top_k)
