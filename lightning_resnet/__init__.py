"""lightning_resnet: image classification with hand-written ResNet / ResNeXt backbones on PyTorch Lightning."""

from .data import ImageFolderDataModule
from .training import ImageClassifier

__all__ = ["ImageClassifier", "ImageFolderDataModule"]
