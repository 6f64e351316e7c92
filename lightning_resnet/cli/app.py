"""``python -m lightning_resnet``: Lightning's CLI with this project's defaults and extra subcommands.

Subcommands: ``fit``, ``validate``, ``test``, ``predict`` (Lightning's), ``lr_find`` (Lightning's
learning-rate finder), ``summary`` (the per-stage table of the configured model), ``inspect``
(the data folder: counts, sizes, duplicates, leaks), ``export`` (a checkpoint to ONNX or
``torch.export``, preprocessing inside), ``predict_onnx`` (an exported model over a folder with
onnxruntime) and ``cross_validate`` (``fit`` on each of K folds, then the mean and spread).
"""

from __future__ import annotations

import pickle
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from jsonargparse import lazy_instance
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

from . import crossval, onnx_predict
from ..inference.calibration import TemperatureScaling
from ..training.checkpoints import InterruptCheckpoint
from ..data import DEMO_DATA, ImageFolderDataModule
from ..training.divergence import NonFiniteLossError
from ..errors import UserError
from ..inference.export import ExportFormat, export_checkpoint
from ..training.metrics import MONITOR, MONITOR_MODE
from ..models import format_summary, is_weights_name, resolve, summarize, would_run_code
from ..training.module import ImageClassifier
from ..reports import EvaluationReport, PredictionWriter, TrainingReport, inspect_folder, run_dir
from ..training.throughput import ThroughputDisplay
from ..training.lr_finder import find_learning_rate


class ResNetTrainer(Trainer):
    """Lightning's Trainer, plus the ``summary`` and ``export`` subcommands of the command line.

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
        """Print output shapes, trainable and frozen parameters and GMACs of each stage of the model."""
        title = (f"{model.hparams.backbone} at {datamodule.image_size} px, "
                 f"{model.num_classes} classes {model.hparams.backbone_options or ''}")
        print(format_summary(summarize(model.model, image_size=datamodule.image_size), title=title))

    def inspect(self, model: ImageClassifier, datamodule: ImageFolderDataModule, per_class: int = 8) -> None:
        """Look at the data folder before training: counts per class and split, formats, sizes, unreadable
        files, duplicates and leaks; writes ``duplicates.csv`` and ``classes.png`` beside the run.

        Args:
            per_class: images of each class in ``classes.png``.
        """
        print(inspect_folder(datamodule, run_dir(self), per_class))

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

    def export(
        self,
        model: ImageClassifier,
        datamodule: ImageFolderDataModule,
        ckpt_path: str,
        format: ExportFormat = "onnx",
        output: str | None = None,
    ) -> Path:
        """Export the checkpoint's model; class names and normalization go to a JSON file beside it.

        The model and data settings are the checkpoint's, whatever the configuration says.

        Args:
            ckpt_path: the checkpoint to export.
            format: ``onnx`` or ``torch_export`` (a ``.pt2`` program for ``torch.export.load``).
            output: the model file; by default the checkpoint's path with the format's suffix.
        """
        return export_checkpoint(ckpt_path, format, output)


class ResNetArgumentParser(LightningArgumentParser):
    """Lightning's parser, with the error as the first thing a user reads instead of a long usage dump."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        sys.stderr.write(f"error: {' '.join(message.split())}\n")
        sys.stderr.write(f"see: {parser.prog.replace(' [options]', '')} --help\n")
        raise SystemExit(2)


class ResNetCLI(LightningCLI):
    """Lightning's CLI with this project's links, callbacks and logs under ``logs/``.

    Linked, so never typed twice: the classes from the data to the model, and from the model to
    the data its input channels (``backbone_options.in_chans``) and the normalization of weights
    named in ``pretrained``. Always present, and configured under their own keys: ``checkpoint``
    (``ModelCheckpoint``, the best by :data:`~lightning_resnet.metrics.MONITOR`), ``last_checkpoint``
    (``last.ckpt``, after every epoch), ``lr_monitor``, ``predictions`` (``predictions.csv``),
    ``evaluation`` (reports of ``validate`` and ``test``), ``training_report`` (curves, HPARAMS),
    ``throughput`` (images/s in the progress bar) and ``calibration`` (the temperature of the best
    checkpoint, with ``model.calibrate``).
    ``trainer.callbacks`` adds others. ``fit --ckpt_path last`` resumes the experiment's newest
    ``last.ckpt`` in its own log folder; Ctrl-C and SIGTERM save one (``interrupt_checkpoint``).
    With a checkpoint, the class names come from it, so predicting needs no training folder.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "summary": {"model", "datamodule"}, "export": {"model", "datamodule"},
                "inspect": {"model", "datamodule"},
                "lr_find": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("model.backbone_options", "data.channels", compute_fn=input_channels)
        parser.link_arguments(("model.pretrained", "model.backbone", "model.backbone_options"),
                              "data.weights_normalization", compute_fn=weights_normalization)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.add_lightning_class_args(InterruptCheckpoint, "interrupt_checkpoint")
        parser.add_lightning_class_args(PredictionWriter, "predictions")
        parser.add_lightning_class_args(EvaluationReport, "evaluation")
        parser.add_lightning_class_args(TrainingReport, "training_report")
        parser.add_lightning_class_args(ThroughputDisplay, "throughput")
        parser.add_lightning_class_args(TemperatureScaling, "calibration")
        parser.set_defaults(
            {
                "checkpoint.monitor": MONITOR,
                "checkpoint.mode": MONITOR_MODE,
                "checkpoint.filename": f"best-epoch{{epoch:02d}}-acc{{{MONITOR}:.4f}}",
                "checkpoint.auto_insert_metric_name": False,
                # Lightning 2.6 writes save_last only when a best checkpoint is written: a checkpoint
                # of its own, unmonitored, keeps last.ckpt at the latest epoch
                "last_checkpoint.filename": "last",
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
                "trainer.logger": lazy_instance(TensorBoardLogger, save_dir="logs", name="default",
                                                default_hp_metric=False),
            }
        )

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "fit":
            parser.add_argument("--test_after_fit", type=bool, default=True,
                                help="when there is a test set (data.test_dir, or a test/ folder beside train/), "
                                     "end by testing the best checkpoint; its report goes beside the run")
        return parser

    def after_fit(self) -> None:
        """Test the best checkpoint (calibrated by ``calibration``) when a test set exists, as the
        Lightning-Hydra template does (``test_after_fit``)."""
        if self.trainer.interrupted:
            return
        best = next((callback.best_model_path for callback in self.trainer.checkpoint_callbacks
                     if callback.monitor == MONITOR and callback.best_model_path), None)
        data = self.datamodule
        if (not self.config.fit.get("test_after_fit") or not isinstance(data, ImageFolderDataModule)
                or not data.has_test_set):
            return
        if best is None:
            print("testing the weights as they are: no best checkpoint was chosen (no validation?)")
        self.trainer.test(self.model, datamodule=data, ckpt_path=best)

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the checkpoint's hyper-parameters here first: a file that is no checkpoint is one line."""
        try:
            super()._parse_ckpt_path()
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
            if isinstance(error, pickle.UnpicklingError) and would_run_code(error):
                raise  # refused by weights_only=True: main says so
            path = self.config[self.config.subcommand].get("ckpt_path")
            reason = "torch.save did not write it" if isinstance(error, pickle.UnpicklingError) else (
                str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
            raise UserError(f"ckpt_path {path} is not a readable checkpoint (truncated or not written by "
                            f"Lightning?): {reason}") from None

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Warnings that ask nothing of the user here. ModelCheckpoint's state in a checkpoint names the
        # folder of the run that wrote it; a validate, test or predict run logs into a folder of its own.
        warnings.filterwarnings("ignore", message=".*The dirpath has changed from.*")
        if config.model.get("freeze_backbone"):
            # a frozen backbone keeps its BatchNorm layers in eval mode on purpose
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            self._resolve_last_checkpoint()
        trained_classes = config.model.get("class_names")
        if trained_classes:
            # the checkpoint's hyper-parameters (Lightning put them in the config): its classes win
            config.data.class_names = trained_classes
        if self.subcommand == "summary" and not config.data.get("class_names"):
            data_dir = config.data.data_dir
            if data_dir != DEMO_DATA and not Path(data_dir).expanduser().is_dir():
                print(f"{data_dir} does not exist: summarizing with a 1000-class head, as for ImageNet")
                config.data.class_names = [str(index) for index in range(1000)]

    def _resolve_last_checkpoint(self) -> None:
        """Point ``ckpt_path last`` at the newest ``last.ckpt`` of the experiment and log into its folder."""
        config = self.config.fit
        logger = config.trainer.logger
        if not (logger and "TensorBoardLogger" in str(logger.class_path)):
            return
        experiment = Path(logger.init_args.save_dir) / logger.init_args.name
        candidates = sorted(experiment.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            print(f"no {experiment}/version_*/checkpoints/last.ckpt to resume: starting a new run", file=sys.stderr)
            config.ckpt_path = None
            return
        last = candidates[-1]
        config.ckpt_path = str(last)
        logger.init_args.version = last.parent.parent.name
        self.save_config_kwargs["overwrite"] = True


def input_channels(backbone_options: dict | None) -> int:
    """The image channels the model takes: what the data module must produce."""
    return int((backbone_options or {}).get("in_chans", 3))


def weights_normalization(pretrained: str | None, backbone: str, backbone_options: dict | None) -> list | None:
    """``[mean, std]`` of weights named in ``model.pretrained`` (read from the library, no download), else None."""
    if not is_weights_name(pretrained):
        return None
    try:
        weights = resolve(pretrained, backbone, backbone_options)
    except UserError:
        return None  # said in one line when the model loads the weights
    return [list(weights.mean), list(weights.std)]


def cli_options() -> dict[str, Any]:
    """How :func:`main` builds :class:`ResNetCLI`, less the arguments."""
    return {
        "model_class": ImageClassifier,
        "datamodule_class": ImageFolderDataModule,
        "trainer_class": ResNetTrainer,
        "parser_class": ResNetArgumentParser,
        "parser_kwargs": {"prog": "python -m lightning_resnet"},
        "seed_everything_default": 42,
    }


def main(args: list[str] | None = None) -> ResNetCLI | None:
    """Run the command line; errors a user can act on end it with one line on stderr, not a traceback.

    Exit codes: 2 for a configuration, path or folder that cannot work (:class:`~lightning_resnet.errors.UserError`,
    a missing file), 1 for a run that diverged or a file refused because it could run code, and
    128 + 15 for SIGTERM.
    """
    try:
        given = sys.argv[1:] if args is None else args
        if given[:1] == [crossval.COMMAND]:
            return crossval.cross_validate(given[1:])
        if given[:1] == [onnx_predict.COMMAND]:
            return onnx_predict.predict_onnx(given[1:])
        return ResNetCLI(args=args, **cli_options())
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None  # the run did not finish: let a scheduler see it
    except (UserError, FileNotFoundError) as error:
        _fail(str(error), 2)
    except NonFiniteLossError as error:
        _fail(str(error), 1)
    except pickle.UnpicklingError as error:
        _fail("refusing a checkpoint that holds more than tensors and plain data, which could run code "
              f"(read with weights_only=True): {str(error).splitlines()[0]}", 1)


def _fail(message: str, code: int) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(code) from None
