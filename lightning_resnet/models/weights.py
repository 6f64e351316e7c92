"""Weights for the architectures: reading a state dict from a file of any common kind, and loading it into a
model, saying what did not fit."""

from __future__ import annotations

import pickle
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from ..errors import UserError, first_line
from .resnet import ResNet


class WeightsError(UserError):
    """A weights file that cannot be loaded into the model: refused, or of another architecture."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """A weights file that is not there."""


_PREFIXES = ("model.", "module.", "_orig_mod.")
_HEAD_KEYS = ("fc.weight", "fc.bias")


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors from a ``.safetensors`` file, a ``.pth``/``.pt`` state dict or a Lightning ``.ckpt``.

    Pickled files are read with ``weights_only=True``: a file that would run code is refused.
    Prefixes added by this project's LightningModule, DDP and ``torch.compile`` are removed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if would_run_code(error):
            raise WeightsError(
                f"refusing to load {path}: it holds pickled objects other than tensors and plain data, "
                f"which could run code (loaded with weights_only=True). Re-save it as a state_dict. ({error})"
            ) from None
        raise WeightsError(f"{path} is not a readable weights file (not one torch.save or safetensors wrote)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:  # truncated or corrupt files
        raise WeightsError(f"{path} is not a readable weights file (truncated?): {first_line(error)}") from None
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict of tensors")
    return strip_prefixes(state)


NORMALIZATION_METADATA = "normalization"
"""The metadata key of a ``.safetensors`` file of ``pretrain`` that records how its images were normalized."""


def recorded_normalization(path: str | Path) -> tuple[list[float], list[float]] | None:
    """The ``[mean, std]`` a ``.safetensors`` weights file records it was trained with (``pretrain`` writes it), or
    None."""
    path = Path(path).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            recorded = (weights.metadata() or {}).get(NORMALIZATION_METADATA)
        stats = json.loads(recorded) if recorded else None
        return (list(stats["mean"]), list(stats["std"])) if stats else None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # said in one line when the model loads the weights


def would_run_code(error: pickle.UnpicklingError) -> bool:
    """True when ``torch.load(weights_only=True)`` refused a file for the code it names, not for being corrupt."""
    return "global" in str(error)


def strip_prefixes(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state`` without the prefixes of :data:`_PREFIXES`, however they are nested (``module.model.``...)."""
    state = OrderedDict(state)
    while True:
        keys = list(state)
        for prefix in _PREFIXES:
            consume_prefix_in_state_dict_if_present(state, prefix)
        if list(state) == keys:
            return dict(state)


def load_pretrained(model: ResNet, weights: str | Path | dict[str, Tensor], label: str | None = None,
                    partial: bool = False) -> dict[str, list[str]]:
    """Load ``weights`` (a file, or a state dict named ``label`` in messages) into ``model``; say what did not fit.

    Weights that leave some of the model's tensors untouched, or hold tensors the model has not
    (a ResNet-34 into a ResNet-18, or the other way), are refused unless ``partial``: half a network
    at random is not a pretrained one.

    A classifier of another number of classes is not loaded, and weights without a classifier (a backbone's
    alone, as ``pretrain`` writes them) have none to load: the model keeps its new head.
    Any other shape difference is an architecture mismatch and raises :class:`WeightsError`.
    Missing and unexpected keys are loaded around and reported in a warning.

    Returns the lists ``missing``, ``unexpected`` and ``skipped_head`` (keys not loaded).
    """
    if isinstance(weights, dict):
        state, path = strip_prefixes(weights), label or "the state dict"
    else:
        state, path = read_state_dict(weights), label or weights
    own = model.state_dict()
    skipped_head = []
    file_head, own_head = state.get("fc.weight"), own.get("fc.weight")
    if (
        file_head is not None
        and own_head is not None
        and file_head.shape[1:] == own_head.shape[1:]
        and file_head.shape[0] != own_head.shape[0]
    ):
        skipped_head = [key for key in _HEAD_KEYS if key in state]
    if skipped_head:
        warnings.warn(
            f"{path}: its classifier has {state['fc.weight'].shape[0]} classes, the model "
            f"{own['fc.weight'].shape[0]}: loaded the backbone and kept the model's new head",
            stacklevel=2,
        )
        for key in skipped_head:
            del state[key]
    for key, tensor in state.items():
        if key in own and own[key].shape != tensor.shape:
            raise WeightsError(
                f"{path} is not this architecture: {key!r} has shape {tuple(tensor.shape)} in the file "
                f"and {tuple(own[key].shape)} in the model"
            )
    if not set(state) & set(own):
        raise WeightsError(f"{path} shares no parameter names with the model: is it a ResNet state dict?")
    if not any(key in state for key in _HEAD_KEYS):  # a backbone's weights alone (what pretrain writes)
        skipped_head = [key for key in _HEAD_KEYS if key in own]
    missing = [key for key in own if key not in state and key not in skipped_head]
    unexpected = [key for key in state if key not in own]
    if (missing or unexpected) and not partial:
        raise WeightsError(
            f"{path} does not fit the model: {len(missing)} of the model's tensors are not in it {missing[:3]} and "
            f"{len(unexpected)} of its tensors are not the model's {unexpected[:3]}; another depth or variant? "
            "(--model.partial_weights true loads what fits)"
        )
    model.load_state_dict(state, strict=False)
    if missing or unexpected:
        warnings.warn(f"{path}: {len(missing)} missing keys {missing[:8]}, {len(unexpected)} unexpected keys "
                      f"{unexpected[:8]} (left untouched)", stacklevel=2)
    return {"missing": missing, "unexpected": unexpected, "skipped_head": skipped_head}
