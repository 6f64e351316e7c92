"""What the tests share: small image folders they make themselves (nothing is downloaded), the tiny command
line, and the ways of running the command line (in this process, or as a real one)."""

from __future__ import annotations

import colorsys
import csv
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

XDIST_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if XDIST_WORKERS > 1:
    # each of make test's workers gets its share of the cores, and so do the processes its tests start: two
    # workers of two threads each on the 2-core CPU ran some tests 6-7x slower than alone, the suite in 834 s;
    # of one thread each, in 315 s and 662 s (the same VM, its speed varying)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // XDIST_WORKERS))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

from lightning_resnet.cli import main  # noqa: E402
from lightning_resnet.cli.launcher import Launcher  # noqa: E402
from lightning_resnet.data import ImageFolderDataModule  # noqa: E402

SLOWEST_FILES = ["test_docs.py", "test_streaming.py", "test_sweep.py", "test_distributed.py", "test_many_machines.py",
                 "test_resume.py", "test_child_processes.py", "test_serve.py", "test_multilabel.py",
                 "test_data_issues.py", "test_models.py", "test_transfer.py", "test_cli.py", "test_one_line.py",
                 "test_quantization.py"]
"""The files that took 20-100 s each in make test, slowest first. xdist hands out whole files (--dist loadfile);
by default the files with the most tests go first, which left the 2-test test_docs.py (118 s) for last: one worker
ended 28 s after the other, the suite at 335 s. make test passes --no-loadscope-reorder, so this order is kept."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest files first (each file's tests in their own order), so the short ones fill in around them."""
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FILES.index(name) if name in SLOWEST_FILES else len(SLOWEST_FILES)

    items.sort(key=rank)  # stable: the rest keep the collection's order


ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
"""The environment of a real ``python -m lightning_resnet`` process started by a test."""
CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (200, 60, 200)]


def make_image_folder(
    root: Path, classes: int = 3, per_class: int = 10, size: tuple[int, int] = (40, 32), seed: int = 0
) -> Path:
    """One sub-folder per class; each class a noisy colour with a bright square, so it can be learned,
    and dark and bright blots that make every image distinct (no two are near duplicates)."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[0 : size[1], 0 : size[0]]
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for item in range(per_class):
            pixels = rng.normal(CLASS_COLOURS[index], 25, size=(size[1], size[0], 3))
            for blot in range(4):
                y, x, radius = rng.uniform(0, size[1]), rng.uniform(0, size[0]), rng.uniform(4, 10)
                pixels[(rows - y) ** 2 + (columns - x) ** 2 < radius**2] *= 0.1 if blot % 2 else 1.8
            top, left = rng.integers(0, max(1, size[1] - 8)), rng.integers(0, max(1, size[0] - 8))
            pixels[top : top + 8, left : left + 8] = 255
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
            suffix = ".jpg" if item % 3 == 0 else ".png"
            image.save(folder / f"{item:03d}{suffix}")
    return root


LABEL_CORNERS = {"sun": (0, 0), "tree": (0, 1), "car": (1, 0), "boat": (1, 1)}
"""The labels of :func:`make_label_sets`, each a bright square in its quarter of the image (row, column)."""


def make_label_sets(root: Path, count: int = 48, size: int = 32, seed: int = 0) -> Path:
    """A multi-label set: ``count`` noisy grey images in ``root/images``, each with one to three of the
    :data:`LABEL_CORNERS` squares, and ``root/labels.csv`` (``path,labels``) giving each its set; returns the file."""
    rng = np.random.default_rng(seed)
    names = list(LABEL_CORNERS)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        chosen = sorted(rng.choice(len(names), size=1 + index % 3, replace=False))
        pixels = rng.normal(90, 25, size=(size, size, 3))
        half = size // 2
        for label in chosen:
            row, column = LABEL_CORNERS[names[label]]
            top, left = row * half + rng.integers(1, half - 9), column * half + rng.integers(1, half - 9)
            pixels[top : top + 8, left : left + 8] = 250
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(root / "images" / f"{index:03d}.png")
        rows.append(f"images/{index:03d}.png,{' '.join(names[label] for label in chosen)}")
    (root / "labels.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


def make_edge_label_sets(root: Path, count: int = 60, size: tuple[int, int] = (16, 48), seed: int = 0) -> Path:
    """A multi-label set of wide images (``size``: height, width; 3:1 by default): dark noise with one or two bright
    squares, labelled by where they lie: ``left`` and ``right`` near the ends, where a centre crop never looks (each
    on a third of the images), ``middle`` in the centre. Returns the labels file."""
    rng = np.random.default_rng(seed)
    height, width = size
    side = height // 2
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        chosen = [["left"], ["middle"], ["right"], ["middle"], ["left", "middle"], ["middle", "right"]][index % 6]
        pixels = rng.normal(40, 15, size=(height, width, 3))
        for label in chosen:
            top = int(rng.integers(1, height - side))
            left = {"left": int(rng.integers(1, 4)), "middle": (width - side) // 2 + int(rng.integers(-2, 3)),
                    "right": width - side - int(rng.integers(1, 4))}[label]
            pixels[top : top + side, left : left + side] = 240
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(root / "images" / f"{index:03d}.png")
        rows.append(f"images/{index:03d}.png,{' '.join(chosen)}")
    (root / "labels.csv").write_text("path,labels\n" + "\n".join(rows) + "\n")
    return root / "labels.csv"


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_like_images(count: int, classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """``count`` generated 32-px images (N, 32, 32, 3) and their classes: each class a colour of its own, with noise,
    a bright square, and dark and bright blots that make every image distinct (no two are near duplicates)."""
    rng = np.random.default_rng(seed)
    labels = [index % classes for index in range(count)]
    hues = np.array([colorsys.hsv_to_rgb(label / classes, 0.8, 0.85) for label in labels]) * 255
    pixels = rng.normal(hues[:, None, None, :], 30, size=(count, 32, 32, 3))
    rows, columns = np.mgrid[0:32, 0:32]
    for image in pixels:
        for blot in range(4):
            y, x, radius = rng.uniform(0, 32, size=2).tolist() + [rng.uniform(3, 8)]
            image[(rows - y) ** 2 + (columns - x) ** 2 < radius**2] *= 0.1 if blot % 2 else 1.8
        top, left = rng.integers(0, 24, size=2)
        image[top : top + 8, left : left + 8] = 255
    return np.clip(pixels, 0, 255).astype(np.uint8), labels


def place_tiny_cifar10(monkeypatch: pytest.MonkeyPatch, train_per_class: int = 10, test_per_class: int = 2) -> Path:
    """A CIFAR-10 archive of generated images laid in the cache where ``data.data_dir cifar10`` downloads it, as a
    download would; torchvision is given its checksums, and the address of a closed port instead of the real one
    (a test never downloads). Returns the archive's path."""
    from torchvision.datasets import CIFAR10

    def pickled(content: dict) -> bytes:
        return pickle.dumps(content, protocol=2)

    train, train_labels = cifar_like_images(10 * train_per_class, 10, seed=0)
    test, test_labels = cifar_like_images(10 * test_per_class, 10, seed=1)
    rows = lambda images: images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # noqa: E731 (CIFAR's layout)
    files = {"data_batch_1": pickled({"data": rows(train), "labels": train_labels}),
             **{f"data_batch_{index}": pickled({"data": rows(train[:0]), "labels": []}) for index in range(2, 6)},
             "test_batch": pickled({"data": rows(test), "labels": test_labels}),
             "batches.meta": pickled({"label_names": CIFAR10_CLASSES})}
    archive = Path(os.environ["XDG_CACHE_HOME"]) / "lightning_resnet/datasets/cifar10/download/cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, content in files.items():
            entry = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            entry.size = len(content)
            tar.addfile(entry, io.BytesIO(content))
    md5 = {name: hashlib.md5(content).hexdigest() for name, content in files.items()}
    monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive.read_bytes()).hexdigest())
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{index}", md5[f"data_batch_{index}"]]
                                                for index in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5["batches.meta"]})
    monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{free_port()}/cifar-10-python.tar.gz")
    return archive


def make_scene(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A photo-like image: a background colour and eight random ellipses and rectangles, lightly noisy."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(8):
        left, top = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        box = (left, top, left + int(rng.integers(8, 48)), top + int(rng.integers(8, 40)))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 6, (size[1], size[0], 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


DRAWINGS = ("circle", "square", "stripes", "triangle")


def make_drawing(kind: str, rng: np.random.Generator, side: int = 96) -> Image.Image:
    """A shape of :data:`DRAWINGS` in a random dark colour, place and size on a plain, lighter background: images a
    perceptual hash finds alike whoever drew them (issue 51 found near-copy groups chained through them)."""
    background = tuple(int(v) for v in rng.integers(180, 256, 3))
    colour = tuple(int(v) for v in rng.integers(0, 150, 3))
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(side // 3, side * 2 // 3))
    left, top = (int(v) for v in rng.integers(4, side - size - 4, 2))
    if kind == "circle":
        draw.ellipse((left, top, left + size, top + size), fill=colour)
    elif kind == "square":
        draw.rectangle((left, top, left + size, top + size), fill=colour)
    elif kind == "stripes":
        width = int(rng.integers(4, 10))
        for x in range(int(rng.integers(0, width)), side, 2 * width):
            draw.rectangle((x, 0, x + width - 1, side), fill=colour)
    else:
        turn, centre = rng.uniform(0, 2 * math.pi), (left + size / 2, top + size / 2)
        draw.polygon([(centre[0] + size / 2 * math.cos(turn + k * 2 * math.pi / 3),
                       centre[1] + size / 2 * math.sin(turn + k * 2 * math.pi / 3)) for k in range(3)], fill=colour)
    return image


def make_folder_with_copies(root: Path, classes: int = 3, per_class: int = 12) -> list[tuple[Path, Path]]:
    """Distinct scenes, each with a copy resized to 60 % and saved as JPEG quality 50; returns the pairs."""
    pairs = []
    for index in range(classes):
        folder = root / f"class_{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for item in range(per_class):
            scene = make_scene(1000 * index + item)
            original, copy = folder / f"{item:03d}.png", folder / f"{item:03d}_copy.jpg"
            scene.save(original)
            scene.resize((scene.width * 6 // 10, scene.height * 6 // 10), Image.BILINEAR).save(copy, quality=50)
            pairs.append((original, copy))
    return pairs


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the normalization cache of each test in its own folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


QUARTER_WIDTH = {"stem": "cifar", "channels": [16, 32, 64, 128]}
"""The backbone options of the tests' models: a ResNet-18 at a quarter of its width, with the small-image stem."""


def tiny_args(data_dir: Path, *extra: str, subcommand: str = "fit") -> list[str]:
    """A command line for a fast run on 16 px images: a quarter-width ResNet-18, whose checkpoints are
    8 MB instead of 134 MB and whose 2-epoch fit takes 1.9 s instead of 3.8 s here."""
    return [
        subcommand,
        "--data.data_dir", str(data_dir),
        "--data.image_size", "16",
        "--data.batch_size", "8",
        "--data.num_workers", "0",
        "--data.train_augment", "basic",
        "--model.backbone", "resnet18",
        "--model.backbone_options", json.dumps(QUARTER_WIDTH),
        "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.name", "tiny",
        *extra,
    ]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "images", classes=3, per_class=10)
    make_image_folder(tmp_path / "holdout", classes=3, per_class=3, seed=5)
    return tmp_path


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory) -> Path:
    """The logs of one 2-epoch fit through the command line on the ``workdir`` images."""
    root = tmp_path_factory.mktemp("trained")
    make_image_folder(root / "images", classes=3, per_class=10)
    previous = os.getcwd()
    os.chdir(root)
    try:
        main(tiny_args(root / "images", "--trainer.max_epochs", "2"))
    finally:
        os.chdir(previous)
    return root / "logs"


@pytest.fixture
def trained(workdir, trained_once) -> Path:
    """A copy of that fit's logs in this test's ``workdir``; returns its run folder."""
    shutil.copytree(trained_once, workdir / "logs")
    return workdir / "logs" / "tiny" / "version_0"


def datamodule(folder: Path, **options) -> ImageFolderDataModule:
    """The data module of ``folder`` at 32 px, batch 4, no loader worker (``options`` override)."""
    return ImageFolderDataModule(**{"data_dir": str(folder), "image_size": 32, "batch_size": 4, "num_workers": 0,
                                    **options})


def decision_in(checkpoint: Path) -> dict:
    """The decision a checkpoint of fit holds (its bundle's: task, temperature, reject_below, label_thresholds)."""
    from lightning_resnet.bundle import BUNDLE_KEY

    return torch.load(checkpoint, map_location="cpu", weights_only=True)[BUNDLE_KEY]["decision"]


def description_of(exported: Path) -> dict:
    """The description beside an exported model (its bundle's, with the file's own ``export`` part)."""
    from lightning_resnet.bundle import description_file

    return json.loads(description_file(exported).read_text())


def cli_error(capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str]:
    """``main(args)`` in this process, which must end with an exit code: the code and what it printed on stderr."""
    with pytest.raises(SystemExit) as exit_code:
        main(args)
    return exit_code.value.code, capsys.readouterr().err


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV the project wrote, by column name."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


MARKERS = ("slow", "system", "ddp")
"""pyproject.toml's markers: ``make check`` runs the tests marked with none of them."""


@pytest.fixture(autouse=True)
def _a_process_is_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a process (the command line, a sweep's trial, a fold, a DDP rank, a service) is marked, so
    that ``make check`` starts none; loader workers (forked by multiprocessing, not ``subprocess``) are no such
    process."""
    if any(request.node.get_closest_marker(name) for name in MARKERS):
        return

    def refused(self, args, *_, **__):
        raise AssertionError(f"{request.node.nodeid} starts a process ({str(args)[:120]}): mark it slow, system or "
                             "ddp (pyproject.toml's markers)")

    monkeypatch.setattr(subprocess.Popen, "__init__", refused)
    monkeypatch.setattr(sys.modules[__name__], "_REFUSING_PROCESSES",
                        f"{request.node.nodeid} starts a process: mark it slow, system or ddp")


_REFUSING_PROCESSES: str | None = None
"""Why :func:`start_cli` refuses, in a test that is marked none of :data:`MARKERS`."""


class Launchers:
    """This pytest worker's :class:`~lightning_resnet.cli.launcher.Launcher`: started on first use, ended with the
    worker (its control socket closes)."""

    launcher: Launcher | None = None

    @classmethod
    def get(cls) -> Launcher:
        if cls.launcher is None or cls.launcher.process.poll() is not None:
            cls.launcher = Launcher(env=ENV, cwd=ROOT, new_session=True)
        return cls.launcher


class CommandProcess:
    """A ``python -m lightning_resnet`` process forked by the launcher, with what tests use of ``subprocess.Popen``:
    ``pid``, ``poll``, ``communicate`` (text; ``subprocess.TimeoutExpired`` after ``timeout``), ``kill`` and
    ``returncode``."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str], new_session: bool) -> None:
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            self._command = Launchers.get().start(args, cwd=cwd, env=env, stdout=out_write, stderr=err_write,
                                                  new_session=new_session)
        finally:
            os.close(out_write)
            os.close(err_write)
        self.args, self.pid = self._command.args, self._command.pid
        self._output: dict[str, list[str]] = {"out": [], "err": []}
        self._readers = [threading.Thread(target=self._read, args=(fd, name), daemon=True)
                         for fd, name in ((out_read, "out"), (err_read, "err"))]
        for reader in self._readers:
            reader.start()

    @property
    def returncode(self) -> int | None:
        return self._command.returncode

    def _read(self, fd: int, name: str) -> None:
        with open(fd, encoding="utf-8", errors="replace") as stream:
            for chunk in iter(lambda: stream.read(4096), ""):
                self._output[name].append(chunk)

    def poll(self) -> int | None:
        return self._command.poll()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._command.wait(timeout)
        for reader in self._readers:  # the streams close when the last process holding them ends
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        return "".join(self._output["out"]), "".join(self._output["err"])

    def kill(self) -> None:
        self._command.kill()


def start_cli(cwd: Path, *args: str, env: dict[str, str] | None = None, start_new_session: bool = False,
              preexec_fn: object = None) -> CommandProcess:
    """``python -m lightning_resnet <args>`` as a real process in ``cwd`` (``env`` added to :data:`ENV`), its output
    captured as text: forked from this worker's launcher, which imported the package once, rather than ~5 s of
    imports each. (``preexec_fn`` is what a fresh interpreter does anyway: Ctrl-C's handler is Python's own.)"""
    assert _REFUSING_PROCESSES is None, _REFUSING_PROCESSES
    return CommandProcess(list(args), cwd, {**ENV, **(env or {})}, start_new_session)


STACK_LINES = ("Fatal Python error", "Thread 0x", "Current thread 0x", "  File ")
"""The lines of faulthandler's dump that make up the stacks (not its list of extension modules)."""


def run_cli(cwd: Path, *args: str, timeout: float = 300) -> str:
    """:func:`start_cli`, waited for; fails the test with the end of stderr unless it exits 0. Returns stdout.
    A run still going after ``timeout`` seconds fails the test with the stack of each of its processes (faulthandler's
    dump on SIGABRT, sent to its whole group: DDP's other processes and loader workers too)."""
    process = start_cli(cwd, *args, env={"PYTHONFAULTHANDLER": "1"}, start_new_session=True)
    try:
        output, error = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)
        try:
            output, error = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, error = process.communicate()
        stacks = [line for line in error.splitlines() if line.startswith(STACK_LINES)]
        dump = "\n".join(stacks)
        raise AssertionError(f"still running after {timeout} s; the stacks of its processes:\n{dump}") from None
    assert process.returncode == 0, error[-3000:]
    return output


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, timeout: float = 180) -> None:
    """Poll ``url`` until it answers 200; fails the test with the process's output if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output, error = process.communicate()
            raise AssertionError(f"the server exited with {process.returncode}: {error[-3000:]}{output[-1000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM to every process of the server's group (started with ``start_new_session``), as a service manager
    stops one; returns its output once every process of it has ended."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        raise


def ended_with_its_group(process, timeout: float) -> tuple[int, str]:
    """Wait at most ``timeout`` seconds for ``process`` (started with ``start_new_session``); then its exit code and
    stderr, once no process of its group is left (what it started is ended with it, not merely orphaned)."""
    started = time.monotonic()
    _, error = process.communicate(timeout=timeout)
    while time.monotonic() - started < timeout:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return process.returncode, error
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"processes of the group were left running: {error[-2000:]}")
