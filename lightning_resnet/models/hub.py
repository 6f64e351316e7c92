"""Pretrained weights by name: torchvision's and timm's, from their own caches or downloaded by their own code.

``model.pretrained`` takes a file path or one of these names:

- ``torchvision``: the architecture's default torchvision weights (``get_model_weights(name).DEFAULT``);
- ``torchvision:IMAGENET1K_V1``: a member of the architecture's torchvision weights enum;
- ``timm:<model>.<tag>``, e.g. ``timm:resnet50.a1_in1k`` or ``timm:resnet50d.a1_in1k`` (the ResNet-D
  variants need ``backbone_options: {stem: deep, avg_down: true}``).

torchvision's files live in torch hub's cache (``$TORCH_HOME/hub/checkpoints``), timm's in the
Hugging Face cache (``$HF_HOME/hub``): a second run, and other tools, reuse them. Offline, a
missing file is one line saying where it comes from and where to put it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from torch import Tensor

from ..errors import UserError
from .resnet import ResNet
from .weights import load_pretrained

TORCHVISION, TIMM = "torchvision", "timm"
HF_FILENAME = "model.safetensors"


@dataclass(frozen=True)
class NamedWeights:
    """Weights given by name: where they come from and the mean and std they were trained with."""

    source: str  # TORCHVISION or TIMM
    name: str  # e.g. "ResNet50_Weights.IMAGENET1K_V2" or "resnet50.a1_in1k"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    url: str  # where a download comes from
    cache_path: Path  # where the library keeps the file (for timm, the one a manual copy should go to)
    hf_repo: str | None = None  # timm's weights: their Hugging Face repository


def is_weights_name(pretrained: str | None) -> bool:
    """True for ``torchvision``, ``torchvision:<member>`` and ``timm:<name>``; False for a file path."""
    if not pretrained:
        return False
    return pretrained == TORCHVISION or (":" in pretrained and pretrained.split(":", 1)[0] in (TORCHVISION, TIMM))


def resolve(pretrained: str, backbone: str, options: dict | None = None) -> NamedWeights:
    """The weights a name means for ``backbone`` (built with ``options``), checked against it; no download."""
    source, _, tag = pretrained.partition(":")
    if source == TORCHVISION:
        return _torchvision(backbone, tag)
    return _timm(tag, backbone, options or {})


def _torchvision(backbone: str, member: str) -> NamedWeights:
    import torch.hub
    from torchvision.models import get_model_weights

    enum = get_model_weights(backbone)
    members = [name for name in enum.__members__ if name != "DEFAULT"]
    if member and member not in members:
        raise UserError(f"model.pretrained torchvision:{member} is not a torchvision weight of {backbone}: "
                        f"choose from {', '.join(members)} (or plain 'torchvision' for {enum.DEFAULT.name})")
    weights = enum[member] if member else enum.DEFAULT
    preprocessing = weights.transforms()
    filename = os.path.basename(urlparse(weights.url).path)
    return NamedWeights(TORCHVISION, f"{enum.__name__}.{weights.name}", tuple(preprocessing.mean),
                        tuple(preprocessing.std), weights.url, Path(torch.hub.get_dir()) / "checkpoints" / filename)


def _timm(name: str, backbone: str, options: dict) -> NamedWeights:
    import timm
    from huggingface_hub.constants import HF_HUB_CACHE

    architecture = name.split(".", 1)[0]
    config = timm.models.get_pretrained_cfg(name) if "." in name else None
    if config is None or not config.hf_hub_id:
        known = ", ".join(timm.list_pretrained(f"{backbone}*")[:6])
        raise UserError(f"model.pretrained timm:{name} names no timm weights on the Hugging Face hub: "
                        f"expected timm:<model>.<tag>, e.g. {known}")
    resnet_d = architecture == f"{backbone}d"
    if architecture != backbone and not resnet_d:
        raise UserError(f"model.pretrained timm:{name} holds {architecture} weights, the model is {backbone}: "
                        f"choose timm weights of {backbone} or set model.backbone {architecture.rstrip('d')}")
    if resnet_d != (options.get("stem") == "deep" and bool(options.get("avg_down"))):
        wanted = "{stem: deep, avg_down: true}" if resnet_d else "the imagenet stem, no avg_down"
        raise UserError(f"model.pretrained timm:{name} is a {'ResNet-D' if resnet_d else 'plain ResNet'}: "
                        f"model.backbone_options must give {wanted}")
    repo = config.hf_hub_id
    folder = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    return NamedWeights(TIMM, name, tuple(config.mean), tuple(config.std),
                        f"https://huggingface.co/{repo}/resolve/main/{HF_FILENAME}",
                        folder / "snapshots" / "manual" / HF_FILENAME, hf_repo=repo)


def fetch(weights: NamedWeights) -> Path | dict[str, Tensor]:
    """The weights' file from the library's cache, downloaded there first when it is missing.

    torchvision's come back as a state dict (its loader reads the file), timm's as the file's path.
    """
    try:
        if weights.source == TORCHVISION:
            from torchvision.models import get_weight

            return get_weight(weights.name).get_state_dict(progress=False, check_hash=True, weights_only=True)
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(weights.hf_repo, HF_FILENAME)
        return Path(cached) if isinstance(cached, str) else Path(hf_hub_download(weights.hf_repo, HF_FILENAME))
    except (OSError, ValueError, RuntimeError) as error:  # no network, a firewall, a bad download
        manual = (f"write 'manual' into {weights.cache_path.parents[2] / 'refs' / 'main'}"
                  if weights.source == TIMM else "")
        raise UserError(
            f"the {weights.source} weights {weights.name} ({weights.cache_path.name}) are not in the cache and could "
            f"not be downloaded ({type(error).__name__}): download {weights.url} and put it at {weights.cache_path}"
            + (f", then {manual}" if manual else "") + ", or give its path as model.pretrained"
        ) from None


def load_weights(model: ResNet, pretrained: str, backbone: str, options: dict | None = None,
                 partial: bool = False) -> dict[str, list[str]]:
    """Load ``pretrained`` (a weights name or a file path) into ``model``, an architecture ``backbone``
    (``partial``: see :func:`~.weights.load_pretrained`)."""
    if not is_weights_name(pretrained):
        return load_pretrained(model, pretrained, partial=partial)
    weights = resolve(pretrained, backbone, options)
    return load_pretrained(model, fetch(weights), label=f"{weights.source} weights {weights.name}", partial=partial)
