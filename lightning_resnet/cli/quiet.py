"""What Lightning says that asks nothing of this project's user, unsaid: the seed line before a refusal, warnings
about choices this project made on purpose, an advertisement. Its other warnings still reach the user."""

from __future__ import annotations

import logging
import warnings


def seed_line_unsaid() -> None:
    """Lightning's "Seed set to 42" unprinted: config.yaml records seed_everything (and the data line the split's
    seed), and the line would only stand before a refusal."""
    logging.getLogger("lightning.fabric.utilities.seed").setLevel(logging.WARNING)


class _DropLines(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in record.getMessage() for fragment in self.fragments)


def keep_quiet_what_asks_nothing_of_the_user() -> None:
    """Lightning's warnings and notes that ask nothing of this project's user, each for the reason given."""
    quiet = [
        # a checkpoint's ModelCheckpoint state names the folder of the run that wrote it; validate, test and
        # predict log into folders of their own
        ".*The dirpath has changed from.*",
        # deprecation inside Lightning's own pytree helper
        ".*isinstance.treespec, LeafSpec.*",
        # this project's resume is exact mid-epoch without a stateful loader (see data/samplers.py)
        ".*dataloader is not resumable.*",
        # the model's configure_model only compiles; EMA's averaged copy needs no sharding
        ".*WeightAveraging doesn't support sharding.*",
        # epochs of few batches are logged at their end anyway (on_epoch metrics); the training curves read those
        ".*smaller than the logging interval.*",
        # a resume (--ckpt_path last) continues in its own run's folder; a new run has a new version_N
        ".*Checkpoint directory .* exists and is not empty.*",
        # a converted data set's training part: LitData's loader shares it out among the workers itself
        ".*IterableDataset.*has .__len__. defined.*",
    ]
    for message in quiet:
        warnings.filterwarnings("ignore", message=message)
    # an advertisement, and a note on an argument only Lightning's internals pass (its handlers print them)
    for handler in logging.getLogger("lightning.pytorch").handlers:
        if not any(isinstance(existing, _DropLines) for existing in handler.filters):
            handler.addFilter(_DropLines("litlogger", "`weights_only` was not set"))
