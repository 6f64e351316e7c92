"""The semi-supervised methods by name: a new method is a file of this package and a line here."""

from __future__ import annotations

from .fixmatch import FixMatch
from .freematch import FreeMatch
from .method import ConsistencyMethod

METHODS: dict[str, type[ConsistencyMethod]] = {method.name: method for method in (FixMatch, FreeMatch)}
