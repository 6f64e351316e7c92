"""Every command of ``python -m lightning_resnet``, in one table: its name, where it is, and what it does in one line.

The table makes the dispatcher (:func:`lightning_resnet.cli.run_command`), the ``--help`` of the command line and the
table of docs/command-line.md (a test holds the page to it). A command of LightningCLI's app (:mod:`.app`) is
Lightning's ``fit``, ``validate``, ``test`` or ``predict``, or a method of :class:`~.trainer.ResNetTrainer`, whose
arguments the command line does not offer are its ``not_offered``; any other command is the function of its name in
the module of its name, here (``cli/<name>.py``), imported when it runs, with what it imports (Optuna, LitServe,
Gradio, lightly, onnxruntime), so that ``fit`` starts without them. A new command is its file and a line here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    """What it does, in one line."""
    not_offered: frozenset[str] | None = None
    """A command of LightningCLI's app: the arguments of its trainer method that the command line does not offer (an
    empty set for Lightning's own); None for a command of its own module."""

    @property
    def own_module(self) -> bool:
        return self.not_offered is None


MODEL_AND_DATA = frozenset({"model", "datamodule"})

COMMANDS = (
    Command("fit", "train a model on a folder of images: checkpoints, curves and reports in logs/<experiment>/",
            frozenset({"model", "train_dataloaders", "val_dataloaders", "datamodule"})),
    Command("validate", "evaluate a checkpoint on its validation split: a report, the confusion matrix, the mistakes",
            frozenset({"model", "dataloaders", "datamodule"})),
    Command("test", "evaluate a checkpoint on a test folder", frozenset({"model", "dataloaders", "datamodule"})),
    Command("predict", "a checkpoint's answers for a folder of images, into predictions.csv",
            frozenset({"model", "dataloaders", "datamodule"})),
    Command("summary", "the network's stages: output shapes, parameters, GMACs", MODEL_AND_DATA),
    Command("inspect", "the data folder before training: counts, sizes, broken files, duplicates, leaks",
            MODEL_AND_DATA),
    Command("convert", "a folder into LitData's streaming format, split (or in folds) as fit splits it",
            MODEL_AND_DATA),
    Command("lr_find", "a learning rate from Lightning's finder, and its curve", MODEL_AND_DATA),
    Command("export", "a trained model as ONNX, OpenVINO or torch.export (or INT8), or a folder for timm"),
    Command("cross_validate", "a fit per fold, the scores' mean and spread, and out-of-fold predictions"),
    Command("sweep", "an Optuna study whose trials are fits"),
    Command("compare", "runs side by side: the options that differ and the scores"),
    Command("predict_onnx", "an exported .onnx or .xml over a folder, into predictions.csv"),
    Command("serve", "a trained model as an HTTP service (LitServe)"),
    Command("demo", "a page to try a trained model in the browser (Gradio)"),
    Command("pretrain", "self-supervised pretraining of a backbone on unlabelled images (lightly)"),
    Command("suggest", "the unlabelled images to label next"),
    Command("pseudo_label", "the unlabelled images a model is sure of, for fit --data.extra_labels"),
    Command("embed", "every image of a folder as a trained model's features, into one .npz file"),
    Command("similar", "the images of an embedded folder nearest to an image"),
)
BY_NAME = {command.name: command for command in COMMANDS}
OWN = tuple(command.name for command in COMMANDS if command.own_module)
"""The commands of modules of their own."""
APP_SUBCOMMANDS = {command.name: set(command.not_offered) for command in COMMANDS if not command.own_module}
"""LightningCLI's subcommands, each with the arguments the command line does not offer."""


def own_commands_help() -> str:
    """What ``python -m lightning_resnet --help`` says after LightningCLI's subcommands."""
    return (f"{len(OWN)} more commands, each with its own --help: "
            + "; ".join(f"{BY_NAME[name].name} ({BY_NAME[name].summary})" for name in OWN))


def markdown_table() -> str:
    """The table of docs/command-line.md."""
    return "\n".join(["| command | what it does |", "| --- | --- |",
                      *(f"| `{command.name}` | {command.summary} |" for command in COMMANDS)])


def overview() -> str:
    """What ``python -m lightning_resnet`` alone (or with ``--help``) prints."""
    width = max(len(command.name) for command in COMMANDS)
    return "\n".join(["usage: python -m lightning_resnet <command> [options]    (each command has its own --help)",
                      "", "commands:", *(f"  {command.name:<{width}}  {command.summary}" for command in COMMANDS),
                      "", "a run's options can come from a YAML file: --config FILE (--print_config writes one)"])
