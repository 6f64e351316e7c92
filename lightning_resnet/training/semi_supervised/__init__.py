"""Semi-supervised ``fit``: the labelled images' loss plus a loss on unlabelled images (``data.unlabelled_dir``) from
the model's own confident predictions.

``options`` (``model.semi_supervised``) -> ``method`` (what every method does: a pseudo-label per image from its
weak view, kept where confident, trained on its strong view) <- one file per method (``fixmatch``, ``freematch``),
each a line of ``methods``; ``step`` is the part of a training step the LightningModule hands them.
"""

from .methods import METHODS
from .options import SemiSupervised
from .step import ConsistencyTraining, check_unlabelled

__all__ = ["METHODS", "ConsistencyTraining", "SemiSupervised", "check_unlabelled"]
