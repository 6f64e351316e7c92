"""Self-supervised pretraining (``python -m lightning_resnet pretrain``): :class:`~.module.SelfSupervised`, the
LightningModule, teaches a hand-written backbone with one of :data:`~.methods.METHODS`, each a file behind one
interface (:class:`~.method.PretrainingMethod`): ``simclr``, ``byol``, ``dino``."""

from .method import PretrainingMethod, Progress
from .methods import METHODS
from .module import KNN_ACCURACY, SelfSupervised

__all__ = ["KNN_ACCURACY", "METHODS", "PretrainingMethod", "Progress", "SelfSupervised"]
