"""The shape the model sees, and how an image of any shape is fitted into it: :class:`Geometry`.

``data.image_size`` is one side (a square) or ``[height, width]``; ``data.resize`` is how an image is fitted:

- ``crop``: scaled to cover the size divided by ``crop_fraction``, then the centre cut (the ImageNet convention;
  whatever lies outside the centre is never seen);
- ``squish``: the whole image stretched to the size (fastai's ``ResizeMethod.Squish``);
- ``pad``: the whole image scaled to fit, keeping its aspect ratio, and letterboxed with ``pad_fill`` (as Ultralytics
  does).

Every place that turns a file into the model's input, or a map of that input back onto the file, asks this object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from torch import Tensor
from torchvision.transforms.v2 import functional as TF

from ..errors import check

ResizeMode = Literal["crop", "squish", "pad"]
RESIZE_MODES: tuple[str, ...] = ("crop", "squish", "pad")


def size_of(image_size: int | Sequence[int], option: str = "data.image_size") -> tuple[int, int]:
    """``(height, width)`` of one side or ``[height, width]``; one line naming ``option`` otherwise."""
    sides = [image_size] if isinstance(image_size, int) else list(image_size)
    check(len(sides) in (1, 2) and all(isinstance(side, int) and not isinstance(side, bool) and side >= 1
                                       for side in sides),
          f"{option} {list(sides) if len(sides) != 1 else sides[0]}: expected one positive number of pixels (a "
          "square) or [height, width], two positive numbers")
    return (sides[0], sides[0]) if len(sides) == 1 else (sides[0], sides[1])


@dataclass(frozen=True)
class Geometry:
    """The model's input size and the resize mode that fits an image into it (see the module's docstring)."""

    height: int
    width: int
    resize: ResizeMode = "crop"
    crop_fraction: float = 0.875
    """``crop`` only: the share of the covering size the centre cut keeps (1.0 keeps the shorter side whole)."""
    fill: int = 0
    """``pad`` only: the level (0-255) of the letterbox's bars."""

    def __post_init__(self) -> None:
        check(self.height >= 1 and self.width >= 1,
              f"data.image_size [{self.height}, {self.width}]: expected positive numbers of pixels")
        check(self.resize in RESIZE_MODES,
              f"data.resize {self.resize}: expected one of {', '.join(RESIZE_MODES)}")
        check(0.0 < self.crop_fraction <= 1.0, f"data.crop_fraction must be in (0, 1], got {self.crop_fraction}")
        check(0 <= self.fill <= 255, f"data.pad_fill {self.fill}: expected a level from 0 to 255")

    @classmethod
    def of(cls, image_size: int | Sequence[int], resize: ResizeMode = "crop", crop_fraction: float = 0.875,
           fill: int = 0) -> Geometry:
        return cls(*size_of(image_size), resize, crop_fraction, fill)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width

    @property
    def is_square(self) -> bool:
        return self.height == self.width

    @property
    def image_size(self) -> int | list[int]:
        """As ``data.image_size`` is written: one number for a square."""
        return self.height if self.is_square else [self.height, self.width]

    @property
    def aspect(self) -> float:
        """Width over height."""
        return self.width / self.height

    @property
    def resize_size(self) -> int:
        """``crop`` of a square: the side the shorter side is resized to before the centre cut."""
        return round(self.height / self.crop_fraction)

    def decoded_side(self, margin: int) -> int:
        """The side below which no decode of a file goes (a reduced-scale JPEG keeps ``margin`` times it)."""
        return margin * (self.resize_size if self.resize == "crop" and self.is_square
                         else math.ceil(max(self.size) / (self.crop_fraction if self.resize == "crop" else 1.0)))

    def settings(self) -> tuple[object, ...]:
        """What the crops of a view depend on, as the caches key them (a square ``crop`` as before ``resize``)."""
        if self.resize == "crop" and self.is_square:
            return self.height, self.resize_size
        return self.height, self.width, self.resize, self.crop_fraction if self.resize == "crop" else self.fill

    def fit(self, pixels: Tensor) -> Tensor:
        """``pixels`` (``uint8``, C x H x W, the whole image) as the model sees it."""
        if self.resize == "squish":
            return TF.resize(pixels, list(self.size), antialias=True)
        if self.resize == "pad":
            return self.letterbox(pixels)
        if self.is_square:  # torchvision's shorter-side resize, as every checkpoint before ``resize`` was made
            return TF.center_crop(TF.resize(pixels, self.resize_size, antialias=True), list(self.size))
        height, width = pixels.shape[-2:]
        scale = max(self.height / height, self.width / width) / self.crop_fraction
        covering = [max(self.height, round(height * scale)), max(self.width, round(width * scale))]
        return TF.center_crop(TF.resize(pixels, covering, antialias=True), list(self.size))

    def fit_box(self, pixels: Tensor) -> Tensor:
        """A training box cut from an image: stretched to the size (``crop``, ``squish``) or letterboxed (``pad``)."""
        return self.letterbox(pixels) if self.resize == "pad" else TF.resize(pixels, list(self.size), antialias=True)

    def letterbox(self, pixels: Tensor) -> Tensor:
        """``pixels`` scaled to fit the size, keeping its aspect ratio, centred between bars of ``fill``."""
        height, width = pixels.shape[-2:]
        inner = self.content_size(height, width)
        scaled = TF.resize(pixels, list(inner), antialias=True)
        top, left = (self.height - inner[0]) // 2, (self.width - inner[1]) // 2
        padding = [left, top, self.width - inner[1] - left, self.height - inner[0] - top]
        return TF.pad(scaled, padding, fill=self.fill) if any(padding) else scaled

    def content_size(self, height: int, width: int) -> tuple[int, int]:
        """``pad``: the size an image of ``height`` x ``width`` takes inside the letterbox."""
        scale = min(self.height / height, self.width / width)
        return max(1, min(self.height, round(height * scale))), max(1, min(self.width, round(width * scale)))

    def box_ratio(self, height: int, width: int) -> tuple[float, float]:
        """The aspect ratios (width over height) a training box of an ``height`` x ``width`` image is drawn from:
        around the size's own for ``crop`` (torchvision's 3/4 to 4/3 of it), the image's own otherwise, so that a
        box keeps every part of the image in proportion."""
        if self.resize == "crop":
            return 0.75 * self.aspect, 4 / 3 * self.aspect
        return width / height, width / height

    def where_the_view_came_from(self, height: int, width: int) -> tuple[tuple[int, int, int, int],
                                                                         tuple[float, float, float, float]]:
        """For an image of ``height`` x ``width``: the part of the view that shows it ``(top, left, height, width)``
        and the part of the image it shows ``(top, left, height, width)``, in the image's pixels."""
        if self.resize == "squish":
            return (0, 0, self.height, self.width), (0.0, 0.0, float(height), float(width))
        if self.resize == "pad":
            inner = self.content_size(height, width)
            top, left = (self.height - inner[0]) // 2, (self.width - inner[1]) // 2
            return (top, left, *inner), (0.0, 0.0, float(height), float(width))
        if self.is_square:
            scale = self.resize_size / min(height, width)
        else:
            scale = max(self.height / height, self.width / width) / self.crop_fraction
        seen_height, seen_width = self.height / scale, self.width / scale
        return ((0, 0, self.height, self.width),
                ((height - seen_height) / 2, (width - seen_width) / 2, seen_height, seen_width))

    def dropped_share(self, height: int, width: int) -> float:
        """The share of an image of ``height`` x ``width`` that the view never shows (0 for ``squish`` and
        ``pad``)."""
        _, (_, _, seen_height, seen_width) = self.where_the_view_came_from(height, width)
        return max(0.0, 1.0 - min(seen_height, height) * min(seen_width, width) / (height * width))

    def cropping_note(self, sizes: Sequence[tuple[int, int]]) -> str | None:
        """One line when ``crop`` drops much of images of ``sizes`` (height, width) because their shape is far from
        the input's (their median aspect ratio more than 4/3 from it either way: the ratios a training crop draws
        from); None otherwise."""
        if self.resize != "crop" or not sizes:
            return None
        aspects = sorted(width / height for height, width in sizes)
        median = aspects[len(aspects) // 2]
        if 0.75 <= median / self.aspect <= 4 / 3:
            return None
        dropped = sorted(self.dropped_share(height, width) for height, width in sizes)[len(sizes) // 2]
        return (f"data.resize crop: the images' median aspect ratio (width / height) is {median:.2f}, the model's "
                f"input {self.aspect:.2f}: the centre crop drops {dropped:.0%} of each image (median), which the model "
                "never sees; --data.resize pad (letterboxed) or squish keeps the whole image")

    def describe(self) -> str:
        """In words, for an exported model's description and the reports."""
        size = f"{self.height} x {self.width} px (height x width)"
        if self.resize == "squish":
            return f"stretch the whole image to {size} (bilinear, antialiased)"
        if self.resize == "pad":
            return (f"scale the whole image to fit {size}, keeping its aspect ratio (bilinear, antialiased), and "
                    f"centre it between bars of level {self.fill}")
        if self.is_square:
            return f"resize the shorter side to {self.resize_size} px (bilinear, antialiased), center-crop {size}"
        return (f"scale the image to cover {size} divided by {self.crop_fraction} (bilinear, antialiased), "
                f"center-crop {size}")
