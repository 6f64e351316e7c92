"""``suggest``: the images nobody labelled that a person should label next, in order, into ``to_label.csv`` and a
grid of them (``to_label.png``): those the model hesitates on (between two classes, or on some label of a set) and
those unlike anything labelled (:mod:`lightning_resnet.inference.suggestions`). Images of the labelled folder, and
exact copies of them, are never suggested."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from jsonargparse import Namespace

from ..bundle import read_bundle
from ..data import scan_unlabelled
from ..data.unlabelled import not_labelled
from ..errors import check
from ..hints import shown
from ..inference.suggestions import suggest_images
from ..reports import plots
from ..runtimes import TorchPredictor, predict_images
from .options import CommandParser, add_unlabelled_options, replacing, unlabelled_checkpoint

COMMAND = "suggest"
TO_LABEL_CSV = "to_label.csv"
TO_LABEL_PNG = "to_label.png"
COLUMNS = ("path", "rank", "score", "uncertainty", "novelty", "why", "predicted")


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    add_unlabelled_options(parser)
    parser.add_argument("--budget", type=int, required=True, help="how many images to suggest")
    parser.add_argument("--output", type=Path | None, default=None,
                        help=f"the folder of {TO_LABEL_CSV} and {TO_LABEL_PNG} (default: the checkpoint's run folder)")
    return parser.parse_args(args)


def suggest(args: list[str]) -> Path:
    """Write the ``--budget`` images to label next; returns ``to_label.csv``."""
    options = parse(args)
    check(options.budget >= 1, f"--budget must be at least 1, got {options.budget}")
    checkpoint = unlabelled_checkpoint(options)
    bundle = read_bundle(checkpoint)
    labelled = [path for path, _, _ in bundle.labelled_source().split_rows()]
    candidates = not_labelled(scan_unlabelled(options.data.predict_dir.expanduser(), "data.predict_dir"), labelled)
    check(bool(candidates), f"data.predict_dir {options.data.predict_dir} holds only labelled images (or copies)")
    model = TorchPredictor(bundle)
    seen = predict_images(model, candidates, options.batch_size, options.num_workers, features=True)
    known = predict_images(model, labelled, options.batch_size, options.num_workers, features=True)
    decision = bundle.decision
    picks = suggest_images(seen.features, decision.task.uncertainty(seen.probabilities, decision), known.features,
                           options.budget)
    answers = decision.task.answers(seen.probabilities, decision, bundle.classes)
    folder = options.output or checkpoint.parent.parent
    replacing(folder / TO_LABEL_CSV)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / TO_LABEL_CSV, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows((seen.keys[pick.index], pick.rank, f"{pick.score:.4f}", f"{pick.uncertainty:.4f}",
                          f"{pick.novelty:.4f}", pick.why, answers[pick.index]) for pick in picks)
    images = torch.stack([bundle.view(seen.keys[pick.index]) for pick in picks]).float() / 255
    titles = [f"{pick.rank}. {pick.why}\n{Path(seen.keys[pick.index]).name}" for pick in picks]
    plots.mistakes_figure(images, titles).savefig(folder / TO_LABEL_PNG, dpi=100, bbox_inches="tight")
    reasons = {why: sum(pick.why == why for pick in picks) for why in dict.fromkeys(pick.why for pick in picks)}
    whole = f" (--budget {options.budget}: the folder holds no more)" if len(picks) < options.budget else ""
    print(f"wrote {shown(folder / TO_LABEL_CSV)} and {TO_LABEL_PNG}: {len(picks)} of {len(candidates)} unlabelled "
          f"images to label next ({', '.join(f'{count} {why}' for why, count in reasons.items())}){whole}")
    return folder / TO_LABEL_CSV
