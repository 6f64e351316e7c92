"""What ``--ckpt_path`` brings to a command: ``best`` and ``last`` by name, and the model and preprocessing the
checkpoint was trained with, so that ``validate``, ``test``, ``predict`` and ``export`` need no ``--config``.

A checkpoint holds the model's hyper-parameters (backbone, its options, classes) and the data
module's (image size, crop, normalization); the mean and std themselves travel in the data
module's state. An option given on the command line or in a config that contradicts the
checkpoint is refused in one line: evaluating a model at another size or with another backbone
than it was trained with gives a wrong number, not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

from ..bundle import ModelBundle
from ..errors import UserError, check
from ..tasks import task_named
from ..training.checkpoints import best_checkpoint_of_run, newest_run

NAMED = ("best", "last")
MODEL_KEYS = ("backbone", "backbone_options")
"""Model options that must be the checkpoint's: another value builds another network."""
DATA_KEYS = ("image_size", "crop_fraction", "resize", "pad_fill", "normalize")
"""Data options the checkpoint decides: how its images were prepared."""
SPLIT_KEYS = ("data_dir", "labels", "val_fraction", "seed", "num_folds", "fold", "group_duplicates", "exclude",
              "relabel", "test_dir")
"""Data options that say which images the checkpoint was validated and tested on: ``validate`` and ``test`` take
them from it unless they are given, so that ``validate --ckpt_path CKPT`` alone reports on its validation split."""
EVALUATING = ("validate", "test", "predict")


def named_checkpoint(name: str, experiment: Path) -> Path:
    """``best`` or ``last`` of the experiment's newest run; one line when there is none."""
    run = newest_run(experiment)
    if run is None:
        raise UserError(f"--ckpt_path {name}: {experiment} has no run with a checkpoint "
                        "(version_*/checkpoints/last.ckpt); train first, or give a checkpoint file")
    if name == "last":
        return run / "checkpoints" / "last.ckpt"
    best = best_checkpoint_of_run(run)
    if best is None or not best.path.is_file():
        raise UserError(f"--ckpt_path best: {run} has no best checkpoint (was it validated?); "
                        "use --ckpt_path last")
    return best.path


def given_options(args: list[str]) -> set[str]:
    """The dotted options (``model.backbone``) that ``args`` set, on the command line or in a ``--config`` file."""
    given: set[str] = set()
    for position, arg in enumerate(args):
        if arg.startswith("--") and "." in arg and arg != "--config":
            given.add(arg[2:].split("=", 1)[0])
        if arg == "--config" and position + 1 < len(args) or arg.startswith("--config="):
            source = arg.split("=", 1)[1] if "=" in arg else args[position + 1]
            try:
                loaded = yaml.safe_load(Path(source).read_text()) if Path(source).is_file() else yaml.safe_load(source)
            except (OSError, yaml.YAMLError):
                continue  # the parser has said what is wrong with it
            given |= _dotted(loaded if isinstance(loaded, dict) else {})
    return given


def _dotted(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        keys.add(f"{prefix}{key}")
        if isinstance(value, dict) and prefix.count(".") < 1:
            keys |= _dotted(value, f"{prefix}{key}.")
    return keys


def trained_settings(trained: ModelBundle, model: dict[str, Any], data: dict[str, Any], given: set[str],
                     subcommand: str) -> dict[str, Any]:
    """The checkpoint's model hyper-parameters and data preprocessing (and, for ``validate`` and ``test``, the
    split it was evaluated on, unless given), as config overrides, after checking that the options among them that
    were ``given`` (see :func:`given_options`) do not contradict them."""
    trained_model = dict(trained.provenance.model)
    options = trained.provenance.data
    geometry = trained.preprocessing.geometry  # as the model read images (a model from before resize: crop)
    trained_data = {**{key: options[key] for key in DATA_KEYS if key in options},
                    "image_size": geometry.image_size, "crop_fraction": geometry.crop_fraction,
                    "resize": geometry.resize, "pad_fill": geometry.fill}
    split = {key: options[key] for key in SPLIT_KEYS
             if subcommand in ("validate", "test") and key in options and f"data.{key}" not in given}
    for section, chosen, trained, keys in (("model", model, trained_model, MODEL_KEYS),
                                           ("data", data, trained_data, DATA_KEYS)):
        for key in keys:
            value = chosen.get(key)
            if key in trained and f"{section}.{key}" in given and _plain(value) != _plain(trained[key]):
                raise UserError(f"{section}.{key} is {_plain(value)!r} here but the checkpoint was trained with "
                                f"{_plain(trained[key])!r}: leave it out to use the checkpoint's")
    return {"model": trained_model, "data": {**split, **trained_data}}


def adopt_trained_classes(config: Namespace) -> None:
    """The data module takes the classes a checkpoint's model hyper-parameters (which Lightning put in ``config``)
    name, and a multi-label model's task, without listing its images."""
    trained_classes = config.model.get("class_names")
    if trained_classes:
        config.data.class_names = trained_classes
        given = config.data.get("multilabel")
        label_sets = task_named(config.model.get("task") or "multiclass").multi_hot_targets
        config.data.multilabel = given if given is not None else (label_sets or None)


def _plain(value: Any) -> Any:
    """A config value as plain data (jsonargparse gives namespaces and tuples), for comparing."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()} or None
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def check_resumable(path: Path) -> None:
    """One line unless the checkpoint ``path`` holds what ``fit --ckpt_path`` continues from (the optimizer's state,
    which a best checkpoint, weights only, does not)."""
    import torch

    try:
        resumable = "optimizer_states" in torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a checkpoint torch reads so: Lightning's own load says what is wrong with it
        return
    check(resumable, f"--ckpt_path {path} holds the weights alone (a best checkpoint): resume with --ckpt_path last, "
                     f"or start a new run from these weights with --model.pretrained {path}")
