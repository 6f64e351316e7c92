"""``cross_validate``: ``fit`` once per fold of ``data.num_folds``, then each fold's scores and their mean ± std.

Each fold is an ordinary ``fit`` in a process of its own (so DDP and every ``fit`` option work as they do alone;
forked by the command's :class:`~.launcher.Launcher`), logged to ``logs/<experiment>/crossval_N/fold_K/`` with its
own checkpoints and ``split.csv``; from a data set converted in folds (``convert --data.num_folds K``), each fold
trains on the other folds' parts. A fold's scores are the validation metrics its best checkpoint carries (those of
the epoch ``ModelCheckpoint`` chose it at). The table is printed and written to ``crossval_N/cross_validation.csv``.
After each fold its best checkpoint reads every image, and at the end ``crossval_N/oof_predictions.csv`` gives each
image as the fold that validated it saw it (:mod:`~lightning_resnet.reports.out_of_fold`), what
``inspect --predictions`` looks for label errors in.
"""

from __future__ import annotations

import csv
import statistics
import warnings
from pathlib import Path

from lightning.pytorch.loggers import TensorBoardLogger

from ..data import ConvertedSource
from ..errors import UserError
from ..reports.out_of_fold import (
    CrossValidatedImages,
    cross_validated_paths,
    fold_folder,
    run_fold_model,
    write_out_of_fold,
)
from ..stages import VAL
from ..tasks.metrics import METRIC_LABELS, MULTILABEL_METRIC_LABELS, metric_key
from ..training.checkpoints import best_checkpoint_of_run, epoch_metrics
from .app import ResNetCLI, cli_options
from .launcher import Launcher

COMMAND = "cross_validate"
RESULTS_CSV = "cross_validation.csv"
COLUMNS = [metric_key(VAL, name) for name in dict.fromkeys([*METRIC_LABELS, *MULTILABEL_METRIC_LABELS])]
"""The metrics a fold may report (one class per image, or several labels), in the report's order."""
HELP = f"""usage: python -m lightning_resnet {COMMAND} [fit options] --data.num_folds K

Runs fit once per fold (--data.fold 0 to K-1), each in its own process and run folder
logs/<experiment>/crossval_N/fold_K/, then prints each fold's validation metrics at its best
epoch and their mean and standard deviation (also in crossval_N/{RESULTS_CSV}), and writes
crossval_N/oof_predictions.csv: every image with the probabilities of the fold model that
validated it (python -m lightning_resnet inspect --predictions crossval_N finds label errors in it).
From a data set converted in folds (python -m lightning_resnet convert --data.num_folds K),
each fold trains on the other folds' parts. Every option of fit applies: python -m lightning_resnet fit --help"""


def cross_validate(args: list[str]) -> None:
    """Run ``python -m lightning_resnet fit <args> --data.fold K`` for every fold, then report."""
    if any(arg in ("-h", "--help") for arg in args):
        print(HELP)
        return
    # the folds' options come from this command line, read here through args=: nothing is given twice
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    cli = ResNetCLI(args=args, run=False, **cli_options())
    folds = cli.datamodule.hparams.num_folds
    if folds is None:
        raise UserError(f"{COMMAND} needs data.num_folds: the number of folds (2 or more), e.g. --data.num_folds 5")
    source = cli.datamodule.source
    source.prepare()  # the folder and the fold count checked once, up front (a conversion's manifest is read)
    converted = source.converted if isinstance(source, ConvertedSource) else None
    logger = cli.trainer.logger
    if not isinstance(logger, TensorBoardLogger):
        raise UserError(f"{COMMAND} keeps each fold's run with trainer.logger, which must be the TensorBoard logger")
    experiment = Path(logger.save_dir) / logger.name
    group = next(f"crossval_{n}" for n in range(10_000) if not (experiment / f"crossval_{n}").exists())
    class_names, workers = cli.datamodule.class_names, cli.datamodule.num_workers
    del cli

    scores: list[dict[str, float]] = []
    with Launcher() as launcher:  # each fold a process of its own, without importing everything again
        for fold in range(folds):
            run = fold_folder(experiment / group, fold)
            print(f"cross-validation: fold {fold} ({fold + 1} of {folds}) -> {run}", flush=True)
            command = launcher.start(["fit", *args, "--data.fold", str(fold),
                                      "--trainer.logger.init_args.version", f"{group}/fold_{fold}",
                                      *(["--trainer.enable_model_summary", "false"] if fold else [])])  # table once
            try:
                code = command.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the fold too: it saves, then this command ends with it
                code = command.wait()
            if code != 0:
                raise SystemExit(code if code > 0 else 128 - code)
            best = best_checkpoint_of_run(run)
            if best is None:
                raise UserError(f"fold {fold} chose no best checkpoint (trainer.limit_val_batches 0?): "
                                "nothing to cross-validate")
            scores.append(epoch_metrics(best.path))
            if fold == 0:
                paths = cross_validated_paths(run)
            run_fold_model(best.path, paths, run, workers, converted)
    print(format_results(scores, experiment / group))
    write_results(experiment / group / RESULTS_CSV, scores)
    images = CrossValidatedImages.from_splits(experiment / group, folds)
    print(f"out-of-fold predictions of {len(images.paths)} images: "
          f"{write_out_of_fold(experiment / group, images, class_names)}")


def _columns(scores: list[dict[str, float]]) -> list[str]:
    """The metrics every fold logged, in the report's order."""
    return [column for column in COLUMNS if all(column in fold for fold in scores)]


def format_results(scores: list[dict[str, float]], folder: Path) -> str:
    """Each fold's validation metrics, then their mean ± standard deviation over the folds."""
    columns = _columns(scores)
    lines = [f"cross-validation over {len(scores)} folds ({folder}); the best epoch of each fold",
             f"{'fold':<12}" + "".join(f"{column:>22}" for column in columns)]
    for number, fold in enumerate(scores):
        lines.append(f"{number:<12}" + "".join(f"{fold[column]:>22.4f}" for column in columns))
    summary = [mean_and_std([fold[column] for fold in scores]) for column in columns]
    lines.append(f"{'mean ± std':<12}" + "".join(f"{mean:>13.4f} ± {std:<6.4f}" for mean, std in summary))
    return "\n".join(lines)


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) over the folds."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def write_results(path: Path, scores: list[dict[str, float]]) -> None:
    columns = _columns(scores)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["fold", *columns])
        writer.writerows([number, *(fold[column] for column in columns)] for number, fold in enumerate(scores))
        writer.writerow(["mean", *(mean_and_std([fold[c] for fold in scores])[0] for c in columns)])
        writer.writerow(["std", *(mean_and_std([fold[c] for fold in scores])[1] for c in columns)])

