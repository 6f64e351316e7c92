"""The trainer of the command line: Lightning's, plus the subcommands that need a model and data but no loop."""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, Trainer

from ..data import FolderSource, ImageFolderDataModule
from ..data.convert import convert_folder
from ..models import format_summary, summarize
from ..reports.inspection import inspect_folder
from ..training.finetuning import BackboneFreeze
from ..training.lr_finder import find_learning_rate
from ..training.module import ImageClassifier
from ..training.run import run_dir


class ChecksFirstTrainer(Trainer):
    """Lightning's Trainer, whose accelerator lines (``GPU available: ...``) wait until its loop starts: a refusal of
    the data, the weights or an option is then said alone, and the lines stand where the run begins."""

    def __init__(self, **kwargs: Any) -> None:
        from lightning_utilities.core import rank_zero

        held = _HeldLines()
        logger = rank_zero.log  # Lightning's rank_zero_info says them there: the logger of whichever of
        logger.addFilter(held)  # lightning.pytorch and lightning.fabric was imported last
        try:
            super().__init__(**kwargs)
        finally:
            logger.removeFilter(held)
        self.callbacks.append(_SayHeldLines(held.records))


class _HeldLines(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(("GPU available:", "TPU available:")):
            self.records.append(record)
            return False
        return True


class _SayHeldLines(Callback):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        self.records = records

    def say(self, *_: Any) -> None:
        for record in self.records:
            logging.getLogger(record.name).handle(record)
        self.records.clear()

    # each after the loop has read its data (fit: its sanity check, else the first epoch)
    on_train_start = on_validation_start = on_test_start = on_predict_start = say


class ResNetTrainer(ChecksFirstTrainer):
    """Lightning's Trainer, plus the ``summary``, ``inspect``, ``convert`` and ``lr_find`` subcommands.

    The ``limit_*_batches`` options are re-declared with ``int`` before ``float``: Lightning
    annotates them ``Union[float, int, None]``, so the command line read ``1`` (one batch) as
    ``1.0`` (all of them).
    """

    def __init__(
        self,
        *,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )

    def summary(self, model: ImageClassifier, datamodule: ImageFolderDataModule) -> None:
        """Print output shapes, trainable and frozen parameters and GMACs of each stage of the model, as the
        first epoch of ``fit`` trains it (with ``model.freeze_backbone``, the backbone frozen)."""
        for callback in model.configure_callbacks():
            if isinstance(callback, BackboneFreeze):
                callback.finetune_function(model, 0, None)
        height, width = datamodule.geometry.size
        title = (f"{model.hparams.backbone} at {height if height == width else f'{height} x {width}'} px, "
                 f"{model.num_classes} classes {model.hparams.backbone_options or ''}")
        print(format_summary(summarize(model.model, datamodule.geometry.size), title=title))

    def inspect(self, model: ImageClassifier, datamodule: ImageFolderDataModule, per_class: int = 8,
                predictions: Path | None = None) -> None:
        """Look at the data folder before training: counts per class and split, formats, sizes, unreadable
        files, duplicates and leaks; writes ``duplicates.csv`` and ``classes.png`` beside the run.

        Args:
            per_class: images of each class in ``classes.png``.
            predictions: the ``logs/<experiment>/crossval_N`` folder of a ``cross_validate`` of this folder:
                also list suspected label errors (``label_issues.csv``/``.png``), outliers
                (``outliers.csv``/``.png``) and near-duplicates in feature space (in ``duplicates.csv``).
        """
        print(inspect_folder(datamodule, run_dir(self), per_class, predictions and Path(predictions)))

    def convert(self, model: ImageClassifier, datamodule: ImageFolderDataModule, output: Path,
                max_side: int | None = None) -> None:
        """Convert the data folder to LitData's streaming format, after its checks and split (or its folds).

        Writes ``train/``, ``val/`` and ``test/`` in ``output``, with ``split.csv`` and the classes; ``fit``,
        ``validate`` and ``test`` read it with ``--data.data_dir OUTPUT`` (or the bucket URL it is copied to).
        With ``--data.num_folds K``, ``fold_0/`` to ``fold_<K-1>/`` instead, each image once, for ``cross_validate``.

        Args:
            output: a new folder for the converted data set (nothing is overwritten).
            max_side: store each image as a JPEG whose longer side is at most this many pixels (smaller
                images are kept as they are); by default each file's own bytes.
        """
        # data.normalize auto: each training split's statistics as the run's evaluation view shows its images
        measure = (partial(FolderSource.normalization_of, view=datamodule.views.evaluation,
                           num_workers=datamodule.num_workers) if datamodule.normalize == "auto" else None)
        print(convert_folder(datamodule.source, Path(output), max_side, datamodule.num_workers, measure))

    def lr_find(
        self,
        model: ImageClassifier,
        datamodule: ImageFolderDataModule,
        min_lr: float = 1e-7,
        max_lr: float = 1.0,
        num_training: int = 100,
    ) -> float | None:
        """Find a learning rate with Lightning's finder: prints it and writes ``lr_find.png`` beside the run.

        Args:
            min_lr: the rate of the first step.
            max_lr: the rate of the last step.
            num_training: steps to take, the rate rising exponentially.
        """
        return find_learning_rate(self, model, datamodule, min_lr, max_lr, num_training)
