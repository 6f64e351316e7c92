"""The two kinds of classification: one class per image (``multiclass``, a softmax over the classes), or a set of
labels per image (``multilabel``, a sigmoid per label). The data decide which; the model and everything
downstream read it from the checkpoint."""

from typing import Literal

Task = Literal["multiclass", "multilabel"]
MULTICLASS: Task = "multiclass"
MULTILABEL: Task = "multilabel"
