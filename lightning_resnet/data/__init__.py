"""The data's path from an image file on disk to a normalized batch on the device, one file per step.

``folders`` (layouts, files and classes; ``demo`` writes the offline digits) -> ``catalog`` (the
start-up check and hashes, kept by ``cache``) -> ``duplicates`` (copies and leaks) -> ``splits``
(stratified, grouped, k-fold; ``split.csv``) -> ``index`` (all of that, once, as one immutable value)
-> ``decode`` (bytes to ``uint8`` RGB) -> ``transforms`` (views and augmentation presets) ->
``dataset`` (samples and collate) -> ``samplers`` (shuffle, balanced draw, evaluation shards)
-> ``normalization`` (statistics, applied on the device) -> ``datamodule`` (Lightning's hooks).
``inspection`` reports on a folder before any training.
"""

from .catalog import ImageRecord, image_records, unreadable_reason
from .datamodule import ImageFolderDataModule, SamplerKind, datamodule_of
from .dataset import ImageSamples, Sample, collate_readable
from .decode import DECODE_ERRORS, load_image, to_rgb
from .demo import DEMO_DATA, DEMO_DIR, write_digits_demo
from .duplicates import DuplicateGroup, duplicate_groups
from .folders import (
    IMAGE_EXTENSIONS,
    FolderLayout,
    LayoutError,
    detect_layout,
    is_image_file,
    scan_image_folder,
    scan_unlabelled,
)
from .index import FolderIndex, FolderListing, SplitRule, index_folder, list_folder
from .normalization import IMAGENET_MEAN, IMAGENET_STD, Normalization, Normalize, cached_mean_std, measure_mean_std
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
    "CenterView",
    "DuplicateGroup",
    "FolderIndex",
    "FolderLayout",
    "FolderListing",
    "ImageFolderDataModule",
    "ImageRecord",
    "ImageSamples",
    "LayoutError",
    "Normalization",
    "Normalize",
    "RandomResizedCropView",
    "Sample",
    "SamplerKind",
    "SplitRule",
    "cached_mean_std",
    "collate_readable",
    "datamodule_of",
    "detect_layout",
    "duplicate_groups",
    "eval_view",
    "image_records",
    "index_folder",
    "is_image_file",
    "list_folder",
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
