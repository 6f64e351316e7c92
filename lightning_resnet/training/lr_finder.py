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
SURE_DEPTH = 0.15
SURE_POINTS = 20
"""A fall of the (smoothed) loss by this share over at least this many points is a clear one; a shorter or
shallower fall is suggested too, and said to be weak. The falls whose suggestions trained well in
benchmarks/README.md ("lr_find") fell 18 % to 38 % over 28 to 57 points."""


def longest_fall(losses: Sequence[float], skip_begin: int = WARM_UP_POINTS) -> tuple[int, int, int] | None:
    """The longest run of points over which the loss keeps falling (not necessarily adjacent: a noisy curve's run
    skips the points that rose): its first and last index and how many points it holds; None without one."""
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
    return None if start == end else (skip_begin + start, skip_begin + end, longest[end])


def suggest(losses: Sequence[float], skip_begin: int = WARM_UP_POINTS) -> int | None:
    """The index of the suggested rate: where the loss falls most steeply, between the first and the last point of
    its longest fall (so a steep drop of a noisy curve outside it is never chosen); None without a fall.

    Its rates trained as well as the recipe's own on 200 to 1,797 digits, where the middle of the longest fall, the
    rule before, fell short on 200 (0.425 against 0.925; benchmarks/README.md, "lr_find")."""
    fall = longest_fall(losses, skip_begin)
    if fall is None:
        return None
    points = list(losses)
    return min(range(fall[0], fall[1]), key=lambda i: points[i + 1] - points[i])


def fastai_valley(losses: Sequence[float], skip_begin: int = WARM_UP_POINTS) -> int | None:
    """fastai's "valley": the longest fall counted in points, its start put that many points before its end, and
    the point half-way from there."""
    fall = longest_fall(losses, skip_begin)
    if fall is None:
        return None
    _, end, points = fall
    return max(skip_begin, end - points) + points // 2


def candidate_rules(losses: Sequence[float], skip_begin: int = WARM_UP_POINTS) -> dict[str, int | None]:
    """The index each rule picks, for ``benchmarks/bench_lr_find.py``: :func:`suggest` and the rules it was measured
    against."""
    fall = longest_fall(losses, skip_begin)
    points = list(losses)

    def steepest(first: int, last: int) -> int | None:
        return min(range(first, last), key=lambda i: points[i + 1] - points[i], default=None)

    lowest = min(range(skip_begin, len(points)), key=points.__getitem__, default=None)
    return {"valley, fastai": fastai_valley(losses, skip_begin),
            "valley, middle": None if fall is None else (fall[0] + fall[1]) // 2,
            "steepest": steepest(skip_begin, len(points) - 1),
            "steepest within the valley": suggest(losses, skip_begin),
            "lowest loss / 10": lowest}


def describe_fall(rates: Sequence[float], losses: Sequence[float], skip_begin: int = WARM_UP_POINTS) -> str:
    """How sure a suggestion is, in words: how long the loss fell (points, and rates) and how far."""
    fall = longest_fall(losses, skip_begin)
    if fall is None:
        return "the loss never fell"
    start, end, points = fall
    depth = (losses[start] - losses[end]) / abs(losses[start]) if losses[start] else 0.0
    sure = "a clear fall" if depth >= SURE_DEPTH and points >= SURE_POINTS else "a weak fall: read the plot"
    return (f"{sure}; the loss fell {depth:.0%} (from {losses[start]:.3g} to {losses[end]:.3g}) over {points} of "
            f"{len(losses) - skip_begin} steps, rates {rates[start]:.2g} to {rates[end]:.2g}")


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
    chosen = suggest(losses)
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
        print(f"suggested learning rate: {suggestion:.3g} (the steepest fall of the loss within its longest fall); "
              f"{describe_fall(rates, losses)}; plot: {plot}\n"
              f"apply it with: --model.optimizer.lr {suggestion:.3g}")
    return suggestion
