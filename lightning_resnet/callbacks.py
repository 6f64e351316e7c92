"""The callbacks a user lists in ``trainer.callbacks`` (``lightning_resnet.callbacks.MixupCutmix``): their
one public address. They live with the concern they belong to; every run already has the ones in
:data:`lightning_resnet.cli.app.ALWAYS_PRESENT`."""

from .training.batch_augmentation import MixupCutmix, RandomErasing
from .training.finetuning import BackboneFreeze

__all__ = ["BackboneFreeze", "MixupCutmix", "RandomErasing"]
