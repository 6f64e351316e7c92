"""``export --format timm``: a trained model as a folder in timm's Hugging Face hub layout, the way the field shares a
classifier: ``config.json`` (the architecture and the arguments that build it, the class names, the preprocessing as
timm's ``pretrained_cfg``), ``model.safetensors`` and a model card, ``README.md``.

The folder is written by timm's own ``save_for_hf`` from a timm model that loaded the trained weights strictly (the
hand-written ResNet keeps torchvision's and timm's parameter names), so that
``timm.create_model("local-dir:FOLDER", pretrained=True)`` builds it offline and ``huggingface_hub``'s
``upload_folder`` publishes it. The calibration temperature is folded into the classifier (its weights and bias
divided by it): timm's logits are the calibrated logits, whose softmax (or sigmoid, for a label set) is the
checkpoint's probabilities. A network timm's ResNet cannot build is refused in one line that says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..bundle import Architecture, ModelBundle
from ..errors import UserError, check

TIMM_ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                      "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")
"""The registered backbones timm has under the same name (the ResNet paper's CIFAR networks are not among them)."""
CROP_MODES = {"crop": "center", "squish": "squash", "pad": "border"}
"""``data.resize`` as timm's evaluation transform names it (``crop_mode``)."""
SAME_NAMES = ("in_chans", "avg_down", "drop_rate", "drop_path_rate")
RENAMED = {"groups": "cardinality", "width_per_group": "base_width"}
OUTPUT_STRIDES = {(False, False, False): 32, (False, False, True): 16, (False, True, True): 8}
"""``replace_stride_with_dilation`` as timm's ``output_stride``."""
DEFAULT_CHANNELS = [64, 128, 256, 512]


def timm_model_args(architecture: Architecture) -> dict[str, Any]:
    """The arguments of ``timm.create_model(architecture.backbone, ...)`` that build the same network; one line
    saying why when timm's ResNet cannot."""
    name = architecture.backbone
    why = f"export --format timm: model.backbone {name}"
    check(name in TIMM_ARCHITECTURES,
          f"{why} is one of the ResNet paper's CIFAR networks (a 3x3 stem, three stages, zero-padding shortcuts), "
          "which timm's ResNet cannot build: export it as onnx, openvino or torch_export")
    options = dict(architecture.options)
    stem = options.pop("stem", "imagenet")
    channels = [int(width) for width in options.pop("channels", DEFAULT_CHANNELS)]
    check(stem != "cifar", f"{why} has the CIFAR stem (a 3x3 convolution, no max-pool), which timm's ResNet does not "
                           "have: train it with backbone_options stem imagenet or deep to export it to timm")
    check(len(channels) == 4, f"{why} has {len(channels)} stages; timm's ResNet has 4")
    args: dict[str, Any] = {} if channels == DEFAULT_CHANNELS else {"channels": channels}
    if stem == "deep":
        check(channels[0] % 2 == 0, f"{why}: a deep stem of {channels[0]} channels; timm's is twice its stem_width")
        args.update(stem_type="deep", stem_width=channels[0] // 2)
    else:
        check(channels[0] == 64, f"{why}: its stem gives {channels[0]} channels, timm's ImageNet stem 64")
    check(not options.pop("stride_in_1x1", False),
          f"{why} strides in the first 1x1 convolution (ResNet v1); timm's ResNet strides in the 3x3 (v1.5)")
    check(options.pop("shortcut", "projection") == "projection",
          f"{why} has the paper's zero-padding shortcuts, which timm's ResNet does not have")
    dilation = tuple(bool(flag) for flag in options.pop("replace_stride_with_dilation", None) or (False,) * 3)
    check(dilation in OUTPUT_STRIDES, f"{why}: replace_stride_with_dilation {list(dilation)} has no timm "
                                      f"output_stride (it has {', '.join(map(str, OUTPUT_STRIDES.values()))})")
    if OUTPUT_STRIDES[dilation] != 32:
        args["output_stride"] = OUTPUT_STRIDES[dilation]
    options.pop("zero_init_residual", None)  # how the weights started: nothing of the trained network
    for key, value in options.items():
        if key in SAME_NAMES or key in RENAMED:
            args[RENAMED.get(key, key)] = value
        else:
            raise UserError(f"{why}: backbone_options {key} has no counterpart in timm's ResNet")
    return args


def pretrained_cfg(bundle: ModelBundle) -> dict[str, Any]:
    """The bundle's preprocessing as timm's data config: size, crop mode and share, interpolation, mean and std."""
    preprocessing = bundle.preprocessing
    geometry = preprocessing.geometry
    # timm resizes to floor(size / crop_pct) before its centre crop; this project to round(size / crop_fraction):
    # half a pixel more than the side wanted floors to it
    crop_pct = geometry.height / (geometry.resize_size + 0.5) if geometry.resize == "crop" else 1.0
    return {"input_size": (preprocessing.channels, *geometry.size), "crop_pct": crop_pct,
            "crop_mode": CROP_MODES[geometry.resize], "interpolation": "bilinear",
            "mean": tuple(preprocessing.normalization.mean), "std": tuple(preprocessing.normalization.std)}


def timm_network(bundle: ModelBundle) -> torch.nn.Module:
    """A timm model with the bundle's trained weights (loaded strictly) and its temperature in the classifier."""
    import timm

    check(bool(bundle.weights), f"{bundle.path} describes an exported model, whose weights only its runtime reads: "
                                "give the checkpoint (.ckpt) it was exported from")
    args = timm_model_args(bundle.architecture)
    model = timm.create_model(bundle.architecture.backbone, pretrained=False, num_classes=bundle.num_classes,
                              **args)
    weights = {name: tensor.clone() for name, tensor in bundle.weights.items()}
    for name in ("fc.weight", "fc.bias"):
        weights[name] = weights[name] / bundle.decision.temperature
    model.load_state_dict(weights, strict=True)
    # only what describes this model: not the tag, licence and paper of timm's own ImageNet weights
    model.pretrained_cfg = {"architecture": bundle.architecture.backbone, "first_conv": "conv1", "classifier": "fc",
                            "num_classes": bundle.num_classes, **pretrained_cfg(bundle)}
    return model.eval()


def model_card(bundle: ModelBundle, folder: Path) -> str:
    """The README.md of the folder: what the model is, how it was trained and scored, how to load it."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..training.checkpoints import epoch_metrics

    scores = epoch_metrics(bundle.path) if bundle.path is not None else {}
    data = bundle.provenance.data
    preprocessing = pretrained_cfg(bundle)
    lines = [
        f"A {bundle.architecture.backbone} image classifier of {bundle.num_classes} classes "
        f"({', '.join(bundle.classes[:20])}{', ...' if bundle.num_classes > 20 else ''}), trained with "
        "lightning_resnet and exported with `python -m lightning_resnet export --format timm`.", "",
        "## Model details",
        f"- **Task:** {bundle.task.name}: the probabilities are `{bundle.task.activation_code}` (the calibration "
        f"temperature, {bundle.decision.temperature:.4g}, is folded into the classifier)",
        f"- **Input:** {preprocessing['input_size'][0]} x {preprocessing['input_size'][1]} x "
        f"{preprocessing['input_size'][2]}, resize `{bundle.preprocessing.geometry.resize}` (timm's crop_mode "
        f"`{preprocessing['crop_mode']}`), mean {list(preprocessing['mean'])}, std {list(preprocessing['std'])}",
        f"- **Data set:** {data.get('data_dir') or data.get('labels') or 'not recorded'}",
        f"- **Run:** {bundle.provenance.run or 'not recorded'}",
        "- **Validation scores (the checkpoint's epoch):** " + (", ".join(
            f"{name} {value:.4f}" for name, value in sorted(scores.items())) or "not recorded"), "",
        "## Use", "```python", "import timm", "",
        f'model = timm.create_model("local-dir:{folder}", pretrained=True).eval()',
        "transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))",
        "logits = model(transform(image).unsqueeze(0))",
        f"probabilities = {bundle.task.activation_code}",
        "```",
    ]
    card_data = ModelCardData(library_name="timm", tags=["image-classification", "timm", "lightning_resnet"],
                              pipeline_tag="image-classification")
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n# {folder.name}\n\n" + "\n".join(lines) + "\n"))


def export_timm(bundle: ModelBundle, output: Path | None = None) -> Path:
    """Write the folder (``output``, default: the checkpoint's path without its suffix, plus ``_timm``)."""
    from timm.models import save_for_hf

    target = output or bundle.path.with_name(f"{bundle.path.stem}_timm")
    check(not target.exists() or target.is_dir() and not any(target.iterdir()),
          f"--output {target}: export --format timm writes a folder, and this one exists and is not an empty folder")
    model = timm_network(bundle)
    save_for_hf(model, str(target), model_config={"label_names": list(bundle.classes)}, safe_serialization=True,
                data_config=pretrained_cfg(bundle))
    (target / "README.md").write_text(model_card(bundle, target))
    print(f"exported {bundle.path} to {target} (timm: timm.create_model(\"local-dir:{target}\", pretrained=True))")
    return target
