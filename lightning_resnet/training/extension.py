"""Growing a trained model by new classes (``model.extend``), without training it again on everything.

Learning without forgetting (Li & Hoiem, 2016) with rehearsal (iCaRL, Rebuffi et al., 2017): the new model starts
as the old one, its backbone and each old class's classifier row (moved to the class's index among the new classes;
the new classes' rows start as a new classifier's), so its first logits of the old classes are the old model's.
While it learns the new classes, the old model teaches its own (:class:`.distillation.Teacher` on the old
checkpoint, unless ``model.distillation`` names another teacher) and up to ``data.rehearsal`` training images of
each old class, from the old run's ``split.csv``, train it again (:mod:`..data.previous_run`).
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from ..bundle import read_bundle
from ..data import ImageFolderDataModule
from ..errors import check
from ..tasks import Task
from .distillation import Distillation, teacher_checkpoint


class Extension:
    """The old model of ``model.extend`` and what the new one takes from it."""

    def __init__(self, given: str, backbone: str, backbone_options: dict, task: Task,
                 class_names: list[str]) -> None:
        option = f"model.extend {given}"
        checkpoint = teacher_checkpoint(given, "model.extend")
        self.trained = read_bundle(checkpoint, option="model.extend")
        old = self.trained.architecture
        check(bool(self.trained.weights), f"{option} is an exported model: extend the checkpoint (.ckpt) it came from")
        check(old.backbone == backbone and dict(old.options) == dict(backbone_options),
              f"{option} is a {old.backbone} {dict(old.options) or ''}, the model to train a {backbone} "
              f"{dict(backbone_options) or ''}: give the old model's model.backbone and model.backbone_options (the "
              "new model starts from its weights)")
        check(self.trained.task is task, f"{option} answers with {self.trained.task.items}, the data has {task.items}")
        missing = [name for name in self.trained.classes if name not in class_names]
        check(not missing, f"{option} knows the classes {', '.join(missing)}, which the data lacks")
        self.checkpoint = checkpoint
        self.rows = [class_names.index(name) for name in self.trained.classes]
        """The new model's classifier row of each old class, in the old model's order."""

    def start(self, network: nn.Module) -> None:
        """Give ``network`` the old model's weights: all of the backbone, and each old class's classifier row."""
        weights = dict(self.trained.weights)
        head = {name: weights.pop(name) for name in ("fc.weight", "fc.bias")}
        network.load_state_dict(weights, strict=False)
        with torch.no_grad():
            network.fc.weight[self.rows] = head["fc.weight"].to(network.fc.weight.dtype)
            network.fc.bias[self.rows] = head["fc.bias"].to(network.fc.bias.dtype)
        unexpected = set(weights) - set(network.state_dict())
        check(not unexpected,
              f"model.extend {self.checkpoint}: weights the model lacks: {', '.join(sorted(unexpected))}")

    def teacher(self) -> Distillation:
        """The old model as the teacher of its classes, with the distillation's default weight and temperature."""
        return Distillation(teacher=str(self.checkpoint))

    def rehearse(self, data: ImageFolderDataModule) -> int:
        """Add the old run's images ``data.rehearsal`` keeps to the training part (how many), read by the old model
        when the rule asks for its features."""
        previous = data.previous_run
        if previous is None or not data.rehearsal:
            return 0
        features = None
        if data.rehearsal_choice == "closest_to_mean":
            from ..runtimes import TorchPredictor, predict_images  # with the runtimes' registry: only this rule reads

            paths = [path for path, _ in previous.training]
            seen = predict_images(TorchPredictor(self.trained), paths, data.batch_size, data.num_workers, features=True)
            row_of = {key: row for row, key in enumerate(seen.keys)}
            check(len(row_of) == len(paths), f"model.extend {self.checkpoint}: {len(paths) - len(row_of)} training "
                                             "images of its run could not be read")
            features = seen.features[[row_of[path] for path in paths]]
        return data.rehearse(features)


def start_extended(given: str, network: nn.Module, backbone: str, backbone_options: dict | None, task: Task,
                   class_names: list[str], data: ImageFolderDataModule | None,
                   distillation: Distillation | None) -> Distillation:
    """Start ``network`` as the old model of ``model.extend`` (``given``), add the rehearsed images to ``data``'s
    training part, and return the distillation to train with (``distillation``, else the old model's)."""
    check(data is not None, "model.extend needs this project's data module (the old run's images)")
    extension = Extension(given, backbone, dict(backbone_options or {}), task, class_names)
    read_as = extension.trained.preprocessing.geometry
    check(read_as == data.geometry, f"model.extend {given} reads images as data.image_size {read_as.image_size}, "
                                    f"data.resize {read_as.resize} (crop_fraction {read_as.crop_fraction}, pad_fill "
                                    f"{read_as.fill}): give the data those options (the new model starts from its "
                                    "weights)")
    data.use_normalization(extension.trained.preprocessing.normalization)  # the backbone's, whatever normalize says
    extension.start(network)
    rehearsed = extension.rehearse(data)
    teacher = distillation or extension.teacher()
    old = extension.trained.classes
    new = [name for name in class_names if name not in old]
    taught = (f"the old model teaches them (weight {teacher.weight}, temperature {teacher.temperature})"
              if teacher.weight else "no teacher (model.distillation.weight 0)")
    rank_zero_info(f"model.extend: {len(old)} old classes keep their rows, {len(new)} new ({', '.join(new)}); "
                   f"{taught}; {rehearsed} images of the old run rehearsed ({data.rehearsal} a class, "
                   f"{data.rehearsal_choice}); its validation images stay in validation")
    return teacher
