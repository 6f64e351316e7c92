"""Normalization: the statistics (ImageNet's, the pretrained weights', or the training split's measured once and
cached on disk), and the one place that applies them and undoes them (the data module, the export, the plots)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ..errors import check
from .cache import cache_dir, write_json_atomically
from .dataset import ImageSamples, Sample, collate_readable
from .workers import worker_options

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Normalize = Literal["imagenet", "auto"]
"""``imagenet``: ImageNet's mean and std; ``auto``: the training split's, measured once and cached."""

Stats = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``mean`` and ``std`` in [0, 1] units: ``uint8`` images in, normalized floats out."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def shift_and_scale(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``mean`` and ``1 / std`` in ``uint8`` units, shaped to broadcast over NCHW (cached per device)."""
        return _shift_and_scale(self, torch.device(device))

    def __call__(self, images: Tensor) -> Tensor:
        """Normalize a ``uint8`` batch: one conversion and two in-place passes, faster on the CPU than
        ``to_dtype`` followed by ``normalize`` (benchmarks/README.md, "Measured reasons in the code")."""
        shift, scale = self.shift_and_scale(images.device)
        return images.float().sub_(shift).mul_(scale)

    def invert(self, images: Tensor) -> Tensor:
        """Normalized images back to [0, 1]."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() * std + mean).clamp(0, 1)


@lru_cache(maxsize=16)
def _shift_and_scale(normalization: Normalization, device: torch.device) -> tuple[Tensor, Tensor]:
    shift = torch.tensor(normalization.mean, device=device).view(1, -1, 1, 1) * 255
    scale = 1 / (torch.tensor(normalization.std, device=device).view(1, -1, 1, 1) * 255)
    return shift, scale


def check_normalize(normalize: Normalize | dict[str, list[float]] | None, channels: int) -> None:
    """One line unless ``data.normalize`` is a name, null, or a mean and std with one positive value per channel."""
    check(channels in (1, 3),
          f"data.channels (model.backbone_options.in_chans) must be 1 (gray) or 3 (RGB), got {channels}")
    check(not isinstance(normalize, dict) or (
        set(normalize) == {"mean", "std"} and len(normalize["mean"]) == len(normalize["std"]) == channels
        and min(normalize["std"]) > 0),
        f"data.normalize must be imagenet, auto or {{mean: [...], std: [...]}} with {channels} value(s) each "
        f"and every std positive, got {normalize}")


def chosen_normalization(normalize: Normalize | dict[str, list[float]] | None, channels: int,
                         weights: Normalization | None) -> Normalization:
    """The statistics ``data.normalize`` names, for every choice but ``auto`` (measured on the data): given by hand,
    ImageNet's, or, when null, those of the pretrained ``weights`` (else ImageNet's)."""
    if isinstance(normalize, dict):
        return Normalization(tuple(normalize["mean"]), tuple(normalize["std"]))
    if normalize is None and weights is not None:
        return weights
    return imagenet_normalization(channels)


def imagenet_normalization(channels: int) -> Normalization:
    """ImageNet's mean and std, averaged over the colours for gray images (as timm does for ``in_chans=1``)."""
    if channels == 3:
        return Normalization(IMAGENET_MEAN, IMAGENET_STD)
    return Normalization((sum(IMAGENET_MEAN) / 3,) * channels, (sum(IMAGENET_STD) / 3,) * channels)


def cache_path(samples: Sequence[Sample], *settings: object) -> Path:
    """The cache file of ``samples`` (paths, sizes and modification times) seen with ``settings``.

    It lives under ``$XDG_CACHE_HOME/lightning_resnet`` (``~/.cache`` by default); a changed,
    added or removed file gives another name, so a stale entry is never read.
    """
    digest = hashlib.sha1()
    for path, _ in samples:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update("|".join(map(str, settings)).encode())
    return cache_dir() / f"normalization-{digest.hexdigest()[:16]}.json"


def measure_mean_std(samples: Sequence[Sample], view: Callable[[str], Tensor], num_workers: int) -> Stats:
    """Per-channel mean and std of ``samples`` as ``view`` shows them, in [0, 1] units."""
    images = ImageSamples([(path, path) for path, _ in samples], view)  # the images alone, whatever the targets
    loader = DataLoader(images, batch_size=256, collate_fn=collate_readable, **worker_options(num_workers))
    total = total_sq = None
    count = 0
    for images, _ in filter(None, loader):
        pixels = images.to(torch.float64).div_(255).transpose(0, 1).flatten(1)
        total = pixels.sum(1) if total is None else total + pixels.sum(1)
        total_sq = pixels.square().sum(1) if total_sq is None else total_sq + pixels.square().sum(1)
        count += pixels.shape[1]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def cached_mean_std(samples: Sequence[Sample], view: Callable[[str], Tensor], num_workers: int,
                    *settings: object) -> Stats:
    """The statistics of ``samples`` from the cache, or measured and written to it (a warning if it cannot be)."""
    cache = cache_path(samples, *settings)
    if cache.is_file():
        stats = json.loads(cache.read_text())
        return tuple(stats["mean"]), tuple(stats["std"])
    mean, std = measure_mean_std(samples, view, num_workers)
    write_json_atomically(cache, {"mean": list(mean), "std": list(std)}, "the normalization statistics")
    return mean, std


def unlike_the_weights(normalize: Normalize | dict[str, list[float]] | None, used: Normalization,
                       weights: Normalization | None) -> str | None:
    """What to say when images are normalized otherwise than the pretrained weights were trained on (``data.normalize``
    given, and other numbers than theirs): the features they learned read other inputs. None when they agree."""
    if normalize is None or weights is None or used == weights:
        return None
    return (f"data.normalize {normalize if not isinstance(normalize, dict) else 'given'} normalizes the images with "
            f"{rounded(used)}; the pretrained weights (model.pretrained) were trained on images normalized with "
            f"{rounded(weights)}: leave data.normalize out (null) to normalize as they were trained")


def rounded(stats: Normalization) -> str:
    return f"mean {[round(value, 3) for value in stats.mean]}, std {[round(value, 3) for value in stats.std]}"
