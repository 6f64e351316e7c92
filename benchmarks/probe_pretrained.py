"""How much a pretrained backbone's features say about the demo digits, without fine-tuning: the effective rank of
their pooled features (collapse shows as a rank near 1) and a 3-fold logistic regression on every tenth digit's
L2-normalized features. Used to choose ``configs/pretrain_demo_byol.yaml`` (benchmarks/README.md, "Few labels").

    PYTHONPATH=. .venv/bin/python benchmarks/probe_pretrained.py logs/pretrain_demo_byol/version_0/backbone.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def digits_at(size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The demo digits as ImageNet-normalized RGB tensors at ``size`` px, and their classes."""
    from PIL import Image

    from lightning_resnet.data import DIGITS_DIR, IMAGENET_MEAN, IMAGENET_STD, Normalization, write_digits

    if not Path(DIGITS_DIR).is_dir():
        write_digits(Path(DIGITS_DIR))
    paths = sorted(Path(DIGITS_DIR).glob("*/*.png"))
    pixels = [np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)) for path in paths]
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
    classes = np.array([int(path.parent.name) for path in paths])
    return Normalization(IMAGENET_MEAN, IMAGENET_STD)(images), classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+", help="backbone.safetensors files that pretrain wrote")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--backbone_options", type=json.loads, default={"stem": "cifar"})
    parser.add_argument("--image_size", type=int, default=16)
    options = parser.parse_args()
    from safetensors.torch import load_file
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from lightning_resnet.models import create_model

    images, classes = digits_at(options.image_size)
    for path in options.weights:
        network = create_model(options.backbone, features_only=True, **options.backbone_options).eval()
        network.load_state_dict(load_file(str(path)))
        with torch.no_grad():
            features = network.forward_features(images)
        spectrum = torch.linalg.svdvals(features - features.mean(0)) ** 2
        share = spectrum / spectrum.sum()
        rank = float(torch.exp(-(share * share.clamp_min(1e-12).log()).sum()))
        unit = F.normalize(features, dim=1).numpy()
        probe = cross_val_score(LogisticRegression(max_iter=2000), unit[::10], classes[::10], cv=3).mean()
        print(f"{path}: effective rank {rank:.1f}, probe {probe:.3f}")


if __name__ == "__main__":
    main()
