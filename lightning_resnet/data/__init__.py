"""The data's path from an image file on disk to a normalized batch on the device, one file per step.

``folders`` (find and check files) -> ``decode`` (bytes to ``uint8`` RGB) -> ``transforms``
(views and augmentation presets) -> ``dataset`` (samples and collate) -> ``normalization``
(statistics) -> ``datamodule`` (split, loaders, normalization on the device).
"""

from .datamodule import ImageData, ImageFolderDataModule, image_data
from .dataset import ImageSamples, Sample, collate_readable
from .decode import DECODE_ERRORS, load_image, to_rgb
from .folders import (
    DEMO_DATA,
    DEMO_DIR,
    IMAGE_EXTENSIONS,
    LayoutError,
    is_image_file,
    scan_image_folder,
    scan_unlabelled,
    unreadable_reason,
    without_unreadable,
    write_digits_demo,
)
from .normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, cached_mean_std, measure_mean_std
from .transforms import AugmentPreset, CenterView, RandomResizedCropView, eval_view, train_augmentation, train_view

__all__ = [
    "DECODE_ERRORS",
    "DEMO_DATA",
    "DEMO_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "AugmentPreset",
    "CenterView",
    "ImageData",
    "ImageFolderDataModule",
    "ImageSamples",
    "LayoutError",
    "Normalize",
    "RandomResizedCropView",
    "Sample",
    "cached_mean_std",
    "collate_readable",
    "eval_view",
    "image_data",
    "is_image_file",
    "load_image",
    "measure_mean_std",
    "scan_image_folder",
    "scan_unlabelled",
    "to_rgb",
    "train_augmentation",
    "train_view",
    "unreadable_reason",
    "without_unreadable",
    "write_digits_demo",
]
