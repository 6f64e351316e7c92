"""The run a model extends (``model.extend``): its classes, and its images as its own ``split.csv`` lists them.

A model that learns new classes goes on knowing the old ones through two things of the old run: the old model's
answers (its distillation, in the training layer) and up to ``data.rehearsal`` of its training images per old class,
chosen by :func:`rehearsal_images`. The old run's validation images never train the new model: those of the new
folder stay in validation whatever its split draws, and those outside it join validation, so that the old classes
are validated too. ``split.csv`` of the new run lists the rehearsed images in a part of their own, :data:`REHEARSAL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError, check
from ..stages import TRAIN, VAL
from .splits import SPLIT_CSV, read_split_csv

REHEARSAL = "rehearsal"
"""The part ``split.csv`` lists an image in that an extended run keeps from the old run's training part."""
TRAINED_ON = (TRAIN, REHEARSAL)
"""The parts of a run's ``split.csv`` whose images it trained on with a person's label (an extended run's rehearsed
images are the older run's, so a model extended twice rehearses them too)."""
RehearsalChoice = Literal["random", "closest_to_mean"]
"""``random``: any N of a class's training images; ``closest_to_mean``: the N whose features (the old model's) are
closest to the class's mean feature (iCaRL's exemplars, without its herding)."""
Named = tuple[str, str]
"""An image file and its class name."""


@dataclass(frozen=True)
class PreviousRun:
    """The images and classes of the run that wrote the checkpoint ``model.extend`` names."""

    checkpoint: str
    classes: tuple[str, ...]
    """Its classes, sorted (as a folder lists them)."""
    training: tuple[Named, ...]
    """The images it trained on, in its ``split.csv``'s order."""
    validation: tuple[Named, ...]

    @classmethod
    def read(cls, checkpoint: str) -> PreviousRun:
        """The run of ``checkpoint`` (``<run>/checkpoints/<file>.ckpt``) as its ``split.csv`` lists it."""
        check(Path(checkpoint).expanduser().is_file(), f"model.extend {checkpoint} does not exist: expected a "
                                                       "checkpoint of this project or a run folder with a best one")
        split = Path(checkpoint).expanduser().resolve().parent.parent / SPLIT_CSV
        check(split.is_file(), f"model.extend {checkpoint}: expected its run's {SPLIT_CSV} at {split} (fit writes it "
                               "beside the run's checkpoints/): extend a checkpoint that fit wrote, in its run folder")
        rows = read_split_csv(split)
        check(bool(rows) and {"path", "split", "class"} <= set(rows[0]),
              f"model.extend {checkpoint}: {split} is not a split.csv of fit (expected the columns path, split, class)")
        training = tuple((row["path"], row["class"]) for row in rows if row["split"] in TRAINED_ON)
        validation = tuple((row["path"], row["class"]) for row in rows if row["split"] == VAL)
        return cls(checkpoint, tuple(sorted({name for _, name in training + validation})), training, validation)

    def classes_with(self, own: Sequence[str], where: str) -> tuple[str, ...]:
        """The extended model's classes: the old ones and those of the data (``own``, found in ``where``), sorted.

        The data holds every old class (and new ones) or new classes only; one line naming the old classes it lacks
        when it holds some of them (renamed or removed), and when it holds no new class."""
        old, found = set(self.classes), set(own)
        kept, lacking = sorted(old & found), sorted(old - found)
        if kept and lacking:
            raise UserError(f"model.extend {self.checkpoint}: {where} lacks the old class(es) {', '.join(lacking)} "
                            f"(renamed or removed?) but holds {', '.join(kept)}: give every old class its folder "
                            "under its old name, or give the new classes only")
        check(bool(found - old), f"model.extend {self.checkpoint}: {where} holds no new class (its classes "
                                 f"{', '.join(sorted(found))} are all the model's): add a folder for each new class")
        return tuple(sorted(old | found))


def rehearsal_images(previous: PreviousRun, per_class: int, choice: RehearsalChoice, seed: int,
                     features: Tensor | None = None) -> list[Named]:
    """Up to ``per_class`` of each old class's training images: ``random`` (fixed by ``seed``), or the
    ``closest_to_mean`` of their ``features`` (one row per image of ``previous.training``, in its order)."""
    chosen: list[Named] = []
    for name in previous.classes:
        rows = [index for index, (_, each) in enumerate(previous.training) if each == name]
        if choice == "random":
            generator = torch.Generator().manual_seed(seed + previous.classes.index(name))
            picked = [rows[i] for i in torch.randperm(len(rows), generator=generator)[:per_class].tolist()]
        else:
            check(features is not None, "data.rehearsal_choice closest_to_mean needs the old model's features")
            unit = F.normalize(features[rows].float(), dim=1)
            closeness = unit @ F.normalize(unit.mean(dim=0), dim=0)
            picked = [rows[i] for i in closeness.argsort(descending=True, stable=True)[:per_class].tolist()]
        chosen += [previous.training[index] for index in sorted(picked)]
    return chosen
