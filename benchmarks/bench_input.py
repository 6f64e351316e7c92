"""Input pipeline: the data module's loaders against the seeds' ImageFolder + PIL + transforms.Compose.

A generated folder of photo-sized JPEGs (500x375 to 1024x768, quality 90) is read at 224 px
by both, with the same worker count and batch size, for training (random resized crop and
flip) and for evaluation (resize 256, center crop 224). The seeds' pipeline decodes each JPEG
in full with PIL, transforms the PIL image and makes normalized float tensors in the workers;
the data module decodes JPEGs with libjpeg-turbo through torchvision (or at 1/4 or 1/8 scale
through PIL's draft mode when the crop needs that little), transforms ``uint8`` tensors and
normalizes after the batch reaches the device (here the CPU, and counted).
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
from lightning_resnet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvaluationView,
    Geometry,
    ImageFolderDataModule,
    RandomResizedCropView,
    load_image,
)


def make_photos(root: Path, classes: int, per_class: int, sizes: list[tuple[int, int]]) -> Path:
    """Photo-like JPEGs (colour gradients, sharp shapes, blur, grain) of the given sizes; made once."""
    if root.is_dir() and len(list(root.rglob("*.jpg"))) == classes * per_class:
        return root
    rng = np.random.default_rng(0)
    for index in range(classes * per_class):
        width, height = sizes[rng.integers(len(sizes))]
        x = np.linspace(0, 1, width // 8, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 1, height // 8, dtype=np.float32)[:, None, None]
        colours = rng.uniform(0, 255, (4, 3)).astype(np.float32)
        field = (colours[0] * (1 - x) * (1 - y) + colours[1] * x * (1 - y) + colours[2] * (1 - x) * y
                 + colours[3] * x * y)
        image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            xs, ys = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
            draw.ellipse([xs[0], ys[0], xs[1], ys[1]], fill=tuple(rng.integers(0, 255, 3).tolist()))
        image = image.filter(ImageFilter.GaussianBlur(2))
        grain = rng.normal(0, 6, (height, width, 3)).astype(np.float32)
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
        folder = root / f"class_{index % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:04d}.jpg", quality=90)
    return root


PHOTO_SIZES = [(500, 375), (640, 480), (800, 600), (1024, 768), (768, 1024), (375, 500)]
PHONE_SIZES = [(4032, 3024), (3024, 4032)]


def seeds_loader(root: Path, train: bool, batch_size: int, workers: int) -> DataLoader:
    steps = [T.RandomResizedCrop(224), T.RandomHorizontalFlip()] if train else [T.Resize(256), T.CenterCrop(224)]
    transform = T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return DataLoader(datasets.ImageFolder(str(root), transform=transform), batch_size=batch_size,
                      shuffle=train, num_workers=workers, persistent_workers=workers > 0)


def throughput(loader: DataLoader, passes: int, finish=lambda batch: batch) -> float:
    """Images per second over ``passes`` epochs, from the creation of the first iterator.

    Both loaders keep their workers between epochs, so worker start-up is counted once for each.
    """
    images = 0
    start = time.perf_counter()
    for _ in range(passes):
        for batch in loader:
            images += len(finish(batch)[0])
    return images / (time.perf_counter() - start)


def compare(root: Path, batch_size: int, args) -> list[list[str]]:
    data = ImageFolderDataModule(data_dir=str(root), val_fraction=0.5, image_size=224, batch_size=batch_size,
                                 num_workers=args.workers, train_augment="standard")
    data.setup("fit")
    everything = data.train_set.samples + data.val_set.samples
    data.train_set.samples = everything
    data.val_set.samples = everything

    def normalized(batch):
        return data.on_after_batch_transfer(batch, 0)

    rows = []
    for stage, train in (("train", True), ("eval", False)):
        ours_loader = data.train_dataloader() if train else data.val_dataloader()
        seeds = seeds_loader(root, train, batch_size, args.workers)
        results = interleaved({"seeds": lambda loader=seeds: throughput(loader, args.passes),
                               "ours": lambda loader=ours_loader: throughput(loader, args.passes, normalized)},
                              args.rounds)
        ratio = median([o / s for o, s in zip(results["ours"], results["seeds"])])
        rows.append([f"{root.name} ({len(everything)}, batch {batch_size})", stage, f"{median(results['seeds']):.1f}",
                     f"{median(results['ours']):.1f}", f"**{ratio:.2f}x**"])
        print(f"{root.name} {stage}: {ratio:.2f}x", flush=True)
    return rows


def per_image_costs(root: Path) -> list[list[str]]:
    """Milliseconds per image of each step, in this process on one thread: where the time goes."""
    files = sorted(str(path) for path in root.rglob("*.jpg"))
    seeds_train = T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
                             T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    seeds_eval = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    steps = {
        "seeds' training view (PIL decode, crop, flip, ToTensor, Normalize)": lambda f: seeds_train(
            Image.open(f).convert("RGB")),
        "seeds' evaluation view (PIL decode, Resize, CenterCrop, ToTensor, Normalize)": lambda f: seeds_eval(
            Image.open(f).convert("RGB")),
        "of which the PIL decode": lambda f: Image.open(f).convert("RGB"),
        "our training view (`RandomResizedCropView`)": RandomResizedCropView(Geometry(224, 224)),
        "our evaluation view (`EvaluationView`)": EvaluationView(Geometry(224, 224)),
        "of which the libjpeg-turbo decode (`load_image`)": load_image,
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    for name, step in steps.items():
        for path in files[:8]:
            step(path)
        start = time.perf_counter()
        for path in files:
            step(path)
        rows.append([name, f"{(time.perf_counter() - start) / len(files) * 1000:.2f}"])
    torch.set_num_threads(threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=240, help="photo-sized JPEGs")
    parser.add_argument("--phone-images", type=int, default=48, help="phone-camera-sized JPEGs (4032x3024)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=2, help="epochs per measurement")
    args = parser.parse_args()
    photos = make_photos(ROOT / "data" / "bench_photos", 3, args.images // 3, PHOTO_SIZES)
    rows = compare(photos, args.batch_size, args)
    if args.phone_images:
        phones = make_photos(ROOT / "data" / "bench_phone_photos", 3, args.phone_images // 3, PHONE_SIZES)
        rows += compare(phones, 8, args)
    report(f"Input pipeline: images/s at 224 px, {args.workers} workers, {args.passes} epochs per measurement",
           table(["JPEGs (count)", "loader", "seeds' ImageFolder + PIL + Compose", "ImageFolderDataModule",
                  "speed-up"], rows))
    report(f"Input pipeline: milliseconds per image of the {photos.name} JPEGs, one process, one thread",
           table(["step", "ms per image"], per_image_costs(photos)))


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
