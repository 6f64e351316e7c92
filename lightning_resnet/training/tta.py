"""Test-time augmentation: the views of a batch whose softmax ``validate``, ``test`` and ``predict`` average.

``hflip`` adds the mirror image; ``five_crop`` takes the four corners and the centre at 87.5 % of
the side, each resized back to the input size (torchvision's ``five_crop`` and ``resize``).
The views work on the normalized batch on the device.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor
from torchvision.transforms.v2 import functional as TF

TestTimeAugmentation = Literal["none", "hflip", "five_crop"]
FIVE_CROP_FRACTION = 0.875


def test_time_views(images: Tensor, kind: TestTimeAugmentation) -> list[Tensor]:
    """The batches to average: ``images`` itself, and for ``hflip`` its mirror, or for ``five_crop`` five crops."""
    if kind == "hflip":
        return [images, TF.horizontal_flip(images)]
    if kind == "five_crop":
        height, width = images.shape[-2:]
        side = (max(1, round(height * FIVE_CROP_FRACTION)), max(1, round(width * FIVE_CROP_FRACTION)))
        return [TF.resize(crop, [height, width], antialias=True) for crop in TF.five_crop(images, list(side))]
    return [images]
