"""The self-supervised methods by name: a new method is a file of this package and a line here."""

from __future__ import annotations

from .byol import BYOL
from .dino import DINO
from .method import PretrainingMethod
from .simclr import SimCLR

METHODS: dict[str, type[PretrainingMethod]] = {method.name: method for method in (SimCLR, BYOL, DINO)}
