"""``pseudo_label``: the images nobody labelled that a trained model is sure of, with the class it gives them, into
``pseudo_labels.csv`` for ``fit --data.extra_labels``.

Sure is the model's task's to say (:meth:`~lightning_resnet.tasks.verdicts.ClassVerdict.sure`): for one class per
image, both rules the project answers with, the calibrated probability of the class is at least ``--min_confidence``
and the image is not unsure (its energy score is not below the threshold fit chose); for a label set, every label's
decision is that sure (a label given has at least that probability, a label left out at most one minus it), and the
set is not empty. Images of the labelled folder, and exact copies of them, are left out:
they have a person's label.
"""

from __future__ import annotations

import csv
from pathlib import Path

from jsonargparse import Namespace

from ..bundle import ModelBundle, read_bundle
from ..data import scan_unlabelled
from ..data.unlabelled import not_labelled
from ..errors import check
from ..hints import python_command, shown
from ..runtimes import TorchPredictor, predict_images
from .options import CommandParser, add_unlabelled_options, replacing, unlabelled_checkpoint

COMMAND = "pseudo_label"
PSEUDO_LABELS_CSV = "pseudo_labels.csv"
COLUMNS = ("path", "label", "confidence", "energy_score")
NOISED_STUDENT = ("--data.train_augment", "trivialaugment")
"""The student learns under a stronger augmentation than a plain fit (Noisy Student training): without it, a student
from scratch fit the easy confident images and lost accuracy (benchmarks/README.md, "Few labels")."""


def parse(args: list[str]) -> Namespace:
    parser = CommandParser(COMMAND)
    add_unlabelled_options(parser)
    parser.add_argument("--min_confidence", type=float, default=0.95,
                        help="the calibrated probability an image's class must reach (unsure images are left out "
                             "whatever it is)")
    parser.add_argument("--output", type=Path | None, default=None,
                        help=f"the CSV to write (default: {PSEUDO_LABELS_CSV} in the checkpoint's run folder)")
    return parser.parse_args(args)


def unlabelled_paths(bundle: ModelBundle, folder: Path) -> tuple[list[str], int]:
    """The images under ``folder`` that are neither images of the model's labelled folder (as its run listed them:
    its ``split.csv``) nor exact copies of them, and how many were."""
    paths = scan_unlabelled(folder.expanduser(), "data.predict_dir")
    outside = not_labelled(paths, [path for path, _, _ in bundle.labelled_source().split_rows()])
    return outside, len(paths) - len(outside)


def pseudo_label(args: list[str]) -> Path:
    """Write the pseudo-labels of ``--data.predict_dir``; returns the CSV."""
    options = parse(args)
    check(0.0 < options.min_confidence <= 1.0, f"--min_confidence must be in (0, 1], got {options.min_confidence}")
    checkpoint = unlabelled_checkpoint(options)
    bundle = read_bundle(checkpoint)
    paths, labelled = unlabelled_paths(bundle, options.data.predict_dir)
    check(bool(paths), f"data.predict_dir {options.data.predict_dir} holds only images of the labelled folder")
    seen = predict_images(TorchPredictor(bundle), paths, options.batch_size, options.num_workers)
    said = bundle.decision.verdicts(seen.probabilities, seen.logits, bundle.classes, 1)
    sure = [(path, each) for path, each in zip(seen.keys, said) if each.sure(options.min_confidence)]
    output = options.output or checkpoint.parent.parent / PSEUDO_LABELS_CSV
    replacing(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(each.pseudo_label(path) for path, each in sorted(sure))
    left = [f"{len(seen.keys) - len(sure)} below confidence {options.min_confidence} or unsure"]
    left += [f"{count} {what}" for what, count in (("unreadable", len(seen.unreadable)),
                                                   ("labelled already", labelled)) if count]
    student = python_command("fit", "--config", "CONFIG", "--data.extra_labels", shown(output), *NOISED_STUDENT)
    print(f"wrote {shown(output)}: {len(sure)} of {len(paths) + labelled} images pseudo-labelled ({', '.join(left)})\n"
          f"train a student with them: {student}")
    return output
