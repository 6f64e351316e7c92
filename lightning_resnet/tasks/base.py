"""What a task is: :class:`Task`, the interface both kinds of classification implement, and :class:`Decision`, a
trained model's task with the values fitted at the end of ``fit`` that turn its outputs into answers.

Everything that differs between one class per image and a set of labels per image is a method of the task: the
activation, the loss, the target encoding, the metrics and the monitor, the decision rule and what it is fitted on,
the rows of ``predictions.csv``, what "sure" and "uncertain" mean, how a teacher teaches, how two models' answers are
compared. The rest of the project asks the task and never tests which one it has.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from torch import Tensor, nn
from torchmetrics import MetricCollection

from .energy import NO_THRESHOLD

TaskName = Literal["multiclass", "multilabel"]
"""The task as configs and checkpoints name it: one class per image, or a set of labels."""


@dataclass(frozen=True)
class Sync:
    """How values every DDP process holds a share of are joined: ``total`` adds a tensor of sums up, ``gather``
    joins 1-d tensors (both the identity in one process)."""

    total: Callable[[Tensor], Tensor] = lambda sums: sums
    gather: Callable[[Tensor], Tensor] = lambda values: values


@dataclass(frozen=True)
class Fitted:
    """A decision fitted on validation images, and the line that says what was fitted."""

    decision: Decision
    summary: str


class Task(ABC):
    """One kind of classification: see the module's docstring."""

    name: TaskName
    item: str
    """What one output is called in messages: ``class`` or ``label``."""
    items: str
    """And several: ``classes`` or ``labels``."""
    does: str
    items_described: str
    """The items as the data's summary line names them: ``classes``, or ``labels (several per image)``."""
    """What the model does with its items, in words: ``tells apart`` (classes), or ``finds the labels of an image
    among`` (labels)."""
    monitor: str
    """The validation metric the best checkpoint is chosen by."""
    metric_labels: dict[str, str]
    """The metrics of an evaluation report, in order, with their labels."""
    multi_hot_targets: bool
    """Whether a target is a row of 0 and 1 per class (a label set) rather than a class index."""
    activation: str
    """What the probabilities are, in words (an export's description says it)."""
    activation_code: str
    """The probabilities of ``logits`` (calibrated) in torch, as a model card shows them."""
    agreement_name: str
    """The key of :meth:`agreement` in an INT8 model's description, and what it counts, in words."""
    agreement_words: str
    balanced_weights_refused: str | None = None
    """Why ``model.class_weights balanced`` cannot weigh this task's loss; None when it can."""
    semi_supervised_refused: str | None = None
    """Why ``data.unlabelled_dir`` cannot train this task (its pseudo-labels are one class per image); None when it
    can."""
    extension_refused: str | None = None
    """Why ``model.extend`` cannot grow this task's model (its old run's images are listed one class each); None when
    it can."""
    default_resize: str
    """How an image is fitted to the model's input unless ``data.resize`` says (:mod:`~lightning_resnet.data.geometry`):
    ``crop`` (the centre) for one class per image, ``pad`` (the whole image) for label sets, which may lie anywhere."""

    # ----- the data ----------------------------------------------------------------------------------------

    @abstractmethod
    def target(self, indices: tuple[int, ...]) -> int | tuple[int, ...]:
        """An image's target from the indices of its labels: a class index, or the label set."""

    @abstractmethod
    def written_labels(self, text: str) -> list[str]:
        """The label names a file's label column gives an image (``pseudo_labels.csv``); empty when it gives none."""

    written_labels_expected: str
    """What a label column holds, in words, for the line that refuses one."""

    # ----- training ----------------------------------------------------------------------------------------

    @abstractmethod
    def probabilities(self, calibrated_logits: Tensor) -> Tensor:
        """The activation: probabilities from logits already divided by the temperature."""

    @abstractmethod
    def loss(self, label_smoothing: float, multilabel_loss: str, class_weighted: bool) -> nn.Module:
        """The training loss, called ``(logits, targets, class_weights)``; one line for an option it cannot take."""

    @abstractmethod
    def metrics(self, num_classes: int, stage: str) -> MetricCollection:
        """The metrics ``stage`` logs."""

    @abstractmethod
    def training_metric_inputs(self, logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """What the training metrics are updated with, from a batch's logits and (possibly mixed) targets."""

    @abstractmethod
    def evaluation_metric_inputs(self, probabilities: Tensor, targets: Tensor,
                                 decision: Decision) -> tuple[Tensor, Tensor]:
        """What the evaluation metrics are updated with, from the probabilities ``validate`` and ``test`` report."""

    @abstractmethod
    def reported_loss(self, probabilities: Tensor, targets: Tensor) -> Tensor:
        """The loss ``validate`` and ``test`` report: of the probabilities, as they answer."""

    @abstractmethod
    def distillation_loss(self, student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
        """How far the student's softened outputs are from the teacher's, ``temperature²`` times (the square keeps
        the gradients' scale as the temperature changes)."""

    # ----- the decision ------------------------------------------------------------------------------------

    @abstractmethod
    def default_decision(self, num_classes: int) -> Decision:
        """The decision of a model nothing was fitted for yet."""

    @abstractmethod
    def fit_decision(self, logits: Tensor, targets: Tensor, class_names: Sequence[str], sync: Sync,
                     fit_temperature: bool, keep_correct: float) -> Fitted:
        """The decision fitted on the validation ``logits`` (every process its own share) at the end of ``fit``."""

    @abstractmethod
    def describe_decision(self, decision: Decision) -> str:
        """How ``decision`` answers, in words (what ``serve`` says when it starts)."""

    @abstractmethod
    def decide(self, probabilities: Tensor, decision: Decision) -> Tensor:
        """The answer of each row: a class index, or a row of 0 and 1 (the labels at or above their thresholds)."""

    @abstractmethod
    def answers(self, probabilities: Tensor, decision: Decision, class_names: Sequence[str]) -> list[str]:
        """Each row's answer as a labels column writes it: the class, or the labels separated by spaces."""

    @abstractmethod
    def verdicts(self, probabilities: Tensor, calibrated_logits: Tensor, decision: Decision,
                 class_names: Sequence[str], top_k: int) -> list[Any]:
        """What the model says of each row, as ``predictions.csv``, the server and the demo page say it."""

    @abstractmethod
    def uncertainty(self, probabilities: Tensor, decision: Decision) -> Tensor:
        """How unsure the model is of each row's answer, from 0 (certain) to 1 (a coin's toss): what ``suggest``
        ranks the images to label next by."""

    # ----- reports -----------------------------------------------------------------------------------------

    @abstractmethod
    def chart(self, top_k: int, num_classes: int) -> tuple[str, int]:
        """The title of the demo page's chart of an answer, and how many bars it has."""

    @abstractmethod
    def header(self, class_names: Sequence[str], top_k: int) -> list[str]:
        """The columns of ``predictions.csv``."""

    @abstractmethod
    def unreadable_row(self, path: str, class_names: Sequence[str], top_k: int) -> tuple[str, ...]:
        """The row of ``predictions.csv`` for an image that could not be read."""

    @abstractmethod
    def scores(self, probabilities: Tensor, targets: Tensor, decision: Decision) -> dict[str, float]:
        """How good these answers are against ``targets`` (class indices or multi-hot rows), the monitored score
        first: what ``export --quantize int8`` compares the INT8 model with the float one by."""

    @abstractmethod
    def agreement(self, probabilities: Tensor, other: Tensor, decision: Decision) -> float:
        """The share of rows on which two models give the same answer."""


@dataclass(frozen=True)
class Decision:
    """How a trained model's outputs become answers: its task, the temperature its logits are divided by, the
    energy score below which a single-label answer is unsure, and each label's threshold of a label set."""

    task: Task
    temperature: float = 1.0
    reject_below: float = NO_THRESHOLD
    """The energy score below which a prediction is unsure (``-inf``: nothing is)."""
    label_thresholds: tuple[float, ...] | None = field(default=None)
    """A multi-label model's: each label's probability from which it is predicted."""

    def probabilities(self, logits: Tensor) -> Tensor:
        """The answers' probabilities of raw ``logits``."""
        return self.task.probabilities(logits / self.temperature)

    def verdicts(self, probabilities: Tensor, calibrated_logits: Tensor, class_names: Sequence[str],
                 top_k: int = 5) -> list[Any]:
        return self.task.verdicts(probabilities, calibrated_logits, self, class_names, top_k)

    def with_reject_below(self, reject_below: float | None) -> Decision:
        """This decision with another unsure threshold (None: its own), as ``--reject_below`` asks."""
        return self if reject_below is None else replace(self, reject_below=reject_below)

    def as_dict(self) -> dict[str, Any]:
        """As a bundle keeps it (JSON has no infinity: ``None`` for no threshold)."""
        return {"task": self.task.name, "temperature": float(self.temperature),
                "reject_below": self.reject_below if math.isfinite(self.reject_below) else None,
                "label_thresholds": list(self.label_thresholds) if self.label_thresholds is not None else None}
