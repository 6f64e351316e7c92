"""``serve`` under load: requests per second and latency at 1, 8 and 32 concurrent clients, with dynamic batching
on (``--max_batch_size 8``) and off (``1``), for the demo's model (ResNet-18, CIFAR stem, 16 px digits) and a
ResNet-50 at 224 px (photo-sized JPEGs), each served as its checkpoint (torch) and as its exports (float and INT8,
ONNX Runtime's ``.onnx`` and OpenVINO's ``.xml``; ``--served`` chooses);
against ``predict_onnx`` over the same images in one process (no HTTP, batches of 32), the throughput a client
that holds the files could have without a server. The clients run on the same machine as the server.

Each server is a real ``python -m lightning_resnet serve`` process on a loopback port; each client thread
keeps one HTTP connection and posts the image bytes as the body.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image, ImageDraw

from benchmarks.common import ROOT, report, table

CONCURRENCY = (1, 8, 32)


def photos(folder: Path, count: int, size: tuple[int, int] = (640, 480)) -> list[Path]:
    """Photo-like JPEGs: a background and random shapes, lightly noisy."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            left, top = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
            draw.ellipse((left, top, left + int(rng.integers(20, 200)), top + int(rng.integers(20, 160))),
                         fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        pixels = np.asarray(image, np.float64) + rng.normal(0, 6, (size[1], size[0], 3))
        path = folder / f"{index:03d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def checkpoint_of(work: Path, name: str, *options: str) -> Path:
    """A checkpoint of ``configs/demo.yaml`` with ``options`` (one training step: speed needs no accuracy)."""
    from lightning_resnet.cli import main as cli
    from lightning_resnet.training.checkpoints import best_checkpoint_of_run

    run = cli(["fit", "--config", "configs/demo.yaml", "--trainer.max_epochs", "1", "--trainer.limit_train_batches",
               "1", "--trainer.limit_val_batches", "1", "--test_after_fit", "false", "--trainer.enable_progress_bar",
               "false", "--trainer.logger.init_args.save_dir", str(work / "logs"),
               "--trainer.logger.init_args.name", name, *options])
    return best_checkpoint_of_run(Path(run.trainer.log_dir)).path


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load(url: str, images: list[bytes], concurrency: int, requests_count: int) -> tuple[float, float, float]:
    """Requests per second, p50 and p99 latency in ms of ``requests_count`` posts from ``concurrency`` threads."""
    sessions = [requests.Session() for _ in range(concurrency)]

    def client(index: int) -> list[float]:
        latencies = []
        for number in range(index, requests_count, concurrency):
            started = time.perf_counter()
            response = sessions[index].post(url, data=images[number % len(images)],
                                            headers={"Content-Type": "application/octet-stream"}, timeout=120)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
        return latencies

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(value for values in pool.map(client, range(concurrency)) for value in values)
    wall = time.perf_counter() - started
    p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
    return requests_count / wall, statistics.median(latencies) * 1000, p99 * 1000


def serve_and_load(checkpoint: Path, images: list[bytes], max_batch_size: int, requests_count: int) -> list[tuple]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "lightning_resnet", "serve", "--model", str(checkpoint),
                                "--port", str(port), "--max_batch_size", str(max_batch_size)],
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/predict"
        load(url, images, 8, 16)  # warm up: the first forward passes are slower
        return [(concurrency, *load(url, images, concurrency, requests_count)) for concurrency in CONCURRENCY]
    finally:
        process.terminate()
        process.wait(timeout=120)


SERVED = {"checkpoint": [], "checkpoint_unbatched": [], "onnx": ["--format", "onnx"],
          "int8_onnx": ["--format", "onnx", "--quantize", "int8"], "openvino": ["--format", "openvino"],
          "int8_openvino": ["--format", "openvino", "--quantize", "int8"]}
"""What ``--served`` may name: the checkpoint (batches of 8, or unbatched) or one of its exports (batches of 8)."""


def exported(checkpoint: Path, kind: str) -> Path:
    """The checkpoint exported as ``kind`` (INT8 kept whatever it loses: these models trained for one step)."""
    from lightning_resnet.cli import main as cli

    suffix = (".int8" if "int8" in kind else "") + (".xml" if "openvino" in kind else ".onnx")
    model = checkpoint.parent / f"served{suffix}"
    keep = ["--keep_accuracy_drop", "true", "--calibration_images", "32"] if "int8" in kind else []
    cli(["export", "--ckpt_path", str(checkpoint), *SERVED[kind], *keep, "--output", str(model)])
    return model


def predict_onnx_throughput(model: Path, folder: Path, count: int) -> float:
    """The images/s of ``predict_onnx`` over ``folder`` with the exported ``model``."""
    from lightning_resnet.cli import main as cli

    started = time.perf_counter()
    cli(["predict_onnx", "--model", str(model), "--input", str(folder), "--batch_size", "32"])
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256, help="requests per measurement for the demo model")
    parser.add_argument("--requests_resnet50", type=int, default=96, help="requests per measurement for ResNet-50")
    parser.add_argument("--served", nargs="+", choices=list(SERVED), default=list(SERVED))
    args = parser.parse_args()
    os.chdir(ROOT)
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        from lightning_resnet.data import DIGITS_DIR, write_digits

        if not Path(DIGITS_DIR).is_dir():
            write_digits(Path(DIGITS_DIR))
        digits = sorted(Path(DIGITS_DIR).rglob("*.png"))[:64]
        (work / "digits").mkdir()
        for path in digits:
            (work / "digits" / f"{path.parent.name}_{path.name}").symlink_to(path.resolve())
        cases = [("demo model (ResNet-18, 16 px digits)", checkpoint_of(work, "demo"), work / "digits",
                  args.requests),
                 ("ResNet-50, 224 px, 640x480 JPEGs",
                  checkpoint_of(work, "resnet50", "--model.backbone", "resnet50", "--model.backbone_options", "{}",
                                "--data.image_size", "224", "--data.batch_size", "8"),
                  photos(work / "photos", 64)[0].parent, args.requests_resnet50)]
        for name, checkpoint, folder, count in cases:
            images = [path.read_bytes() for path in sorted(folder.iterdir())]
            for kind in args.served:
                served = checkpoint if kind.startswith("checkpoint") else exported(checkpoint, kind)
                offline = "" if served == checkpoint else f"{predict_onnx_throughput(served, folder, len(images)):.1f}"
                batch = 1 if kind == "checkpoint_unbatched" else 8
                for concurrency, rps, p50, p99 in serve_and_load(served, images, batch, count):
                    rows.append([name, "".join(served.suffixes[-2:]) if "int8" in kind else served.suffix,
                                 "on (8)" if batch > 1 else "off", str(concurrency), f"{rps:.1f}", f"{p50:.1f}",
                                 f"{p99:.1f}", offline])
    report("serve: requests per second and latency",
           table(["model", "served", "batching", "clients", "requests/s", "p50 ms", "p99 ms",
                  "predict_onnx images/s"], rows))


if __name__ == "__main__":
    main()
