"""``python -m lightning_resnet pretrain``: self-supervised pretraining of a backbone on unlabelled images, with every
trainer flag, checkpoints, exact resume after Ctrl-C or SIGTERM (``--ckpt_path last``) and TensorBoard as for
``fit``; it ends by naming the weights file that ``fit --model.pretrained`` loads."""

from __future__ import annotations

import json
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ..bundle.checkpoint import of_pretraining, read_checkpoint
from ..data.unlabelled import UnlabelledImages
from ..errors import UserError
from ..hints import python_command, shown, tensorboard_command
from ..models.weights import NORMALIZATION_METADATA
from ..training.checkpoints import InterruptCheckpoint, RandomState
from ..training.divergence import DivergenceGuard
from ..training.epoch_line import EpochLine
from ..training.pretraining import SelfSupervised
from ..training.rank_watch import RankWatch
from ..training.run import run_dir
from .app import ResNetArgumentParser, retitle_the_methods_group
from .checkpoint_options import named_checkpoint, newest_run
from .commands import BY_NAME
from .lightning_cli import tensorboard_logger, validated_once
from .quiet import keep_quiet_what_asks_nothing_of_the_user, seed_line_unsaid
from .trainer import ChecksFirstTrainer

SUMMARY = BY_NAME["pretrain"].summary
FEW_STEPS = 100
"""Fewer optimizer steps than this leave the weights close to their start: ``pretrain`` says so."""
BACKBONE_WEIGHTS = "backbone.safetensors"
"""The pretrained backbone's weights, without a classifier, in the run folder."""

ALWAYS_PRESENT = {
    "last_checkpoint": ModelCheckpoint,
    "lr_monitor": LearningRateMonitor,
    "interrupt_checkpoint": InterruptCheckpoint,
    "random_state": RandomState,
    "divergence_guard": DivergenceGuard,
    "rank_watch": RankWatch,
    "epoch_line": EpochLine,
}
"""The callbacks of every pretraining run (``fit``'s, less those of classification), each under its own key."""


class PretrainCLI(LightningCLI):
    """Lightning's CLI for :class:`~..training.pretraining.SelfSupervised` on
    :class:`~..data.unlabelled.UnlabelledImages`: ``fit`` alone, its logs under ``logs/pretrain``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": LightningCLI.subcommands()["fit"]}

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        self._subcommand_parsers["fit"].prog = parser.prog  # its one subcommand, fit, is not typed
        retitle_the_methods_group(self._subcommand_parsers["fit"], "pretrain")

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model", "data.views", compute_fn=lambda model: model.views, apply_on="instantiate")
        for key, callback in ALWAYS_PRESENT.items():
            parser.add_lightning_class_args(callback, key)
        parser.set_defaults({
            "last_checkpoint.filename": "last",
            "last_checkpoint.save_top_k": 1,
            "last_checkpoint.enable_version_counter": False,
            "trainer.logger": tensorboard_logger("pretrain"),
        })

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        validated_once(parser)

    def before_instantiate_classes(self) -> None:
        keep_quiet_what_asks_nothing_of_the_user()
        # without data.knn_dir there is nothing to validate on, which the k-NN score's absence says already
        warnings.filterwarnings("ignore", message=r".*Total length of .* across ranks is zero.*")

    def _parse_ckpt_path(self) -> None:
        """Resolve ``--ckpt_path last``; refuse a checkpoint ``pretrain`` did not write, before Lightning reads its
        options as this command's."""
        config = self.config.fit
        if config.ckpt_path in ("last", "best"):
            config.ckpt_path = self._last_checkpoint(config)
        if config.ckpt_path and not of_pretraining(read_checkpoint(config.ckpt_path)):
            raise UserError(f"--ckpt_path {config.ckpt_path} is not a checkpoint of pretrain (a classifier of fit?): "
                            "pretrain resumes its own runs, --ckpt_path last or a pretrain run's "
                            "checkpoints/last.ckpt")
        super()._parse_ckpt_path()

    @staticmethod
    def _last_checkpoint(config: Any) -> str | None:
        """``last``: the experiment's newest run's ``last.ckpt``, logging into that run's folder (a new run when
        there is none)."""
        logger = config.trainer.logger
        if not (logger and "TensorBoardLogger" in str(logger.class_path)):
            raise UserError("--ckpt_path last looks in the run folders of trainer.logger, which must be the "
                            "TensorBoard logger; give a checkpoint file instead")
        experiment = Path(logger.init_args.save_dir) / logger.init_args.name
        if config.ckpt_path == "best":
            raise UserError("--ckpt_path best: pretraining has no best checkpoint (it is not validated on labels); "
                            "use --ckpt_path last")
        run = newest_run(experiment)
        if run is None:
            print(f"no {experiment}/version_*/checkpoints/last.ckpt to resume: starting a new run", file=sys.stderr)
            return None
        logger.init_args.version = run.name
        return str(named_checkpoint("last", experiment))

    def after_fit(self) -> None:
        """Write the backbone's weights and say how to fine-tune from them."""
        trainer: Trainer = self.trainer
        if trainer.interrupted:
            return
        folder = run_dir(trainer)
        if not trainer.is_global_zero:
            return
        from safetensors.torch import save_file

        weights = folder / BACKBONE_WEIGHTS
        normalization = self.datamodule.normalization
        save_file(self.model.backbone_weights(), str(weights), metadata={NORMALIZATION_METADATA: json.dumps(
            {"mean": list(normalization.mean), "std": list(normalization.std)})})
        hparams = self.model.hparams
        # data.normalize null: the mean and std the weights file records, which fit reads from it
        options = ["--model.backbone", hparams.backbone, "--model.pretrained", shown(weights), "--data.normalize",
                   "null"]
        if hparams.backbone_options:
            options += ["--model.backbone_options", shlex.quote(json.dumps(dict(hparams.backbone_options)))]
        if trainer.global_step < FEW_STEPS:
            epochs = f"{trainer.current_epoch} epoch{'s' if trainer.current_epoch != 1 else ''}"
            print(f"warning: pretrain took {trainer.global_step} optimizer steps ({len(self.datamodule.train_set)} "
                  f"images, {epochs}): weights so little trained are close to where they started; pretrain on more "
                  "images, or for more epochs", file=sys.stderr, flush=True)
        print(f"run folder: {folder}\npretrained weights: {weights}\nfine-tune: "
              f"{python_command('fit', '--config', 'CONFIG', *options)}\n"
              f"TensorBoard: {tensorboard_command(folder.parent)}", flush=True)


def pretrain(args: list[str]) -> PretrainCLI:
    """Run ``pretrain`` with ``args`` (``fit``'s trainer options, ``model.*`` of :class:`SelfSupervised` and
    ``data.*`` of :class:`UnlabelledImages`)."""
    # the arguments are given, and sys.argv is the whole command line, which Lightning would warn about
    warnings.filterwarnings("ignore", message=r".*args parameter is intended to run from within Python.*")
    seed_line_unsaid()
    return PretrainCLI(SelfSupervised, UnlabelledImages, trainer_class=ChecksFirstTrainer, args=["fit", *args],
                       parser_class=ResNetArgumentParser,
                       parser_kwargs={"prog": "python -m lightning_resnet pretrain", "description": SUMMARY,
                                      "fit": {"description": SUMMARY}}, seed_everything_default=42,
                       save_config_kwargs={"overwrite": True})
