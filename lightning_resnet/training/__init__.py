"""Training: the LightningModule (forward, loss, steps, logging) and what works around it.

``module`` (``ImageClassifier``) <- ``metrics`` (names and torchmetrics), ``optimization``
(parameter groups and schedules), ``finetuning`` (freeze/unfreeze as a callback); the callbacks
the command line always adds: ``checkpoints`` (best checkpoint, interrupt save, random state),
``divergence`` (non-finite loss guard), ``throughput`` (images/s); ``batch_augmentation``
(Mixup/CutMix, Random Erasing, listed in ``trainer.callbacks``); ``tta`` (the test-time views of
the evaluation step); ``run`` (where a run's files go); ``lr_finder``.
"""

from .module import ImageClassifier

__all__ = ["ImageClassifier"]
