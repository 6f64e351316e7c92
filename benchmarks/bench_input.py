"""Input pipeline: the data module's loaders against the seeds' ImageFolder + PIL + transforms.Compose.

A generated folder of photo-sized JPEGs (500x375 to 1024x768, quality 90) is read at 224 px
by both, with the same worker count and batch size, for training (random resized crop and
flip) and for evaluation (resize 256, center crop 224). The seeds' pipeline decodes each JPEG
in full with PIL, transforms the PIL image and makes normalized float tensors in the workers;
the data module decodes JPEGs at reduced size (PIL draft mode), transforms ``uint8`` tensors
and normalizes after the batch reaches the device (here the CPU, and counted).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from benchmarks.common import ROOT, interleaved, median, report, table
from lightning_resnet.data import IMAGENET_MEAN, IMAGENET_STD, ImageFolderDataModule


def make_photos(root: Path, classes: int, per_class: int) -> Path:
    """Photo-like JPEGs (smooth colour fields, shapes, grain) of random photo sizes; made once."""
    if root.is_dir() and len(list(root.rglob("*.jpg"))) == classes * per_class:
        return root
    rng = np.random.default_rng(0)
    sizes = [(500, 375), (640, 480), (800, 600), (1024, 768), (768, 1024), (375, 500)]
    for index in range(classes * per_class):
        width, height = sizes[rng.integers(len(sizes))]
        x = np.linspace(0, 1, width)[None, :, None]
        y = np.linspace(0, 1, height)[:, None, None]
        colours = rng.uniform(0, 255, (4, 3))
        field = (colours[0] * (1 - x) * (1 - y) + colours[1] * x * (1 - y) + colours[2] * (1 - x) * y
                 + colours[3] * x * y)
        image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            box = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
            draw.ellipse([box[0][0], box[1][0], box[0][1], box[1][1]], fill=tuple(rng.integers(0, 255, 3).tolist()))
        image = image.filter(ImageFilter.GaussianBlur(2))
        grain = rng.normal(0, 6, (height, width, 3))
        image = Image.fromarray(np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8))
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:04d}.jpg", quality=90)
    return root


def seeds_loader(root: Path, train: bool, batch_size: int, workers: int) -> DataLoader:
    steps = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return DataLoader(datasets.ImageFolder(str(root), transform=transform), batch_size=batch_size,
                      shuffle=train, num_workers=workers)


def throughput(batches, finish=lambda batch: batch) -> float:
    """Images per second over a pass, from the first batch's arrival (worker start-up left out)."""
    iterator = iter(batches)
    first = finish(next(iterator))
    images = 0
    start = time.perf_counter()
    for batch in iterator:
        images += len(finish(batch)[0])
    del first
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = make_photos(ROOT / "data" / "bench_photos", classes=3, per_class=args.images // 3)

    data = ImageFolderDataModule(data_dir=str(root), val_fraction=0.5, image_size=224, batch_size=args.batch_size,
                                 num_workers=args.workers, train_augment="standard")
    data.setup("fit")
    everything = data.train_set.samples + data.val_set.samples
    data.train_set.samples = everything
    data.val_set.samples = everything

    def normalized(batch):
        return data.on_after_batch_transfer(batch, 0)

    rows, ratios = [], {}
    for stage, train in (("train", True), ("eval", False)):
        ours_loader = data.train_dataloader() if train else data.val_dataloader()
        seeds = seeds_loader(root, train, args.batch_size, args.workers)
        results = interleaved({"seeds": lambda loader=seeds: throughput(loader),
                               "ours": lambda loader=ours_loader: throughput(loader, normalized)}, args.rounds)
        ratios[stage] = median([o / s for o, s in zip(results["ours"], results["seeds"])])
        rows.append([stage, f"{median(results['seeds']):.1f}", f"{median(results['ours']):.1f}",
                     f"**{ratios[stage]:.2f}x**"])
        print(f"{stage}: {ratios[stage]:.2f}x", flush=True)
    report(f"Input pipeline: images/s at 224 px from {len(everything)} photo-sized JPEGs, "
           f"{args.workers} workers, batch {args.batch_size}",
           table(["loader", "seeds' ImageFolder + PIL + Compose", "ImageFolderDataModule", "speed-up"], rows))


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
