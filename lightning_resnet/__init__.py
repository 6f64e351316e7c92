"""lightning_resnet: image classification with hand-written ResNet / ResNeXt backbones on PyTorch Lightning.

``ImageClassifier`` and ``ImageFolderDataModule`` are imported when first asked for, so that ``python -m
lightning_resnet --help`` answers without importing torch and Lightning.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ImageClassifier", "ImageFolderDataModule"]


def __getattr__(name: str) -> Any:
    if name == "ImageClassifier":
        from .training import ImageClassifier

        return ImageClassifier
    if name == "ImageFolderDataModule":
        from .data import ImageFolderDataModule

        return ImageFolderDataModule
    raise AttributeError(f"module 'lightning_resnet' has no attribute {name!r}")
