"""File bytes to a ``uint8`` RGB (or gray) tensor ``(C, H, W)``: the first step of an image's path to the model."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps
from torch import Tensor
from torchvision import io as tv_io
from torchvision.transforms.v2 import functional as TF

DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def decode_problem(error: BaseException) -> str:
    """Why a file could not be decoded, in words (Pillow names the in-memory buffer it read, which means nothing
    to a user: ``cannot identify image file <_io.BytesIO object at 0x...>``)."""
    return re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(error)).strip() or type(error).__name__
"""What PIL and torchvision raise for a file that is not a readable image."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB: 16-bit and float levels scaled (not clipped), transparency composited onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        levels = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or levels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(levels * (255.0 / peak)), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        levels = np.asarray(image, dtype=np.float64)
        scale = 255.0 if levels.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(levels * scale), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_jpeg(data: bytes, path: str | Path, channels: int = 3) -> Tensor:
    """libjpeg-turbo through torchvision (deprecated in torchvision 0.29 for TorchCodec, still shipped)."""
    mode = tv_io.ImageReadMode.GRAY if channels == 1 else tv_io.ImageReadMode.RGB
    try:
        return tv_io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode,
                                 apply_exif_orientation=True)
    except RuntimeError as error:  # torchvision reports undecodable data as RuntimeError, after its source line
        raise OSError(f"cannot decode {path}: {re.sub(r'^.*[.]cpp:[0-9]+, ', '', str(error))}") from None


def load_image(
    path: str | Path, min_size: int | tuple[int, int] | None = None, data: bytes | None = None, channels: int = 3
) -> Tensor:
    """Decode ``path`` to a ``uint8`` tensor of shape ``(channels, H, W)``, RGB or gray, EXIF orientation applied.

    A JPEG that is at least four times ``min_size`` (width, height as stored, or one side for
    both) decodes at 1/4 or 1/8 scale with PIL's draft mode, never below ``min_size``; other
    JPEGs decode in full with torchvision's libjpeg-turbo decoder, straight into a tensor with no
    PIL image in between. Grayscale, palette, CMYK and 16-bit images become RGB; transparent
    pixels are composited onto white; with ``channels=1`` the result is gray (ITU-R 601 luma).
    ``data`` is the file's content when the caller has read it.
    """
    data = Path(path).read_bytes() if data is None else data
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            wanted = (min_size, min_size) if isinstance(min_size, int) else min_size
            if wanted and min(image.size[0] // max(wanted[0], 1), image.size[1] // max(wanted[1], 1)) >= 4:
                image.draft("RGB", wanted)
            else:
                return decode_jpeg(data, path, channels)
        ImageOps.exif_transpose(image, in_place=True)
        rgb = to_rgb(image)
        return TF.pil_to_tensor(rgb.convert("L") if channels == 1 else rgb)


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, after the EXIF orientation, read from the header alone."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return image.size[::-1] if orientation in (5, 6, 7, 8) else image.size
