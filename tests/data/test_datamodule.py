"""ImageFolderDataModule: the split, the transforms, normalization and RGB decoding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, JpegImagePlugin
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from lightning_resnet.cli import main
from lightning_resnet.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvaluationView,
    Geometry,
    ImageFolderDataModule,
    LayoutError,
    Normalization,
    RandomResizedCropView,
    load_image,
    normalization,
    train_augmentation,
    write_digits,
)

from ..conftest import datamodule, make_image_folder, tiny_args

# ----- split ------------------------------------------------------------------------------------


def test_split_is_80_20_disjoint_and_reproducible(tmp_path):
    folder = make_image_folder(tmp_path / "images", classes=4, per_class=25)
    train, val = datamodule(folder).source.split()
    assert (len(train), len(val)) == (80, 20)
    assert not {p for p, _ in train} & {p for p, _ in val}
    assert {p for p, _ in train} | {p for p, _ in val} == {str(p) for p in folder.rglob("*.*")}
    assert datamodule(folder).source.split() == (train, val)
    assert datamodule(folder, seed=7).source.split()[1] != val
    assert len(datamodule(folder, val_fraction=0.3).source.split()[1]) == 30


def test_classes_are_the_sorted_sub_folders(image_folder):
    data = datamodule(image_folder)
    assert data.class_names == ["class_0", "class_1", "class_2"]
    assert data.num_classes == 3
    _, val = data.source.split()
    assert all(Path(path).parent.name == data.class_names[target] for path, target in val)


def test_given_class_names_fix_the_indices(image_folder):
    data = datamodule(image_folder, class_names=["class_2", "class_1", "class_0", "class_9"])
    assert data.num_classes == 4
    train, _ = data.source.split()
    assert all(Path(path).parent.name == data.class_names[target] for path, target in train)


def test_train_transforms_only_on_the_train_part(image_folder):
    data = datamodule(image_folder, train_augment="standard")
    data.setup("fit")
    torch.manual_seed(0)
    train_views = {tuple(data.train_set[0][0].flatten()[:64].tolist()) for _ in range(6)}
    val_views = {tuple(data.val_set[0][0].flatten()[:64].tolist()) for _ in range(6)}
    assert len(train_views) > 1
    assert len(val_views) == 1
    image, target = data.val_set[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32) and isinstance(target, int)


@pytest.mark.parametrize("preset", ["basic", "pad_crop", "standard", "trivialaugment", "randaugment", "autoaugment"])
def test_every_augment_preset_gives_uint8_crops(image_folder, preset):
    data = datamodule(image_folder, train_augment=preset)
    data.setup("fit")
    image, _ = data.train_set[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)


def test_pad_crop_shifts_the_image_by_at_most_an_eighth_of_its_side_filling_in_zeros():
    augment = train_augmentation("pad_crop", 0.0, (32, 32))
    image = torch.randint(1, 256, (3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    torch.manual_seed(0)
    shifts = set()
    for _ in range(30):
        crop = augment(image)
        matches = {(top, left) for top in range(9) for left in range(9)
                   if torch.equal(crop, padded[:, top : top + 32, left : left + 32])}
        assert len(matches) == 1  # the image moved by up to 4 px each way, zeros where it left
        shifts |= matches
    assert len(shifts) > 10


def test_eval_resize_then_center_crop(tmp_path):
    Image.new("RGB", (80, 40), (10, 20, 30)).save(tmp_path / "wide.png")
    data = datamodule(tmp_path, image_size=32, crop_fraction=0.5)
    assert data.geometry.resize_size == 64
    assert data.views.evaluation(tmp_path / "wide.png").shape == (3, 32, 32)


def test_loaders_batch_uint8_and_normalize_on_the_device(image_folder):
    data = datamodule(image_folder)
    data.setup("fit")
    images, targets = next(iter(data.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32) and targets.dtype == torch.int64
    normalized, same_targets = data.on_after_batch_transfer([images, targets], 0)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert torch.allclose(normalized, (images.float() / 255 - mean) / std, atol=1e-6)
    assert same_targets is targets and isinstance(normalized, torch.Tensor)


def test_loader_defaults(image_folder):
    data = ImageFolderDataModule(data_dir=str(image_folder))
    cores = len(os.sched_getaffinity(0))
    assert data.num_workers >= 1 and data.num_workers + 1 <= max(cores, 2)  # never more processes than cores
    data = datamodule(image_folder, num_workers=1)
    data.setup("fit")
    loader = data.train_dataloader()
    assert loader.persistent_workers and not loader.pin_memory
    assert not loader.drop_last and len(loader) == 6  # 24 training images in batches of 4
    assert not data.val_dataloader().drop_last
    for batch_size, kept in ((5, [5, 5, 5, 5, 4]), (23, [23])):  # a last batch of one image is dropped
        data = datamodule(image_folder, num_workers=0, batch_size=batch_size)
        data.setup("fit")
        assert [len(targets) for _, targets in data.train_dataloader()] == kept


def test_auto_normalization_measures_the_train_split_once(image_folder, monkeypatch):
    data = datamodule(image_folder, normalize="auto", crop_fraction=1.0)
    data.prepare_data()
    data.setup("fit")
    train, _ = data.source.split()
    pixels = np.concatenate(
        [np.asarray(Image.open(path).convert("RGB").crop((4, 0, 36, 32))).reshape(-1, 3)  # 40x32: center 32x32
         for path, _ in train]
    ) / 255.0
    measured = data.normalization
    assert np.allclose(measured.mean, pixels.mean(0), atol=0.01)
    assert np.allclose(measured.std, pixels.std(0), atol=0.01)
    assert not np.allclose(measured.mean, IMAGENET_MEAN, atol=0.05)
    cache_files = list(Path(os.environ["XDG_CACHE_HOME"]).rglob("normalization-*.json"))
    assert len(cache_files) == 1 and json.loads(cache_files[0].read_text())["mean"] == list(measured.mean)

    def must_not_measure(*_):
        raise AssertionError("measured again")

    monkeypatch.setattr(normalization, "measure_mean_std", must_not_measure)
    again = datamodule(image_folder, normalize="auto", crop_fraction=1.0)
    again.setup("fit")
    assert again.normalization == measured


@pytest.mark.slow  # 1.8-2.9 s in make check's fresh-clone run (pyproject.toml's marker: 1.7 s or more)
def test_measured_statistics_are_kept_per_channel_count_whichever_run_came_first(workdir):
    """The cache of ``normalize: auto`` is keyed by everything its value depends on, the channels too."""
    gray = ["--model.backbone_options", "{stem: cifar, channels: [16, 32, 64, 128], in_chans: 1}"]
    runs = {}
    for name, extra in (("rgb", []), ("gray", gray), ("rgb_again", []), ("gray_again", gray)):
        runs[name] = main(tiny_args(workdir / "images", "--data.normalize", "auto", "--trainer.fast_dev_run", "true",
                                    *extra)).datamodule.normalization
    assert len(runs["rgb"].mean) == 3 and len(runs["gray"].mean) == 1
    assert runs["rgb_again"] == runs["rgb"] and runs["gray_again"] == runs["gray"]


def test_a_mean_and_std_given_by_hand_normalize_the_batches(image_folder):
    data = datamodule(image_folder, normalize={"mean": [0.5, 0.25, 0.0], "std": [0.5, 0.5, 1.0]})
    data.setup("fit")
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    normalized, _ = data.on_after_batch_transfer([images, torch.zeros(1)], 0)
    assert torch.allclose(normalized[0, :, 0, 0], torch.tensor([1.0, 1.5, 1.0]))


def test_normalization_travels_in_the_datamodule_state(image_folder):
    data = datamodule(image_folder, weights_normalization=([0.5, 0.4, 0.3], [0.2, 0.2, 0.2]))
    restored = datamodule(image_folder)
    assert restored.normalization.mean == IMAGENET_MEAN
    restored.load_state_dict(data.state_dict())
    assert restored.normalization == Normalization((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))


def test_missing_data_dir_names_the_path_and_the_layout(tmp_path):
    with pytest.raises(LayoutError, match=f"{tmp_path / 'nowhere'} does not exist: expected .*<class name>"):
        _ = datamodule(tmp_path / "nowhere").num_classes


def test_predict_takes_one_image_or_a_folder(image_folder):
    single = next(image_folder.rglob("*.png"))
    data = datamodule(image_folder, predict_dir=str(single))
    data.setup("predict")
    assert len(data.predict_set) == 1 and data.predict_set[0][1] == str(single)
    assert data.predict_paths == [str(single)]
    data = datamodule(image_folder, predict_dir=str(image_folder))
    data.setup("predict")
    assert len(data.predict_set) == 30


def test_test_dir_uses_the_training_classes(tmp_path):
    train = make_image_folder(tmp_path / "train", classes=3)
    test = make_image_folder(tmp_path / "test", classes=3, per_class=2, seed=1)
    (test / "class_1").rename(test / "renamed")
    data = datamodule(train, test_dir=str(test))
    with pytest.raises(LayoutError, match="has 3 class folders and the model 3 classes: renamed are not among"):
        data.setup("test")


def test_demo_writes_the_digits_as_an_image_folder(tmp_path):
    write_digits(tmp_path / "digits")
    folders = sorted(p.name for p in (tmp_path / "digits").iterdir())
    assert folders == [str(d) for d in range(10)]
    assert len(list((tmp_path / "digits").rglob("*.png"))) == 1797
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]
    image = load_image(next((tmp_path / "digits" / "0").iterdir()))
    assert image.shape == (3, 8, 8) and image.max() > 200


# ----- decoding to RGB -----------------------------------------------------------------------------


def test_grayscale_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.full((6, 5), 77, np.uint8), "L").save(tmp_path / "gray.png")
    image = load_image(tmp_path / "gray.png")
    assert image.shape == (3, 6, 5) and image.dtype == torch.uint8
    assert torch.all(image == 77)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    image = load_image(tmp_path / "palette.png")
    assert image[:, 0, 0].tolist() == [255, 255, 255]
    assert image[:, 3, 3].tolist() == [200, 30, 30]


def test_rgba_and_la_are_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 0)
    rgba[0, 1] = (0, 0, 255, 255)
    rgba[1, 0] = (0, 0, 0, 128)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = load_image(tmp_path / "rgba.png")
    assert image[:, 0, 0].tolist() == [255, 255, 255]
    assert image[:, 0, 1].tolist() == [0, 0, 255]
    assert all(abs(v - 127) <= 1 for v in image[:, 1, 0].tolist())
    Image.fromarray(np.array([[[10, 0], [10, 255]]], np.uint8), "LA").save(tmp_path / "la.png")
    image = load_image(tmp_path / "la.png")
    assert image[:, 0, 0].tolist() == [255, 255, 255] and image[:, 0, 1].tolist() == [10, 10, 10]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg")
    image = load_image(tmp_path / "cyan.jpg").float()
    assert image.shape == (3, 16, 16)
    assert image[0].mean() < 20 and image[1].mean() > 235 and image[2].mean() > 235


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    levels = np.array([[0, 257 * 64, 32768, 65535]], np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image = load_image(tmp_path / "deep.png")
    assert image[0, 0].tolist() == [0, 64, 128, 255]
    assert torch.equal(image[0], image[2])


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (0, 128, 0)).save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape == (3, 40, 20)


def test_jpeg_draft_decodes_smaller_but_never_below_the_target(tmp_path):
    Image.new("RGB", (2048, 1536), (90, 100, 110)).save(tmp_path / "photo.jpg")
    assert load_image(tmp_path / "photo.jpg").shape == (3, 1536, 2048)
    assert load_image(tmp_path / "photo.jpg", 224).shape == (3, 384, 512)  # 1/4: 1/8 would be 192 high
    assert load_image(tmp_path / "photo.jpg", 400).shape == (3, 1536, 2048)  # less than 4x: full decode
    assert load_image(tmp_path / "photo.jpg", (250, 190)).shape == (3, 192, 256)


def photo_like(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A JPEG with colour gradients, sharp-edged shapes and blur, like a photo at that size."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, width // 8, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height // 8, dtype=np.float32)[:, None, None]
    corners = rng.uniform(0, 255, (4, 3)).astype(np.float32)
    field = corners[0] * (1 - x) * (1 - y) + corners[1] * x * (1 - y) + corners[2] * (1 - x) * y + corners[3] * x * y
    image = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8)).resize((width, height), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(30):
        xs, ys = sorted(rng.integers(0, width, 2)), sorted(rng.integers(0, height, 2))
        draw.rectangle([xs[0], ys[0], xs[1], ys[1]], fill=tuple(rng.integers(0, 255, 3).tolist()))
    image.filter(ImageFilter.GaussianBlur(1.5)).save(path, quality=92)
    return path


@pytest.fixture
def draft_calls(monkeypatch) -> list[tuple]:
    calls, real_draft = [], JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, *args: (calls.append(args), real_draft(self, *args))[1])
    return calls


def test_fast_eval_view_matches_the_slow_path(tmp_path, draft_calls):
    path = photo_like(tmp_path / "photo.jpg", 4096, 3072)
    slow = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])(Image.open(path).convert("RGB"))
    fast = EvaluationView(Geometry(224, 224))(path)
    assert draft_calls == [("RGB", (512, 512))]  # decoded at 1/4: 1024x768
    difference = (slow.float() - fast.float()).abs()
    assert fast.shape == slow.shape == (3, 224, 224)
    assert difference.mean() < 0.5 and difference.flatten().quantile(0.99) <= 4  # interpolation noise


@pytest.mark.parametrize("scale, reduced", [((0.02, 0.03), False), ((0.9, 1.0), True)], ids=["small", "whole"])
def test_fast_train_crop_matches_the_same_crop_of_the_full_image(tmp_path, draft_calls, scale, reduced):
    path = photo_like(tmp_path / "photo.jpg", 4096, 3072, seed=1)
    full = T.PILToTensor()(Image.open(path).convert("RGB"))
    view = RandomResizedCropView(Geometry(224, 224), scale)
    torch.manual_seed(3)
    fast = view(path)
    torch.manual_seed(3)
    box = view.box(*full.shape[1:])
    slow = TF.resized_crop(full, box["top"], box["left"], box["height"], box["width"], [224, 224], antialias=True)
    difference = (slow.float() - fast.float()).abs()
    # the box, cut from a 1/4-scale decode, lands up to 2 full-resolution pixels off: grey-level noise
    assert difference.mean() < 1.0 and difference.flatten().quantile(0.99) <= 20
    assert bool(draft_calls) == reduced  # a small crop needs the full resolution
