"""The figures of the reports, drawn with matplotlib's object-oriented API (no pyplot, no backend to choose)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from ..data.decode import load_image
from ..data.normalization import Normalization


def to_viewable(images: Tensor, normalization: Normalization | None) -> Tensor:
    """Normalized images back to [0, 1] (min-max scaled without a normalization)."""
    images = images.detach().float().cpu()
    if normalization is not None:
        return normalization.invert(images)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    high = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)


def confusion_matrix_figure(confusion: Tensor, names: list[str]) -> Figure:
    """torchmetrics' confusion-matrix plot, sized to the number of classes."""
    figure = Figure(figsize=(max(5, 0.5 * len(names) + 3), max(4, 0.5 * len(names) + 2)))
    MulticlassConfusionMatrix(len(names)).plot(val=confusion, ax=figure.subplots(), labels=names)
    figure.tight_layout()
    return figure


def picture_axes(figure: Figure, rows: int, columns: int) -> np.ndarray:
    """A ``rows`` x ``columns`` grid of axes for pictures: no ticks, no frame (``axis("off")`` hides the ticks but
    still lays them out, twice the drawing time: benchmarks/README.md, "Measured reasons in the code")."""
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        for spine in axis.spines.values():
            spine.set_visible(False)
    return axes


def show_picture(axis: Any, image: Tensor) -> None:
    """A viewable image (C, H, W in [0, 1]) in ``axis``: gray or colour, its pixels as they are."""
    if image.shape[0] == 1:
        axis.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        axis.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")


def mistakes_figure(images: Tensor, titles: list[str]) -> Figure:
    """A grid of viewable ``images`` (N, C, H, W in [0, 1]), each with its title."""
    columns = min(8, len(images))
    rows = math.ceil(len(images) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.8 * rows))
    axes = picture_axes(figure, rows, columns)
    for axis, image, title in zip(axes.flat, images, titles):
        show_picture(axis, image)
        axis.set_title(title, fontsize=8)
    figure.suptitle("most confident mistakes")
    figure.tight_layout()
    return figure


def pictures_figure(grid: list[list[tuple[Tensor | None, str]]]) -> Figure:
    """Rows of titled pictures (C, H, W in [0, 1]; None: a title alone), as ``similar`` shows a query and its
    nearest images."""
    columns = max(len(row) for row in grid)
    figure = Figure(figsize=(1.6 * columns, 1.9 * len(grid)))
    axes = picture_axes(figure, len(grid), columns)
    for axis_row, row in zip(axes, grid):
        for axis, (image, title) in zip(axis_row, row):
            if image is not None:
                show_picture(axis, image)
            axis.set_title(title, fontsize=7)
    figure.tight_layout()
    return figure


def curves_figure(curves: dict[str, list[tuple[int, float]]]) -> Figure:
    """Loss and accuracy (or a multi-label model's mAP) per epoch, train and validation, from
    :func:`~lightning_resnet.reports.read_curves`."""
    figure = Figure(figsize=(11, 4))
    loss_axis, score_axis = figure.subplots(1, 2)
    score = "mAP" if any(name.endswith("mAP") for name in curves) else "accuracy"
    for axis, kind in ((loss_axis, "loss"), (score_axis, score)):
        for split, style in (("train", "o-"), ("val", "s-")):
            points = curves.get(f"{split} {kind}")
            if points:
                axis.plot([epoch for epoch, _ in points], [value for _, value in points], style, label=split)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("epoch (from 0, as the progress bar and the checkpoint names count)")
        axis.set_ylabel(kind)
        axis.set_title(f"{kind} per epoch")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    figure.tight_layout()
    return figure


def reliability_figure(bins: Tensor, ece: float, stage: str) -> Figure:
    """Accuracy against confidence per bin (rows of :class:`~lightning_resnet.calibration.ReliabilityBins`),
    with the diagonal a calibrated model follows and the share of images in each bin."""
    count, confidence, accuracy = (row.cpu().numpy() for row in bins)
    edges = [index / len(count) for index in range(len(count) + 1)]
    centres = [(low + high) / 2 for low, high in zip(edges, edges[1:])]
    width = 1 / len(count)
    figure = Figure(figsize=(5, 6))
    top, bottom = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    filled = count > 0
    shown = [centre for centre, used in zip(centres, filled) if used]
    top.bar(shown, accuracy[filled], width=width * 0.9, label="accuracy", color="tab:blue", edgecolor="black",
            linewidth=0.5)
    top.scatter(shown, confidence[filled], marker="_", s=200, linewidths=2.5, color="tab:red",
                label="mean confidence", zorder=3)
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"reliability diagram, {stage}: ECE {ece:.4f}")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, count / max(count.sum(), 1), width=width * 0.9, color="gray")
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("share of images")
    bottom.set_xlim(0, 1)
    figure.tight_layout()
    return figure


def show_thumbnail(axis: Any, path: str, channels: int, side: int) -> None:
    """The image file at ``path`` fitted into a ``side`` square on ``axis`` (gray images in gray)."""
    image = load_image(path, min_size=side, channels=channels).permute(1, 2, 0).numpy()
    thumbnail = Image.fromarray(image.squeeze(-1) if channels == 1 else image)
    thumbnail.thumbnail((side, side))
    axis.imshow(np.asarray(thumbnail), cmap="gray" if channels == 1 else None, interpolation="nearest")
