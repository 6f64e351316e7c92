"""``SharedByCopies``: a value injected into the LightningModule that its deep copies share (see the class)."""

from __future__ import annotations

from typing import Any


class SharedByCopies:
    """A value that deep copies of the module share instead of copying.

    The optimizer callable of the command line refers to the command line itself, and so to the
    trainer and the data (so does ``class_counts``, a method of the data module); Lightning's
    ``EMAWeightAveraging`` deep-copies the module for its average, which must not copy those (it
    fails on the loaders' shared counters). Unavoidable while both are injected into the module.
    """

    def __init__(self, value: Any) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict) -> SharedByCopies:
        return self
