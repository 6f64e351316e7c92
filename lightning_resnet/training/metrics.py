"""The names of what ``fit`` logs besides each task's metrics (:mod:`lightning_resnet.tasks.metrics`): the training
loss, images per second and the images skipped."""

from __future__ import annotations

from ..stages import TRAIN
from ..tasks.metrics import LOSS, metric_key

TRAIN_LOSS = metric_key(TRAIN, LOSS)
TRAIN_LOSS_EPOCH = f"{TRAIN_LOSS}_epoch"  # Lightning's name for the epoch mean of a loss logged on_step and on_epoch
SKIPPED_IMAGES = "data/skipped_images"
IMAGES_PER_SEC = metric_key(TRAIN, "images_per_sec")
