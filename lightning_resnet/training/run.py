"""Where a run's files and figures go: its folder and its TensorBoard writer."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary


def run_dir(trainer: Trainer) -> Path:
    """The folder of this run: the logger's ``version_N`` folder, or the trainer's root without a logger.

    Every process must call this together: ``trainer.log_dir`` is broadcast from process 0.
    """
    return Path(trainer.log_dir or trainer.default_root_dir)


def tensorboard(trainer: Trainer):
    """The ``SummaryWriter`` of the run's TensorBoard logger, or None."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def add_png(writer, tag: str, png: Path, step: int) -> None:
    """The PNG file at ``png`` as the image ``tag`` of ``writer``'s TensorBoard, its bytes as they are:
    ``add_image`` of its pixels converted and re-encoded them, a quarter of a small validate's report
    (benchmarks/README.md, "Measured reasons in the code")."""
    with Image.open(png) as image:
        (width, height), bands = image.size, len(image.getbands())  # 1 gray, 3 RGB, 4 RGBA, as TensorBoard counts
    picture = Summary.Image(height=height, width=width, colorspace=bands, encoded_image_string=png.read_bytes())
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=picture)]), step)
