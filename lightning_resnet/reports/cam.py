"""Class activation maps: where in the image the last stage saw the predicted class (Grad-CAM).

Captum's ``LayerGradCam`` does the hooks and the gradient weighting on the backbone's last stage
(``layer4``, or ``layer3`` of the paper's CIFAR networks); it is used instead of hand-written hooks,
and instead of pytorch-grad-cam, because it needs nothing beyond torch, numpy and matplotlib, which
this project has already (the other pulls in OpenCV). Here the maps are only scaled and laid over
the images.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import Image
from torch import Tensor, nn

from ..data import Geometry, load_image

OVERLAY_OPACITY = 0.45
VIEWING_SIDE = 64
"""An overlay's shorter side is enlarged, by a whole factor, pixel for pixel, to at least this many pixels:
an 8x8 digit's map is otherwise too small to look at."""


def grad_cam(network: nn.Module, images: Tensor, classes: Tensor) -> Tensor:
    """Grad-CAM of ``classes`` on the last stage of ``network`` for normalized ``images``: ``(N, H, W)`` in [0, 1].

    Works inside ``predict``/``validate`` too: gradients are turned back on for the call.
    """
    from captum.attr import LayerGradCam  # only the reports that draw maps pay for importing captum

    with torch.inference_mode(False), torch.enable_grad():
        inputs = images.detach().clone().requires_grad_(True)
        maps = LayerGradCam(network, network.stages[-1]).attribute(inputs, target=classes.tolist(),
                                                                 relu_attributions=True)
        maps = F.interpolate(maps.detach(), size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, 1, 1)
    return (maps / peak).clamp(0, 1)


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) ``uint8`` with ``heat`` (H, W, in [0, 1]) laid over it in the jet colours;
    where ``heat`` is NaN (outside what the model saw) the image stays as it is."""
    seen = np.isfinite(heat)
    colours = colormaps["jet"](np.where(seen, heat, 0))[..., :3] * 255
    blended = image.astype(np.float32) * (1 - OVERLAY_OPACITY) + colours * OVERLAY_OPACITY
    return np.where(seen[..., None], blended.round().clip(0, 255), image).astype(np.uint8)


def place_in_original(heat: Tensor, original_size: tuple[int, int], geometry: Geometry) -> np.ndarray:
    """A map of the model's view (as ``eval_view`` made it from the image) put back where that view came from in the
    original image: the centre ``crop``ped, the whole image ``squish``ed, or the letterboxed part of a ``pad`` without
    its bars. Outside what the view showed the map is NaN."""
    height, width = original_size
    (view_top, view_left, view_height, view_width), (top, left, seen_height, seen_width) = \
        geometry.where_the_view_came_from(height, width)
    rows, columns = heat.shape[0] / geometry.height, heat.shape[1] / geometry.width  # the map's cells per view pixel
    shown = heat[round(view_top * rows): round((view_top + view_height) * rows) or None,
                 round(view_left * columns): round((view_left + view_width) * columns) or None]
    side_h, side_w = max(1, round(seen_height)), max(1, round(seen_width))
    resized = F.interpolate(shown[None, None].float(), size=(side_h, side_w), mode="bilinear",
                            align_corners=False)[0, 0].numpy()
    top, left = round(top), round(left)
    placed = np.full((height, width), np.nan, dtype=np.float32)
    inside = resized[max(0, -top): height - top, max(0, -left): width - left]
    placed[max(0, top): max(0, top) + inside.shape[0], max(0, left): max(0, left) + inside.shape[1]] = inside
    return placed


def viewing_size(width: int, height: int) -> tuple[int, int]:
    """The size an overlay of an image ``width`` x ``height`` is saved at (see :data:`VIEWING_SIDE`)."""
    factor = max(1, math.ceil(VIEWING_SIDE / max(1, min(width, height))))
    return width * factor, height * factor


def overlay_on_file(path: str | Path, heat: Tensor, geometry: Geometry) -> Image.Image:
    """The map of the model's view of the image at ``path`` laid over the whole image, enlarged for viewing."""
    original = load_image(path, channels=3).permute(1, 2, 0).numpy()
    placed = place_in_original(heat, original.shape[:2], geometry)
    return Image.fromarray(overlay(original, placed)).resize(viewing_size(original.shape[1], original.shape[0]),
                                                             Image.Resampling.NEAREST)
