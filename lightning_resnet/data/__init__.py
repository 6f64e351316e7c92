"""The data's path from an image file on disk to a normalized batch on the device, one file per step.

A source holds the images (``sources``: a folder, a converted data set). A folder is ``listing`` (layouts,
files and classes, no file read; ``named_sets`` downloads and writes a data set given by name, ``digits``
the offline demo's) -> ``image_records`` (the start-up
check and the ``hashing`` of each file, kept by ``cache``) -> ``duplicates`` (copies and leaks) ->
``corrections`` (the user's exclusions and relabellings) -> ``splits`` (stratified, grouped, k-fold;
``split.csv``) -> ``folder_split`` (all of that, once, as one immutable value). Then for every source:
``decode`` (bytes to ``uint8`` RGB) -> ``transforms`` (views and augmentation presets) -> ``dataset``
(samples and collate; ``features`` for cached backbone features) -> ``samplers`` and ``loaders`` (shuffle,
balanced draw, evaluation shards, the resumable training loader) -> ``normalization`` (statistics, applied
on the device) -> ``datamodule`` (the options and Lightning's hooks). ``convert`` writes a folder as a
converted data set.
"""

from .datamodule import ImageFolderDataModule, datamodule_of
from .dataset import ImageSamples, Sample, collate_readable
from .decode import DECODE_ERRORS, load_image, to_rgb
from .digits import DIGITS_DATA, DIGITS_DIR, write_digits
from .duplicates import DuplicateGroup, duplicate_groups
from .folder_split import FolderSplit, split_folder
from .geometry import RESIZE_MODES, Geometry, ResizeMode, size_of
from .image_records import ImageRecord, unreadable_reason
from .listing import (
    IMAGE_EXTENSIONS,
    FolderLayout,
    FolderListing,
    LayoutError,
    detect_layout,
    is_image_file,
    list_folder,
    scan_image_folder,
    scan_unlabelled,
)
from .named_sets import NamedDataSet, named_data_set
from .normalization import IMAGENET_MEAN, IMAGENET_STD, Normalization, Normalize, cached_mean_std, measure_mean_std
from .sources import ConvertedSource, FolderSource, ImageSource, SamplerKind, SourceOptions, open_source
from .splits import SPLIT_COLUMNS, SPLIT_CSV, SplitRule, read_split_csv, write_split_csv
from .transforms import AugmentPreset, EvaluationView, RandomResizedCropView, eval_view, train_augmentation, train_view

__all__ = [
    "DECODE_ERRORS",
    "DIGITS_DATA",
    "NamedDataSet",
    "named_data_set",
    "DIGITS_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "SPLIT_COLUMNS",
    "SPLIT_CSV",
    "AugmentPreset",
    "EvaluationView",
    "ConvertedSource",
    "DuplicateGroup",
    "FolderLayout",
    "FolderListing",
    "FolderSource",
    "FolderSplit",
    "Geometry",
    "ImageFolderDataModule",
    "ImageRecord",
    "ImageSamples",
    "ImageSource",
    "LayoutError",
    "Normalization",
    "Normalize",
    "RESIZE_MODES",
    "RandomResizedCropView",
    "ResizeMode",
    "Sample",
    "SamplerKind",
    "SourceOptions",
    "SplitRule",
    "cached_mean_std",
    "collate_readable",
    "datamodule_of",
    "detect_layout",
    "duplicate_groups",
    "eval_view",
    "is_image_file",
    "list_folder",
    "load_image",
    "measure_mean_std",
    "open_source",
    "read_split_csv",
    "scan_image_folder",
    "scan_unlabelled",
    "size_of",
    "split_folder",
    "to_rgb",
    "train_augmentation",
    "train_view",
    "unreadable_reason",
    "write_digits",
    "write_split_csv",
]
