"""The application behind ``python -m lightning_resnet``: Lightning's CLI with this project's links, callbacks,
defaults and subcommands.

Subcommands: ``fit``, ``validate``, ``test``, ``predict`` (Lightning's), and the trainer's ``summary``, ``inspect``,
``convert`` and ``lr_find`` (see :mod:`.trainer`); the other commands are in :data:`.commands.COMMANDS`.
"""

from __future__ import annotations

import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from ..bundle import read_bundle
from ..data import ImageFolderDataModule, named_data_set
from ..errors import UserError, exit_with
from ..hints import python_command, shown, tensorboard_command
from ..inference.calibration import Calibration
from ..reports import EvaluationReport, PredictionWriter, TrainingReport
from ..reports.training_report import TRAINING_CURVES
from ..tasks import MONITOR
from ..tasks.metrics import MONITOR_MODE
from ..training.checkpoints import (
    AccuracyThenLossCheckpoint,
    BestCheckpoint,
    InterruptCheckpoint,
    RandomState,
    best_checkpoint,
)
from ..training.distillation import teacher_checkpoint
from ..training.divergence import DivergenceGuard
from ..training.epoch_line import EpochLine
from ..training.module import ImageClassifier
from ..training.rank_watch import RankWatch
from ..training.run import run_dir
from ..training.throughput import ThroughputDisplay
from . import checkpoint_options as trained_options
from .commands import APP_SUBCOMMANDS, BY_NAME, own_commands_help
from .lightning_cli import tensorboard_logger, validated_once
from .links import link_model_and_data
from .parser_errors import one_line
from .quiet import keep_quiet_what_asks_nothing_of_the_user, seed_line_unsaid
from .trainer import ResNetTrainer

ALWAYS_PRESENT = {
    "checkpoint": AccuracyThenLossCheckpoint,
    "last_checkpoint": ModelCheckpoint,
    "lr_monitor": LearningRateMonitor,
    "interrupt_checkpoint": InterruptCheckpoint,
    "random_state": RandomState,
    "divergence_guard": DivergenceGuard,
    "predictions": PredictionWriter,
    "evaluation": EvaluationReport,
    "training_report": TrainingReport,
    "throughput": ThroughputDisplay,
    "epoch_line": EpochLine,
    "calibration": Calibration,
    "rank_watch": RankWatch,
}
"""The callbacks every run has, each configured under its own key."""
LEFT_OUT = {"inspect": {"predictions"}}
"""Callbacks a subcommand runs no loop for and whose key it uses itself: ``inspect --predictions`` names a
cross-validation's folder."""


class ResNetArgumentParser(LightningArgumentParser):
    """Lightning's parser, with the error as the first thing a user reads instead of a long usage dump."""

    requested: str | None = None
    """The subcommand typed, which the help a refusal points to is of."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        usage = (getattr(ex, "subcommand_parser", None) or self).prog.replace(" [options]", "")
        if self.requested and not usage.endswith(f" {self.requested}"):
            usage = f"{usage} {self.requested}"
        required = re.search(r"required: (\w+)\.(\w+)$", message.strip())
        if required:  # a subcommand's own argument, which the top-level parser names with the subcommand's prefix
            subcommand, option = required.groups()
            message, usage = f"{subcommand} needs --{option}", usage if usage.endswith(subcommand) else \
                f"{usage} {subcommand}"
        exit_with(one_line(message), 2, usage=usage)


class ResNetCLI(LightningCLI):
    """Lightning's CLI with this project's links, callbacks and logs under ``logs/``.

    Linked, so never typed twice: the classes from the data to the model, and from the model to
    the data its input channels (``backbone_options.in_chans``) and the normalization of weights
    named in ``pretrained``; the data's training class counts to the model (``class_weights:
    balanced``). Always present, and configured under their own keys (:data:`ALWAYS_PRESENT`):
    ``checkpoint`` (``AccuracyThenLossCheckpoint``, the best by :data:`~lightning_resnet.tasks.MONITOR`),
    ``last_checkpoint`` (``last.ckpt``, after every epoch), ``lr_monitor``, ``interrupt_checkpoint``,
    ``random_state`` (exact resume), ``divergence_guard`` (stops on a non-finite loss), ``predictions``
    (``predictions.csv``), ``evaluation`` (reports of ``validate`` and ``test``), ``training_report``
    (split, curves, HPARAMS), ``throughput`` (images/s in the progress bar) and ``calibration`` (the
    temperature of the best checkpoint, with ``model.calibrate``, and its unsure threshold) and ``rank_watch``
    (under DDP, one failing process stops the others).
    ``trainer.callbacks`` adds others. ``--ckpt_path best`` and ``last`` name the experiment's newest
    run's checkpoints; ``fit --ckpt_path last`` resumes in that run's folder; Ctrl-C and SIGTERM save
    a ``last.ckpt`` (``interrupt_checkpoint``). With a checkpoint, the model, the classes and the
    preprocessing come from it (:mod:`.checkpoint_options`), so evaluating needs no config.
    """

    ALL_SUBCOMMANDS = APP_SUBCOMMANDS
    """Each subcommand, with the trainer method's arguments the command line does not offer (the commands' table)."""

    def __init__(self, *, args: Any = None, **options: Any) -> None:
        given = [] if isinstance(args, dict) else list(sys.argv[1:] if args is None else args)
        self._requested = given[0] if given and given[0] in self.ALL_SUBCOMMANDS else None
        self._listing_only = given in (["-h"], ["--help"])
        seed_line_unsaid()
        super().__init__(args=args, **options)

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        parser = super().init_parser(**kwargs)
        parser.requested = self._requested  # what its refusals point to the help of
        return parser

    def subcommands(self) -> dict[str, set[str]]:
        """The subcommand typed first, alone: Lightning builds a parser for each subcommand it is given, by reading
        signatures, a second of ``fit --help`` for the others (benchmarks/README.md, "Measured reasons in the code").
        ``--help`` without a subcommand, or options before it, gets them all."""
        if self._requested is None:
            return self.ALL_SUBCOMMANDS
        return {self._requested: self.ALL_SUBCOMMANDS[self._requested]}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        link_model_and_data(parser)
        for key, callback in ALWAYS_PRESENT.items():
            if key not in LEFT_OUT.get(self._preparing, ()):
                parser.add_lightning_class_args(callback, key)
        parser.set_defaults(
            {
                "checkpoint.monitor": MONITOR,
                "checkpoint.mode": MONITOR_MODE,
                "checkpoint.filename": f"best-epoch{{epoch:02d}}-acc{{{MONITOR}:.4f}}",
                "checkpoint.auto_insert_metric_name": False,
                # the best checkpoint is for evaluating and shipping; last.ckpt, for resuming, keeps the optimizer
                "checkpoint.save_weights_only": True,
                # Lightning 2.6 writes save_last only when a best checkpoint is written: a checkpoint
                # of its own, unmonitored, keeps last.ckpt at the latest epoch
                "last_checkpoint.filename": "last",
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
                "trainer.logger": tensorboard_logger("default"),
            }
        )

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        """Lightning's, each subcommand described by its line of the commands' table (not its method's docstring,
        which for Lightning's own reads "Runs the full optimization routine.")."""
        self._subcommand_parsers: dict[str, LightningArgumentParser] = {}
        subcommands = parser.add_subcommands()
        for subcommand in self.subcommands():
            summary = BY_NAME[subcommand].summary
            options = {"description": summary, **kwargs.get(subcommand, {})}
            subcommand_parser = self._prepare_subcommand_parser(self.trainer_class, subcommand, **options)
            self._subcommand_parsers[subcommand] = subcommand_parser
            subcommands.add_subcommand(subcommand, subcommand_parser, help=summary)

    _preparing: str | None = None
    """The subcommand whose parser is being made (Lightning makes them before ``__init__`` returns)."""

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        """The subcommand's parser; for the bare ``--help``, which lists only names and descriptions, an empty one
        (reading every subcommand's signatures took most of its time after the imports: benchmarks/README.md)."""
        if self._listing_only:
            return self.init_parser(**kwargs)
        self._preparing = subcommand
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        retitle_the_methods_group(parser, subcommand)
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
        best = best_checkpoint(self.trainer)
        self._say_where_results_went(best)
        data = self.datamodule
        if (not self.config.fit.get("test_after_fit") or not isinstance(data, ImageFolderDataModule)
                or not data.source.has_test):
            return
        if best is None:
            print("testing the weights as they are: no best checkpoint was chosen (no validation?)")
        self.trainer.test(self.model, datamodule=data, ckpt_path=best and str(best.path))

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.given_args = list(sys.argv[1:] if args is None else args)  # what the user typed, for _parse_ckpt_path
        super().parse_arguments(parser, args)
        validated_once(parser)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except UserError:
            self._remove_run_folder_if_empty()
            raise

    def _remove_run_folder_if_empty(self) -> None:
        """A run refused before it wrote anything of its own leaves no ``version_N`` behind (only its config
        and an events file with no scalar in it)."""
        logger = self.trainer.logger
        if not (isinstance(logger, TensorBoardLogger) and self.trainer.is_global_zero):
            return
        folder = Path(logger.log_dir)
        leftovers = [path.name for path in folder.rglob("*") if path.is_file()] if folder.is_dir() else None
        if leftovers is not None and all(name in ("config.yaml", "hparams.yaml") or name.startswith("events.out")
                                         for name in leftovers):
            if all(path.stat().st_size < 4096 for path in folder.glob("events.out*")):
                shutil.rmtree(folder, ignore_errors=True)

    def _say_where_results_went(self, best: BestCheckpoint | None) -> None:
        folder = run_dir(self.trainer)  # every process asks: the folder is process 0's
        if not self.trainer.is_global_zero:
            return
        lines = [f"run folder: {folder}"]
        if best is not None:
            lines.append(f"best checkpoint: {best.path} ({best.monitor} {best.score:.4f}); evaluate it on its "
                         f"validation split: {python_command('validate', '--ckpt_path', shown(best.path))}")
        if (folder / TRAINING_CURVES).is_file():
            lines.append(f"training curves: {folder / TRAINING_CURVES}")
        lines.append(f"TensorBoard: {tensorboard_command(folder.parent)}")
        print("\n".join(lines), flush=True)

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path best`` and ``last``; take the model and the preprocessing from the checkpoint
        (refusing options that contradict it); refuse to evaluate without weights."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        path = config.get("ckpt_path")
        if path in trained_options.NAMED:
            path = self._named_checkpoint(subcommand, path)
        if path is None:
            if subcommand in trained_options.EVALUATING and not config.model.get("pretrained"):
                raise UserError(f"{subcommand} needs trained weights: --ckpt_path best, last or a checkpoint file "
                                "(or --model.pretrained); without them it would report an untrained model")
            return
        if not Path(path).is_file():
            raise UserError(f"--ckpt_path {path} does not exist: give best, last or a checkpoint file")
        if subcommand == "fit":
            trained_options.check_resumable(Path(path))
        given = trained_options.given_options(self.given_args)
        if subcommand in trained_options.EVALUATING:
            self._log_beside_the_run(Path(path), config.trainer.logger, given)
        overrides = trained_options.trained_settings(read_bundle(path), config.model, config.data, given, subcommand)
        self.config = self.parser.parse_object({subcommand: overrides}, self.config)

    def _named_checkpoint(self, subcommand: str, name: str) -> str | None:
        """The file ``best`` or ``last`` names; ``fit --ckpt_path last`` also logs into that run's folder, and
        starts a new run when there is none."""
        config = self.config[subcommand]
        logger = config.trainer.logger
        if not (logger and "TensorBoardLogger" in str(logger.class_path)):
            raise UserError(f"--ckpt_path {name} looks in the run folders of trainer.logger, which must be the "
                            "TensorBoard logger; give a checkpoint file instead")
        experiment = Path(logger.init_args.save_dir) / logger.init_args.name
        if subcommand == "fit" and name == "last":
            run = trained_options.newest_run(experiment)
            if run is None:
                print(f"no {experiment}/version_*/checkpoints/last.ckpt to resume: starting a new run",
                      file=sys.stderr)
                config.ckpt_path = None
                return None
            logger.init_args.version = run.name
            self.save_config_kwargs["overwrite"] = True
        config.ckpt_path = str(trained_options.named_checkpoint(name, experiment))
        return config.ckpt_path

    @staticmethod
    def _log_beside_the_run(checkpoint: Path, logger: Any, given: set[str]) -> None:
        """An evaluation of a checkpoint of a run (``logs/<experiment>/version_N/checkpoints/...``) logs into a new
        run folder of that experiment, as ``--ckpt_path best`` does, unless the logger was chosen."""
        run = checkpoint.resolve().parent.parent
        if (checkpoint.parent.name != "checkpoints" or not run.name.startswith("version_")
                or not (logger and "TensorBoardLogger" in str(logger.class_path))
                or given & {"trainer.logger", "trainer.logger.init_args.name", "trainer.logger.init_args.save_dir"}):
            return
        save_dir = run.parent.parent
        logger.init_args.save_dir = str(save_dir.relative_to(Path.cwd()) if save_dir.is_relative_to(Path.cwd())
                                        else save_dir)
        logger.init_args.name = run.parent.name

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        keep_quiet_what_asks_nothing_of_the_user()
        if config.model.get("freeze_backbone"):
            # a frozen backbone keeps its BatchNorm layers in eval mode on purpose
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
        trained_options.adopt_trained_classes(config)
        teacher = (config.model.get("distillation") or {}).get("teacher")
        if teacher and Path(teacher).expanduser().is_dir():
            # the file, not the folder, goes into config.yaml: a newer run of the teacher must not change a resume
            config.model.distillation.teacher = str(teacher_checkpoint(teacher))
            print(f"model.distillation.teacher {teacher}: {config.model.distillation.teacher}")
        # summary needs a class count, which the data folder gives; without one the head of ImageNet's 1000
        if self.subcommand == "summary" and not config.data.get("class_names"):
            data_dir, named = config.data.data_dir, named_data_set(config.data.data_dir)
            if named is not None and not named.folder.is_dir():  # not downloaded for a summary
                config.data.class_names = [str(index) for index in range(named.classes)]
            elif named is None and not Path(data_dir).expanduser().is_dir():
                print(f"{data_dir} does not exist: summarizing with a 1000-class head, as for ImageNet")
                config.data.class_names = [str(index) for index in range(1000)]


def retitle_the_methods_group(parser: LightningArgumentParser, subcommand: str) -> None:
    """The help's group of a subcommand's own options titled by the command (jsonargparse titles it with its
    method's docstring: Lightning's ``Runs the full optimization routine.`` for ``fit``)."""
    from .commands import BY_NAME

    for group in parser._action_groups:
        if group.title and group.title.startswith(("Runs the full", "Perform one evaluation", "Run inference")):
            group.title = f"{subcommand} ({BY_NAME[subcommand].summary})"


def cli_options() -> dict[str, Any]:
    """How :func:`main` builds :class:`ResNetCLI`, less the arguments."""
    return {
        "model_class": ImageClassifier,
        "datamodule_class": ImageFolderDataModule,
        "trainer_class": ResNetTrainer,
        "parser_class": ResNetArgumentParser,
        "parser_kwargs": {"prog": "python -m lightning_resnet", "epilog": own_commands_help()},
        "seed_everything_default": 42,
    }
