"""The evaluation side of :class:`~.module.ImageClassifier`: ``validate``, ``test`` and ``predict``'s steps, and the
probabilities they report (the decision's temperature, the test-time views)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection

from ..stages import TEST, VAL
from ..tasks.metrics import LOSS, metric_key
from .tta import test_time_views

Evaluation = dict[str, Tensor]
"""What an evaluation step returns to callbacks: ``logits`` (the network's output for the image, before
the temperature) and ``probabilities`` (softmax of the logits over the temperature, averaged over the
test-time views; in a multi-label set, each label's sigmoid)."""



class EvaluationSteps:
    """What ``ImageClassifier`` does with the images of an evaluation (a part of it, mixed into the LightningModule;
    it reads the module's network, task, decision, metrics and ``tta``)."""

    def evaluate(self, images: Tensor) -> Evaluation:
        """The logits of ``images`` and the probabilities ``validate``, ``test`` and ``predict`` report:
        the task's activation of the logits divided by the temperature, averaged over the test-time views
        (``tta``, never inside ``fit``: model selection and the temperature see single views)."""
        logits = self(images)
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        views = test_time_views(images, "none" if fitting else self.tta)
        view_logits = [logits if view is images else self(view) for view in views]
        probabilities = torch.stack([self.decision.probabilities(each) for each in view_logits]).mean(0)
        return {"logits": logits, "probabilities": probabilities}

    def _evaluation_step(self, batch: tuple[Tensor, Tensor] | None, stage: str, metrics: MetricCollection,
                         loss: MeanMetric) -> Evaluation | None:
        if batch is None:  # every image of the batch was unreadable
            return None
        images, targets = batch
        evaluation = self.evaluate(images)
        probabilities = evaluation["probabilities"]
        loss.update(self.task.reported_loss(probabilities, targets), weight=len(targets))
        metrics.update(*self.task.evaluation_metric_inputs(probabilities, targets, self.decision))
        self.log(metric_key(stage, LOSS), loss, on_epoch=True, prog_bar=True)
        for name, metric in metrics.items():
            self.log(name, metric, on_epoch=True, prog_bar=name.endswith(("/acc", "/mAP")))
        return evaluation

    def validation_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> Evaluation | None:
        return self._evaluation_step(batch, VAL, self.val_metrics, self.val_loss)

    def test_step(self, batch: tuple[Tensor, Tensor] | None, batch_idx: int) -> Evaluation | None:
        return self._evaluation_step(batch, TEST, self.test_metrics, self.test_loss)

    def predict_step(self, batch: tuple[Tensor, Any] | None, batch_idx: int) -> dict[str, Tensor] | None:
        if batch is None:
            return None
        evaluation = self.evaluate(batch[0])
        return {**evaluation, "predictions": self.task.decide(evaluation["probabilities"], self.decision)}
