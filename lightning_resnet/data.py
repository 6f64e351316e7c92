"""Image folders in, normalized batches out: the ``ImageFolderDataModule``.

Images are decoded to ``uint8`` RGB tensors in the loader's workers (JPEGs by libjpeg-turbo, or
at reduced scale when the crop needs far less than the full resolution), cropped, resized and
augmented as ``uint8`` with ``torchvision.transforms.v2``, moved to the device as ``uint8`` and
normalized there.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import ExifTags, Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate, random_split
from torchvision import io as tv_io
from torchvision.datasets.folder import make_dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
DEMO_DATA = "demo:digits"
DEMO_DIR = Path("data/digits")

TrainAugment = Literal["basic", "standard", "trivialaugment", "randaugment", "autoaugment"]
Normalize = Literal["imagenet", "auto"]


class LayoutError(ValueError):
    """A data folder that is not laid out as one sub-folder of images per class."""


def is_image_file(path: str | Path) -> bool:
    """True for a visible file with an image extension (any case); hidden files such as ``._x.jpg`` are not."""
    name = os.path.basename(path)
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def load_image(
    path: str | Path, min_size: int | tuple[int, int] | None = None, data: bytes | None = None
) -> Tensor:
    """Decode ``path`` to a ``uint8`` RGB tensor of shape ``(3, H, W)``, EXIF orientation applied.

    A JPEG that is at least four times ``min_size`` (width, height as stored, or one side for
    both) decodes at 1/4 or 1/8 scale with PIL's draft mode, never below ``min_size``; other
    JPEGs decode in full with torchvision's libjpeg-turbo decoder, straight into a tensor with no
    PIL image in between. Grayscale, palette, CMYK and 16-bit images become RGB; transparent
    pixels are composited onto white. ``data`` is the file's content when the caller has read it.
    """
    data = Path(path).read_bytes() if data is None else data
    with Image.open(io.BytesIO(data)) as image:
        if image.format == "JPEG":
            wanted = (min_size, min_size) if isinstance(min_size, int) else min_size
            if wanted and min(image.size[0] // max(wanted[0], 1), image.size[1] // max(wanted[1], 1)) >= 4:
                image.draft("RGB", wanted)
            else:
                return decode_jpeg(data, path)
        ImageOps.exif_transpose(image, in_place=True)
        return TF.pil_to_tensor(to_rgb(image))


def decode_jpeg(data: bytes, path: str | Path) -> Tensor:
    """libjpeg-turbo through torchvision (deprecated in torchvision 0.29 for TorchCodec, still shipped)."""
    try:
        return tv_io.decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=tv_io.ImageReadMode.RGB,
                                 apply_exif_orientation=True)
    except RuntimeError as error:  # torchvision reports undecodable data as RuntimeError
        raise OSError(f"cannot decode {path}: {error}") from None


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, after the EXIF orientation, read from the header alone."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return image.size[::-1] if orientation in (5, 6, 7, 8) else image.size


# Reduced-scale JPEG decodes keep at least twice the resolution they are resized to: then the
# result matches a full decode within interpolation noise (1/8 of a level on average, measured).
DRAFT_MARGIN = 2


class CenterView:
    """Evaluation view of an image file: resize the shorter side to ``resize_size``, center-crop ``size``.

    Large JPEGs decode at reduced scale (see :func:`load_image`).
    """

    def __init__(self, resize_size: int, size: int) -> None:
        self.resize_size = resize_size
        self.transform = v2.Compose([v2.Resize(resize_size, antialias=True), v2.CenterCrop(size)])

    def __call__(self, path: str | Path) -> Tensor:
        return self.transform(load_image(path, DRAFT_MARGIN * self.resize_size))


class RandomResizedCropView:
    """Training view of an image file: a random resized crop that decodes only the resolution it needs.

    The crop box is drawn by torchvision's ``RandomResizedCrop`` from the image size in the file's
    header; the file is then decoded at the lowest resolution at which the box still spans twice
    ``size`` pixels each way (see :func:`load_image`), so a small crop of a large photo keeps its
    detail and a large crop of it costs a fraction of a full decode.
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0)) -> None:
        self.size = size
        self.crop = v2.RandomResizedCrop(size, scale=scale, antialias=True)

    def __call__(self, path: str | Path) -> Tensor:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            width, height = oriented_size(image)
            box = self.crop.make_params([torch.empty(1, 1, 1).expand(3, height, width)])
            needed = DRAFT_MARGIN * max(self.size / box["width"], self.size / box["height"])
            stored_width, stored_height = image.size
        wanted = (math.ceil(stored_width * needed), math.ceil(stored_height * needed))
        pixels = load_image(path, wanted, data=data)
        scale_y, scale_x = pixels.shape[1] / height, pixels.shape[2] / width
        return TF.resized_crop(
            pixels,
            round(box["top"] * scale_y),
            round(box["left"] * scale_x),
            max(1, round(box["height"] * scale_y)),
            max(1, round(box["width"] * scale_x)),
            [self.size, self.size],
            antialias=True,
        )


def to_rgb(image: Image.Image) -> Image.Image:
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


UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class ImageSamples(Dataset):
    """``(path, target)`` pairs read as ``(uint8 tensor, target)`` by ``view``, then ``augment``.

    The target is the class index of labelled images and the path of images to predict.
    An image that cannot be decoded is counted in ``skipped`` (shared by the loader's worker
    processes) and warned about; then, with ``replace_unreadable`` (training), another random
    sample takes its place so that batches keep their size, and otherwise the sample is ``None``
    and :func:`collate_readable` leaves it out of the batch.
    """

    def __init__(self, samples: Sequence[tuple[str, int | str]], view: Callable[[str], Tensor],
                 augment: Callable[[Tensor], Tensor] | None = None, replace_unreadable: bool = False):
        self.samples = list(samples)
        self.view = view
        self.augment = augment
        self.replace_unreadable = replace_unreadable
        self.skipped = multiprocessing.Value("i", 0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int | str] | None:
        for _ in range(10):
            path, target = self.samples[index]
            try:
                image = self.view(path)
                return (self.augment(image) if self.augment else image), target
            except UNREADABLE as error:
                with self.skipped.get_lock():
                    self.skipped.value += 1
                warnings.warn(f"skipped unreadable image {path}: {error}", stacklevel=2)
                if not self.replace_unreadable:
                    return None
                index = random.randrange(len(self.samples))
        raise RuntimeError(f"10 unreadable images in a row, the last {path}: is the data folder readable?")


def collate_readable(batch: list[tuple[Tensor, int | str] | None]) -> list | None:
    """``default_collate`` of the samples that could be read; None when none could."""
    readable = [sample for sample in batch if sample is not None]
    return default_collate(readable) if readable else None


def scan_image_folder(root: Path, classes: Sequence[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names and samples of a folder with one sub-folder of images per class.

    Hidden folders and files are ignored. Empty class folders are left out with a warning,
    unless ``classes`` fixes the class list (the classes a model was trained on).
    """
    layout = f"expected {root}/<class name>/<image files>"
    if not root.exists():
        raise LayoutError(f"data folder {root} does not exist: {layout}")
    if not root.is_dir():
        raise LayoutError(f"data path {root} is not a folder: {layout}")
    found = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not found:
        raise LayoutError(f"{root} holds no class folders: {layout}")
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise LayoutError(
                f"{root} has {len(found)} class folders and the model {len(classes)} classes: "
                f"{', '.join(unknown)} are not among the model's ({', '.join(classes)})"
            )
        present = {name: index for index, name in enumerate(classes) if name in found}
        return list(classes), make_dataset(root, present, is_valid_file=is_image_file, allow_empty=True)

    samples = make_dataset(root, {name: index for index, name in enumerate(found)},
                           is_valid_file=is_image_file, allow_empty=True)
    counts = Counter(target for _, target in samples)
    empty = [name for index, name in enumerate(found) if not counts[index]]
    if len(empty) == len(found):
        raise LayoutError(f"{root} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    if empty:
        warnings.warn(f"{root}: left out {len(empty)} empty class folder(s): {', '.join(empty)}", stacklevel=2)
        kept = [name for name in found if name not in empty]
        new_index = {found.index(name): index for index, name in enumerate(kept)}
        return kept, [(path, new_index[target]) for path, target in samples]
    return found, samples


def unreadable_reason(path: str) -> str | None:
    """Why ``path`` cannot be an image, from its header and its last bytes only; None if it looks whole.

    Finds empty files, files that are no image, and JPEG and PNG files cut short (no end marker).
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return "empty file"
        with Image.open(path) as image:
            kind = image.format
        end_marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(kind)
        if end_marker:
            with open(path, "rb") as handle:
                handle.seek(max(0, size - 1024))
                if end_marker not in handle.read():
                    return f"truncated {kind}"
    except UNREADABLE as error:
        return str(error) or type(error).__name__
    return None


def without_unreadable(samples: list[tuple[str, int]], where: Path) -> list[tuple[str, int]]:
    """``samples`` less the files that :func:`unreadable_reason` rejects, named in one warning."""
    with ThreadPoolExecutor(max_workers=min(32, 4 * (os.cpu_count() or 1))) as pool:
        reasons = list(pool.map(unreadable_reason, [path for path, _ in samples]))
    bad = [(path, reason) for (path, _), reason in zip(samples, reasons) if reason]
    if bad:
        listed = "; ".join(f"{path} ({reason})" for path, reason in bad[:10])
        more = f"; and {len(bad) - 10} more" if len(bad) > 10 else ""
        warnings.warn(f"{where}: left out {len(bad)} unreadable image(s) of {len(samples)}: {listed}{more}",
                      stacklevel=2)
    return [sample for sample, reason in zip(samples, reasons) if not reason]


def scan_unlabelled(path: Path) -> list[str]:
    """One image file, or every image file under a folder (recursively)."""
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise LayoutError(f"predict path {path} does not exist: expected an image file or a folder of images")
    files = sorted(str(p) for p in path.rglob("*") if p.is_file() and is_image_file(p)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise LayoutError(f"{path} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def write_digits_demo(root: Path) -> None:
    """Write scikit-learn's 1,797 handwritten digits (8x8, 10 classes) as an ImageFolder tree of PNGs.

    The tree is written to a temporary folder beside ``root`` and renamed into place, so that
    an interrupted write or a second process never leaves a partial data set at ``root``.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
            folder = partial / str(label)
            folder.mkdir(exist_ok=True)
            ink = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)
            Image.fromarray(ink, "L").save(folder / f"{index:04d}.png")
        partial.rename(root)
        log.info("wrote the scikit-learn digits demo (%d images) to %s", len(digits.target), root)
    except OSError:
        if not root.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


class ImageFolderDataModule(LightningDataModule):
    """Train / validation split of a folder of class sub-folders, plus optional test and predict inputs.

    Args:
        data_dir: folder with one sub-folder of images per class; ``demo:digits`` writes and uses
            scikit-learn's digits under ``data/digits``.
        val_fraction: share of ``data_dir`` held out for validation by a random split.
        seed: seed of that split; the same seed gives the same split on every machine and process.
        test_dir: optional folder laid out like ``data_dir`` for ``test``.
        predict_dir: an image file or a folder of images for ``predict``.
        image_size: side of the square images the model sees.
        crop_fraction: evaluation resizes the shorter side to ``image_size / crop_fraction``, then
            center-crops ``image_size`` (0.875 is the ImageNet convention; 1.0 keeps the whole image).
        train_augment: ``basic`` (evaluation's resize and crop), ``standard`` (random resized crop
            and horizontal flip), or ``standard`` followed by ``trivialaugment``, ``randaugment`` or
            ``autoaugment``.
        crop_scale: area range of the random resized crop (0.08-1 for ImageNet; narrower for small images).
        hflip: probability of a horizontal flip (0 for digits and text).
        normalize: ``imagenet`` mean/std, or ``auto`` to measure the training split's once and cache it.
        batch_size: images per batch and process.
        num_workers: loader processes; by default one per CPU core.
        verify_images: at setup, leave out (and list) empty, truncated and undecodable files, reading
            only each file's header and last bytes. A file that fails later is skipped and counted.
        class_names: the classes in index order; read from ``data_dir`` when not given. The command
            line takes them from the checkpoint when one is given, so that indices keep their meaning.
    """

    def __init__(
        self,
        data_dir: str = DEMO_DATA,
        val_fraction: float = 0.2,
        seed: int = 42,
        test_dir: str | None = None,
        predict_dir: str | None = None,
        image_size: int = 224,
        crop_fraction: float = 0.875,
        train_augment: TrainAugment = "standard",
        crop_scale: tuple[float, float] = (0.08, 1.0),
        hflip: float = 0.5,
        normalize: Normalize = "imagenet",
        batch_size: int = 32,
        num_workers: int | None = None,
        verify_images: bool = True,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        self.save_hyperparameters(ignore=["class_names"])
        self.data_dir = DEMO_DIR if data_dir == DEMO_DATA else Path(data_dir).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.test_dir = Path(test_dir).expanduser() if test_dir else None
        self.predict_dir = Path(predict_dir).expanduser() if predict_dir else None
        self.image_size = image_size
        self.crop_fraction = crop_fraction
        self.train_augment = train_augment
        self.crop_scale = tuple(crop_scale)
        self.hflip = hflip
        self.normalize = normalize
        self.batch_size = batch_size
        self.num_workers = (os.cpu_count() or 1) if num_workers is None else num_workers
        self.verify_images = verify_images
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD
        self._class_names = list(class_names) if class_names else None
        self._samples: list[tuple[str, int]] | None = None
        self.predict_paths: list[str] = []

    # ----- classes and split -------------------------------------------------------------------

    def _ensure_demo(self) -> None:
        if self.hparams.data_dir == DEMO_DATA and not self.data_dir.exists():
            write_digits_demo(self.data_dir)

    def _scan(self) -> None:
        if self._samples is None:
            self._ensure_demo()
            self._class_names, samples = scan_image_folder(self.data_dir, self._class_names)
            self._samples = without_unreadable(samples, self.data_dir) if self.verify_images else samples

    @property
    def class_names(self) -> list[str]:
        if self._class_names is None:
            self._scan()
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        """The (train, validation) samples: a random split fixed by ``seed``."""
        self._scan()
        generator = torch.Generator().manual_seed(self.seed)
        train, val = random_split(range(len(self._samples)), [1 - self.val_fraction, self.val_fraction], generator)
        if len(train) == 0 or len(val) == 0:
            raise LayoutError(
                f"{self.data_dir} has {len(self._samples)} images: "
                f"too few for a {self.val_fraction:.0%} validation split"
            )
        return [self._samples[i] for i in train.indices], [self._samples[i] for i in val.indices]

    # ----- transforms ----------------------------------------------------------------------------

    @property
    def skipped_images(self) -> int:
        """Images that could not be decoded so far, in every split and loader worker."""
        sets = [getattr(self, name, None) for name in ("train_set", "val_set", "test_set", "predict_set")]
        return sum(dataset.skipped.value for dataset in sets if dataset is not None)

    @property
    def resize_size(self) -> int:
        return round(self.image_size / self.crop_fraction)

    def eval_view(self) -> CenterView:
        return CenterView(self.resize_size, self.image_size)

    def train_view(self) -> CenterView | RandomResizedCropView:
        if self.train_augment == "basic":
            return self.eval_view()
        return RandomResizedCropView(self.image_size, self.crop_scale)

    def train_augmentation(self) -> v2.Transform | None:
        """What follows the crop in training: the flip and the chosen policy, on ``uint8`` tensors."""
        if self.train_augment == "basic":
            return None
        steps: list[v2.Transform] = [v2.RandomHorizontalFlip(self.hflip)] if self.hflip > 0 else []
        policy = {
            "standard": None,
            "trivialaugment": v2.TrivialAugmentWide,
            "randaugment": v2.RandAugment,
            "autoaugment": v2.AutoAugment,
        }[self.train_augment]
        if policy is not None:
            steps.append(policy())
        return v2.Compose(steps) if steps else None

    # ----- normalization -----------------------------------------------------------------------

    def _stats_cache(self, train: list[tuple[str, int]]) -> Path:
        digest = hashlib.sha1()
        for path, _ in train:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        digest.update(f"{self.image_size}|{self.crop_fraction}".encode())
        cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return cache_home / "lightning_resnet" / f"normalization-{digest.hexdigest()[:16]}.json"

    def measure_mean_std(self, samples: list[tuple[str, int]]) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of ``samples`` after the evaluation resize and crop, in [0, 1] units."""
        loader = DataLoader(ImageSamples(samples, self.eval_view()),
                            batch_size=256, num_workers=self.num_workers, collate_fn=collate_readable)
        total = torch.zeros(3, dtype=torch.float64)
        total_sq = torch.zeros(3, dtype=torch.float64)
        count = 0
        for images, _ in filter(None, loader):
            pixels = images.to(torch.float64).div_(255).transpose(0, 1).reshape(3, -1)
            total += pixels.sum(1)
            total_sq += pixels.square().sum(1)
            count += pixels.shape[1]
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
        return mean.tolist(), std.tolist()

    def _auto_stats(self, compute: bool) -> tuple[list[float], list[float]] | None:
        train, _ = self.split()
        cache = self._stats_cache(train)
        if cache.is_file():
            stats = json.loads(cache.read_text())
            return stats["mean"], stats["std"]
        if not compute:
            return None
        mean, std = self.measure_mean_std(train)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"data_dir": str(self.data_dir), "mean": mean, "std": std}))
        except OSError as error:
            warnings.warn(f"could not cache the normalization statistics in {cache}: {error}", stacklevel=2)
        return mean, std

    # ----- Lightning hooks -----------------------------------------------------------------------

    def prepare_data(self) -> None:
        self._ensure_demo()
        if self.normalize == "auto" and self.data_dir.exists():
            self._auto_stats(compute=True)

    def setup(self, stage: str) -> None:
        if stage in ("fit", "validate"):
            train, val = self.split()
            if self.normalize == "auto":
                self.mean, self.std = map(tuple, self._auto_stats(compute=True))
            self.train_set = ImageSamples(train, self.train_view(), self.train_augmentation(), replace_unreadable=True)
            self.val_set = ImageSamples(val, self.eval_view())
        if stage == "test":
            if self.test_dir is None:
                raise ValueError("test needs data.test_dir: a folder laid out like data_dir")
            _, samples = scan_image_folder(self.test_dir, self.class_names)
            if self.verify_images:
                samples = without_unreadable(samples, self.test_dir)
            self.test_set = ImageSamples(samples, self.eval_view())
        if stage == "predict":
            if self.predict_dir is None:
                raise ValueError("predict needs data.predict_dir: an image file or a folder of images")
            self.predict_paths = scan_unlabelled(self.predict_dir)
            samples = [(path, path) for path in self.predict_paths]
            self.predict_set = ImageSamples(samples, self.eval_view())

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        on_gpu = self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=on_gpu,
            persistent_workers=self.num_workers > 0,
            drop_last=shuffle and len(dataset) > self.batch_size,
            collate_fn=collate_readable,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)

    def on_after_batch_transfer(self, batch: list[Tensor] | None, dataloader_idx: int) -> list[Tensor] | None:
        """Turn the ``uint8`` images into normalized floats on the device (a list, so callbacks can replace them)."""
        if batch is None:
            return None
        images, targets = batch
        shift, scale = self._normalization(images.device)
        # one conversion and two in-place passes: 4x faster on the CPU than to_dtype + normalize
        return [images.float().sub_(shift).mul_(scale), targets]

    def _normalization(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """``mean`` and ``1 / std`` in ``uint8`` units, as broadcastable tensors kept on ``device``."""
        key = (str(device), tuple(self.mean), tuple(self.std))
        if getattr(self, "_normalization_cache", (None,))[0] != key:
            shift = torch.tensor(self.mean, device=device).view(1, -1, 1, 1) * 255
            scale = 1 / (torch.tensor(self.std, device=device).view(1, -1, 1, 1) * 255)
            self._normalization_cache = (key, shift, scale)
        return self._normalization_cache[1:]

    def state_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "class_names": self._class_names}

    def load_state_dict(self, state_dict: dict) -> None:
        self.mean = tuple(state_dict["mean"])
        self.std = tuple(state_dict["std"])
