"""``lr_find``: Lightning's learning-rate finder on the configured model and data, with its plot beside the run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.tuner import Tuner
from matplotlib.figure import Figure

from ..errors import check
from .run import run_dir

WARM_UP_POINTS = 10
"""Points left out at the start: the finder's smoothed loss starts from its first value and takes about ten
steps to follow the real one (on the demo it read 1.28 at the first step, where the loss was 2.54)."""


def valley(losses: Sequence[float], skip_begin: int = WARM_UP_POINTS) -> int | None:
    """The index half-way along the longest run of points over which the loss keeps falling (the rates are
    spaced evenly in log scale, so half-way in index is half-way in log rate); None without such a run.

    The steepest-fall rule Lightning suggests by default picked 7.8e-6 on the demo, at the top of the
    smoothed curve's first hump, where the demo hardly trains (0.384 accuracy against 0.989 at 2e-3);
    the middle of the longest fall is fastai's "valley" rule, written here for Lightning's results.
    """
    points = list(losses)[skip_begin:]
    if len(points) < 3:
        return None
    longest, before = [1] * len(points), [-1] * len(points)
    for i, loss in enumerate(points):
        for j in range(i):
            if points[j] > loss and longest[j] + 1 > longest[i]:
                longest[i], before[i] = longest[j] + 1, j
    end = max(range(len(points)), key=longest.__getitem__)
    start = end
    while before[start] != -1:
        start = before[start]
    return None if start == end else skip_begin + (start + end) // 2


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
    rates, losses = finder.results["lr"], finder.results["loss"]
    chosen = valley(losses)
    suggestion = None if chosen is None else float(rates[chosen])
    folder = run_dir(trainer)
    folder.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7, 4.5))
    axes = figure.subplots()
    finder.plot(suggest=False, ax=axes)
    if chosen is not None:
        axes.plot(rates[chosen], losses[chosen], marker="o", markersize=10, color="red", label="suggested")
        axes.legend()
    figure.suptitle("loss against learning rate")
    plot = Path(folder) / "lr_find.png"
    figure.savefig(plot, dpi=120, bbox_inches="tight")
    if suggestion is None:
        print(f"no learning rate suggested (the loss did not fall steadily); see {plot}")
    else:
        print(f"suggested learning rate: {suggestion:.3g} (half-way along the longest fall of the loss); "
              f"plot: {plot}\n"
              f"apply it with: --model.optimizer.lr {suggestion:.3g}")
    return suggestion
