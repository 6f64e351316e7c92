"""``lr_find``: Lightning's learning-rate finder on the configured model and data, with its plot beside the run."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.tuner import Tuner
from matplotlib.figure import Figure

from ..errors import check
from .run import run_dir


def find_learning_rate(trainer: Trainer, model: LightningModule, datamodule: LightningDataModule,
                       min_lr: float = 1e-7, max_lr: float = 1.0, num_training: int = 100) -> float | None:
    """Train ``num_training`` steps with the rate rising from ``min_lr`` to ``max_lr``; suggest one; plot.

    The model's weights are restored afterwards (Lightning does it). Prints the suggestion and the
    command-line option that applies it, and writes ``lr_find.png`` beside the run.
    """
    check(num_training >= 2, f"lr_find --num_training must be at least 2 steps, got {num_training}")
    check(0 < min_lr < max_lr, f"lr_find needs 0 < --min_lr < --max_lr, got {min_lr} and {max_lr}")
    finder = Tuner(trainer).lr_find(model, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr,
                                    num_training=num_training, update_attr=False)
    if finder is None:  # fast_dev_run: Lightning skips the finder and says so
        return None
    suggestion = finder.suggestion()
    folder = run_dir(trainer)
    folder.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7, 4.5))
    finder.plot(suggest=suggestion is not None, ax=figure.subplots())
    figure.suptitle("loss against learning rate")
    plot = Path(folder) / "lr_find.png"
    figure.savefig(plot, dpi=120, bbox_inches="tight")
    if suggestion is None:
        print(f"no learning rate suggested (the loss did not fall steadily); see {plot}")
    else:
        print(f"suggested learning rate: {suggestion:.3g} (steepest fall of the loss); plot: {plot}\n"
              f"apply it with: --model.optimizer.lr {suggestion:.3g}")
    return suggestion
