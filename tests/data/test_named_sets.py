"""Data sets by name (``data.data_dir cifar10``, ``mnist``, ``imagenette160``, ...): written once from the archive or
files a download leaves in the cache, read as a pre-split folder; offline or unknown, one line."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lightning_resnet.cli import main
from lightning_resnet.data import ImageFolderDataModule, named_sets
from lightning_resnet.data.named_sets import NamedDataSet, datasets_dir

from ..conftest import CIFAR10_CLASSES, ROOT, cli_error, free_port, place_tiny_cifar10


@pytest.fixture(autouse=True)
def _no_system_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """No data set installed by the system (this machine may have Debian's Fashion-MNIST): each test places its own."""
    monkeypatch.setattr(named_sets, "SYSTEM_COPIES", {})


def test_cifar10_by_name_is_written_once_as_its_train_and_test_folders(monkeypatch, tmp_path):
    archive = place_tiny_cifar10(monkeypatch, train_per_class=10, test_per_class=2)
    data = ImageFolderDataModule(data_dir="cifar10", image_size=32, val_fraction=0.1, batch_size=8, num_workers=0)
    data.prepare_data()
    data.setup("fit")
    images = datasets_dir() / "cifar10" / "images"
    assert data.data_dir == images and data.source.class_names == tuple(CIFAR10_CLASSES)
    assert sorted(path.name for path in images.iterdir()) == ["test", "train"]
    assert len(list((images / "train").rglob("*.png"))) == 100 and len(list((images / "test").rglob("*.png"))) == 20
    assert (len(data.train_set), len(data.val_set)) == (90, 10)  # the paper's 45k/5k, a tenth of train/
    image, label = data.val_set[0]
    assert tuple(image.shape) == (3, 32, 32)

    archive.unlink()  # written once: a later run reads the folder and needs neither the archive nor a network
    again = ImageFolderDataModule(data_dir="cifar10", image_size=32, val_fraction=0.1, num_workers=0)
    again.setup("test")
    assert len(again.test_set) == 20


def test_a_folder_of_the_same_name_wins_over_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / "mnist" / name).mkdir(parents=True)
    data = ImageFolderDataModule(data_dir="mnist")
    assert data.data_dir == Path("mnist")


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as MNIST's are: the magic number (unsigned bytes, the number of dimensions), each size, the bytes."""
    header = np.array([0x0800 + array.ndim, *array.shape], dtype=">i4").tobytes()
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_by_name_reads_the_files_a_download_extracts(monkeypatch):
    raw = datasets_dir() / "fashion_mnist" / "download" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(count, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10)
    data = ImageFolderDataModule(data_dir="fashion_mnist", image_size=28, num_workers=0)
    data.prepare_data()
    assert "T-shirt_top" in data.source.class_names  # torchvision's "T-shirt/top", a folder's name
    images = datasets_dir() / "fashion_mnist" / "images"
    assert len(list((images / "train").rglob("*.png"))) == 30 and len(list((images / "test").rglob("*.png"))) == 10


def system_copy(folder: Path, train_labels: int = 30) -> Path:
    """Fashion-MNIST's four files as a distribution's package installs them: gzipped again (other bytes, other MD5s
    than torchvision's), 30 training and 10 test images."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for prefix, count, labels in (("train", 30, train_labels), ("t10k", 10, 10)):
        for name, array in ((f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, size=(count, 28, 28))),
                            (f"{prefix}-labels-idx1-ubyte", np.arange(labels) % 10)):
            write_idx(folder / name, array)
            (folder / f"{name}.gz").write_bytes(gzip.compress((folder / name).read_bytes(), mtime=0))
            (folder / name).unlink()
    return folder


def test_fashion_mnist_is_read_from_the_copy_the_system_installed_without_downloading(monkeypatch, tmp_path, caplog):
    from torchvision.datasets import FashionMNIST

    caplog.set_level(logging.INFO)
    monkeypatch.setitem(named_sets.SYSTEM_COPIES, "FashionMNIST", system_copy(tmp_path / "usr_share"))
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{free_port()}/"])  # offline
    data = ImageFolderDataModule(data_dir="fashion_mnist", image_size=28, num_workers=0)
    data.prepare_data()
    images = datasets_dir() / "fashion_mnist" / "images"
    assert len(list((images / "train").rglob("*.png"))) == 30 and len(list((images / "test").rglob("*.png"))) == 10
    assert any(f"from {tmp_path / 'usr_share'}" in record.getMessage() for record in caplog.records)


def test_a_system_copy_that_does_not_parse_is_not_read(monkeypatch, tmp_path, capsys):
    from torchvision.datasets import FashionMNIST

    monkeypatch.setitem(named_sets.SYSTEM_COPIES, "FashionMNIST", system_copy(tmp_path / "usr_share", 29))
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{free_port()}/"])
    code, message = cli_error(capsys, ["fit", "--data.data_dir", "fashion_mnist", "--trainer.max_epochs", "1"])
    assert code == 2 and message.startswith("error: data.data_dir fashion_mnist: could not download it (")


def test_imagenette_by_name_links_the_extracted_images_under_class_names():
    extracted = datasets_dir() / "imagenette160" / "download" / "imagenette2-160"
    for split, count in (("train", 3), ("val", 1)):
        for wnid in ("n01440764", "n02102040"):
            (extracted / split / wnid).mkdir(parents=True)
            for index in range(count):
                colour = (index * 60, 90, int(wnid[-2:]))
                Image.new("RGB", (40, 30), colour).save(extracted / split / wnid / f"{wnid}_{index}.JPEG")
    data = ImageFolderDataModule(data_dir="imagenette160", image_size=32, num_workers=0)
    data.prepare_data()
    images = datasets_dir() / "imagenette160" / "images"
    assert data.source.class_names == ("English springer", "tench")
    linked = images / "test" / "tench" / "n01440764_0.JPEG"
    assert linked.stat().st_ino == (extracted / "val" / "n01440764" / "n01440764_0.JPEG").stat().st_ino


def test_offline_the_download_is_one_line_naming_the_file_and_where_it_goes(monkeypatch, capsys, caplog, tmp_path):
    from torchvision.datasets import CIFAR10

    caplog.set_level(logging.INFO)
    monkeypatch.chdir(tmp_path)
    unreachable = f"http://127.0.0.1:{free_port()}/cifar-10-python.tar.gz"
    monkeypatch.setattr(CIFAR10, "url", unreachable)
    code, message = cli_error(capsys, ["fit", "--data.data_dir", "cifar10", "--trainer.max_epochs", "1"])
    message = message.removeprefix("error: ").strip()
    archive = datasets_dir() / "cifar10" / "download" / "cifar-10-python.tar.gz"
    assert code == 2 and message.startswith("data.data_dir cifar10: could not download it (")
    assert f"download {unreachable} as {archive}, then run again" in message
    assert not [record for record in caplog.records if "downloading" in record.getMessage()]  # the refusal alone
    assert not (datasets_dir() / "cifar10").exists()  # no empty download folder, no lock file

    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"half of an archive")  # a download that stopped, or the wrong file put there by hand
    code, message = cli_error(capsys, ["fit", "--data.data_dir", "cifar10", "--trainer.max_epochs", "1"])
    message = message.removeprefix("error: ").strip()
    assert code == 2 and f"{archive} is there but is not the file torchvision expects" in message
    assert archive.read_bytes() == b"half of an archive" and os.listdir(archive.parent) == [archive.name]


@pytest.mark.parametrize("given, hint", [("cifar-10", ": did you mean cifar10?"), ("kinetics", ")")])
def test_a_name_that_is_neither_a_folder_nor_a_data_set_is_one_line(capsys, tmp_path, monkeypatch, given, hint):
    monkeypatch.chdir(tmp_path)
    code, message = cli_error(capsys, ["fit", "--data.data_dir", given, "--trainer.max_epochs", "1"])
    message = message.removeprefix("error: ").strip()
    assert code == 2 and message.startswith(f"data.data_dir {given}: no folder {given} (expected {given}/<class name>/"
                                            "<image files>), nor a data set by name (")
    assert "cifar10, cifar100, mnist, fashion_mnist, imagenette" in message and message.endswith(hint)


def test_imagenet_by_name_says_to_give_its_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, message = cli_error(capsys, ["fit", "--data.data_dir", "ImageNet", "--trainer.max_epochs", "1"])
    assert code == 2 and message.strip() == ("error: data.data_dir ImageNet: no such folder; ImageNet is not "
                                             "downloaded by name (its archives need an account at image-net.org): "
                                             "give its folder, train/<class>/ and val/<class>/")


def test_one_process_at_a_time_writes_a_named_set_and_the_others_read_it(tmp_path):
    calls = []

    def slow_write(folder: Path) -> None:
        calls.append(folder)
        time.sleep(0.3)
        (folder / "train" / "a").mkdir(parents=True)

    named = NamedDataSet("cifar10", tmp_path / "cifar10" / "images", slow_write, classes=10)
    with ThreadPoolExecutor(3) as pool:  # as the processes of a DDP run each read the classes when they start
        folders = list(pool.map(lambda _: named.written(), range(3)))
    assert folders == [named.folder] * 3 and calls == [named.folder]


def test_offline_with_some_files_downloaded_names_every_file_and_blames_none(monkeypatch, capsys, tmp_path):
    from torchvision.datasets import FashionMNIST

    monkeypatch.chdir(tmp_path)
    raw = datasets_dir() / "fashion_mnist" / "download" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"the first file, downloaded whole")
    whole = hashlib.md5(b"the first file, downloaded whole").hexdigest()
    monkeypatch.setattr(FashionMNIST, "resources", [(file, whole) for file, _ in FashionMNIST.resources])
    monkeypatch.setattr(FashionMNIST, "mirrors", [f"http://127.0.0.1:{free_port()}/"])
    code, message = cli_error(capsys, ["fit", "--data.data_dir", "fashion_mnist", "--trainer.max_epochs", "1"])
    message = message.removeprefix("error: ").strip()
    assert code == 2 and message.startswith("data.data_dir fashion_mnist: could not download it (")
    assert all(f"{file} as {raw / file}" in message for file, _ in FashionMNIST.resources)


def test_summary_of_the_papers_config_needs_no_download(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["summary", "--config", str(ROOT / "configs/resnet56_cifar10.yaml")])
    printed = capsys.readouterr().out
    assert "853,018" in printed and "0.85 M parameters" in printed  # the paper's 0.85 M, with CIFAR-10's 10 classes
    assert not (datasets_dir() / "cifar10").exists()
