"""Views and augmentation presets: how a file becomes the ``uint8`` crop the model sees.

A *view* reads a file and fits it to the model's input as :class:`~.geometry.Geometry` says (:class:`EvaluationView`
for evaluation, :class:`RandomResizedCropView` for training), decoding no more resolution than the crop needs; the
*augmentation* of a preset (flip, policy) then works on the ``uint8`` crop. Normalization happens later, on the
device (:meth:`ImageFolderDataModule.on_after_batch_transfer`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..errors import check
from .decode import load_image, oriented_size
from .geometry import Geometry

AugmentPreset = Literal["basic", "pad_crop", "standard", "trivialaugment", "randaugment", "autoaugment"]
"""``basic``: evaluation's resize and crop; ``pad_crop``: that crop padded with zeros by an eighth of its side and cut
again at random, and the flip (the ResNet paper's CIFAR augmentation: 4 px at 32 px); ``standard``: random resized
crop and flip; the others add a policy."""

_POLICIES: dict[str, type[v2.Transform] | None] = {
    "standard": None,
    "trivialaugment": v2.TrivialAugmentWide,
    "randaugment": v2.RandAugment,
    "autoaugment": v2.AutoAugment,
}

# Reduced-scale JPEG decodes keep at least twice the resolution they are resized to: then the
# result matches a full decode within interpolation noise (1/8 of a level on average, measured).
DRAFT_MARGIN = 2


class EvaluationView:
    """Evaluation view of an image file: the whole image fitted to the model's input by ``geometry`` (``crop``: resize,
    then the centre; ``squish``; ``pad``: letterboxed), the same every time.

    Large JPEGs decode at reduced scale (see :func:`~lightning_resnet.data.decode.load_image`).
    """

    def __init__(self, geometry: Geometry, channels: int = 3) -> None:
        self.geometry = geometry
        self.channels = channels

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the crops."""
        return self.geometry.size

    @property
    def settings(self) -> tuple[object, ...]:
        """What the view's crops depend on: the geometry's settings and the channels."""
        return (*self.geometry.settings(), self.channels)

    def __call__(self, path: str | Path, data: bytes | None = None) -> Tensor:
        """The crop of the file at ``path``, or of its bytes ``data`` when given (``path`` then only names them)."""
        decoded = load_image(path, self.geometry.decoded_side(DRAFT_MARGIN), data=data, channels=self.channels)
        return self.geometry.fit(decoded)


class RandomResizedCropView:
    """Training view of an image file: a random box, resized (``crop``, ``squish``) or letterboxed (``pad``) to the
    model's input, decoding only the resolution it needs.

    The box is drawn as torchvision's ``RandomResizedCrop`` draws it (an area in ``scale``, an aspect ratio in
    :meth:`Geometry.box_ratio`: the image's own for ``squish`` and ``pad``, so that every part keeps its proportion)
    from the image size in the file's header; the file is then decoded at the lowest resolution at which the box
    still spans twice the input's pixels each way, so a small crop of a large photo keeps its detail and a large crop
    of it costs a fraction of a full decode.
    """

    def __init__(self, geometry: Geometry, scale: tuple[float, float] = (0.08, 1.0), channels: int = 3) -> None:
        self.geometry = geometry
        self.scale = scale
        self.channels = channels

    def __call__(self, path: str | Path, data: bytes | None = None) -> Tensor:
        """A crop of the file at ``path``, or of its bytes ``data`` when given (``path`` then only names them)."""
        data = Path(path).read_bytes() if data is None else data
        with Image.open(io.BytesIO(data)) as image:
            width, height = oriented_size(image)
            box = self.box(height, width)
            needed = DRAFT_MARGIN * max(self.geometry.height / box["height"], self.geometry.width / box["width"])
            stored_width, stored_height = image.size
        wanted = (math.ceil(stored_width * needed), math.ceil(stored_height * needed))
        pixels = load_image(path, wanted, data=data, channels=self.channels)
        scale_y, scale_x = pixels.shape[1] / height, pixels.shape[2] / width
        cut = TF.crop(pixels, round(box["top"] * scale_y), round(box["left"] * scale_x),
                      max(1, round(box["height"] * scale_y)), max(1, round(box["width"] * scale_x)))
        return self.geometry.fit_box(cut)

    def box(self, height: int, width: int) -> dict[str, int]:
        """A random box (``top``, ``left``, ``height``, ``width``) of an image of ``height`` x ``width``."""
        crop = v2.RandomResizedCrop(self.geometry.size, scale=self.scale, ratio=self.geometry.box_ratio(height, width))
        return crop.make_params([torch.empty(1, 1, 1).expand(3, height, width)])


def eval_view(geometry: Geometry, channels: int = 3) -> EvaluationView:
    """How validation, test and predict read an image."""
    return EvaluationView(geometry, channels)


def train_view(preset: AugmentPreset, geometry: Geometry, crop_scale: tuple[float, float],
               channels: int = 3) -> EvaluationView | RandomResizedCropView:
    """How training reads an image, before :func:`train_augmentation`."""
    check(len(crop_scale) == 2 and 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0,
          f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {list(crop_scale)}")
    if preset in ("basic", "pad_crop"):
        return eval_view(geometry, channels)
    return RandomResizedCropView(geometry, tuple(crop_scale), channels)


def train_augmentation(preset: AugmentPreset, hflip: float, size: tuple[int, int]) -> v2.Transform | None:
    """What follows the crop in training: ``pad_crop``'s padded random crop, the flip and the preset's policy, on
    ``uint8`` tensors."""
    check(0.0 <= hflip <= 1.0, f"data.hflip is a probability in [0, 1], got {hflip}")
    if preset == "basic":
        return None
    steps: list[v2.Transform] = [v2.RandomHorizontalFlip(hflip)] if hflip > 0 else []
    if preset == "pad_crop":
        steps.insert(0, v2.RandomCrop(list(size), padding=max(1, round(min(size) / 8))))
    policy = _POLICIES.get(preset)
    if policy is not None:
        steps.append(policy())
    return v2.Compose(steps) if steps else None


@dataclass(frozen=True)
class Views:
    """How a run reads its images, worked out once from its data options: ``evaluation`` (validation, test,
    predict and every shipped model), ``training``, and the ``augmentation`` that follows the training view."""

    evaluation: EvaluationView
    training: EvaluationView | RandomResizedCropView
    augmentation: v2.Transform | None

    @classmethod
    def of(cls, geometry: Geometry, channels: int, train_augment: AugmentPreset, crop_scale: tuple[float, float],
           hflip: float) -> Views:
        return cls(eval_view(geometry, channels), train_view(train_augment, geometry, tuple(crop_scale), channels),
                   train_augmentation(train_augment, hflip, geometry.size))
