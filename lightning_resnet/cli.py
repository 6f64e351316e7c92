"""``python -m lightning_resnet {fit,validate,test,predict}``: Lightning's CLI with this project's defaults."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import lazy_instance
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from .data import ImageFolderDataModule
from .module import ImageClassifier


class ResNetCLI(LightningCLI):
    """Links the classes from the data to the model, and keeps checkpoints and TensorBoard logs under ``logs/``.

    ``ModelCheckpoint`` (best by ``val/acc`` and ``last.ckpt``) and ``LearningRateMonitor`` are always
    present and configured under ``checkpoint`` and ``lr_monitor``; ``trainer.callbacks`` adds others.
    ``fit --ckpt_path last`` resumes the experiment's newest ``last.ckpt`` in its own log folder.
    With a checkpoint, the class names come from it, so predicting needs no training folder.
    """

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch{epoch:02d}-acc{val/acc:.4f}",
                "checkpoint.auto_insert_metric_name": False,
                "trainer.logger": lazy_instance(TensorBoardLogger, save_dir="logs", name="default"),
            }
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            self._resolve_last_checkpoint()
        trained_classes = config.model.get("class_names")
        if trained_classes:
            # the checkpoint's hyper-parameters (Lightning put them in the config): its classes win
            config.data.class_names = trained_classes

    def _resolve_last_checkpoint(self) -> None:
        """Point ``ckpt_path last`` at the newest ``last.ckpt`` of the experiment and log into its folder."""
        config = self.config.fit
        logger = config.trainer.logger
        if not (logger and "TensorBoardLogger" in str(logger.class_path)):
            return
        experiment = Path(logger.init_args.save_dir) / logger.init_args.name
        candidates = sorted(experiment.glob("version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not candidates:
            return
        last = candidates[-1]
        config.ckpt_path = str(last)
        logger.init_args.version = last.parent.parent.name
        self.save_config_kwargs["overwrite"] = True


def main(args: list[str] | None = None) -> ResNetCLI:
    return ResNetCLI(
        ImageClassifier,
        ImageFolderDataModule,
        seed_everything_default=42,
        args=args,
    )
