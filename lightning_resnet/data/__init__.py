"""The data's path from an image file on disk to a normalized batch on the device, one file per step.

``folders`` (layouts, files and classes) -> ``catalog`` (the start-up check and hashes, cached)
-> ``duplicates`` (copies and leaks) -> ``splits`` (stratified, grouped, k-fold; ``split.csv``)
-> ``decode`` (bytes to ``uint8`` RGB) -> ``transforms`` (views and augmentation presets) ->
``dataset`` (samples and collate) -> ``samplers`` (shuffle, balanced draw, evaluation shards)
-> ``normalization`` (statistics) -> ``datamodule`` (all of it behind Lightning's hooks).
"""

from .catalog import ImageRecord, image_records, unreadable_reason
from .datamodule import ImageData, ImageFolderDataModule, SamplerKind, image_data
from .dataset import ImageSamples, Sample, collate_readable
from .decode import DECODE_ERRORS, load_image, to_rgb
from .duplicates import DuplicateGroup, duplicate_groups
from .folders import (
    DEMO_DATA,
    DEMO_DIR,
    IMAGE_EXTENSIONS,
    FolderLayout,
    LayoutError,
    detect_layout,
    is_image_file,
    scan_image_folder,
    scan_unlabelled,
    write_digits_demo,
)
from .normalization import IMAGENET_MEAN, IMAGENET_STD, Normalize, cached_mean_std, measure_mean_std
from .splits import SPLIT_COLUMNS, SPLIT_CSV, read_split_csv, write_split_csv
from .transforms import AugmentPreset, CenterView, RandomResizedCropView, eval_view, train_augmentation, train_view

__all__ = [
    "DECODE_ERRORS",
    "DEMO_DATA",
    "DEMO_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "SPLIT_COLUMNS",
    "SPLIT_CSV",
    "AugmentPreset",
    "DuplicateGroup",
    "FolderLayout",
    "ImageRecord",
    "SamplerKind",
    "CenterView",
    "ImageData",
    "ImageFolderDataModule",
    "ImageSamples",
    "LayoutError",
    "Normalize",
    "RandomResizedCropView",
    "Sample",
    "cached_mean_std",
    "image_records",
    "detect_layout",
    "duplicate_groups",
    "collate_readable",
    "eval_view",
    "image_data",
    "is_image_file",
    "load_image",
    "measure_mean_std",
    "read_split_csv",
    "scan_image_folder",
    "scan_unlabelled",
    "to_rgb",
    "train_augmentation",
    "train_view",
    "unreadable_reason",
    "write_digits_demo",
    "write_split_csv",
]
