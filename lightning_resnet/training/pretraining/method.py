"""What a self-supervised method is to :class:`~.module.SelfSupervised`: :class:`PretrainingMethod`, the heads and
the loss that teach a backbone from views of unlabelled images, and the views it compares (any number, of any
sizes). Each method is a file of this package and a line of :data:`~.methods.METHODS`."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from ...errors import UserError, check

ViewsOf = Callable[[Any], list[Tensor]]
"""lightly's transform of a method: an image in, its views out (a list, each a tensor)."""
TOP_LEVEL = ("temperature", "momentum", "prediction_lr_factor")
"""The options a method may take that are the model's own (``model.temperature``); the others are
``model.method_options.<name>``."""


def option_name(name: str) -> str:
    """How the command line names a method's option."""
    return f"model.{name}" if name in TOP_LEVEL else f"model.method_options.{name}"


@dataclass(frozen=True)
class Progress:
    """Where the run is: what schedules of a method (a target network's momentum, a temperature's warm-up) follow."""

    step: int
    total_steps: int
    epoch: int


class PretrainingMethod(nn.Module):
    """A self-supervised method: the heads (and target networks) it adds to the backbone, its loss over a batch of
    views, and the views themselves.

    Args:
        backbone: the backbone being pretrained (pooled features out); a method with a target network copies it.
        width: the width of the backbone's pooled features.
        projection_dim: the width of the head's output (DINO's bottleneck).
        hidden_dim: the width of the heads' hidden layers.
        options: the method's own options (:attr:`OPTIONS`), each given or at its default.
    """

    name: ClassVar[str]
    OPTIONS: ClassVar[dict[str, Any]] = {}
    """The method's own options, with their defaults."""

    def __init__(self, backbone: nn.Module, width: int, projection_dim: int, hidden_dim: int,
                 options: Mapping[str, Any]) -> None:
        super().__init__()
        self.options = dict(options)

    @classmethod
    @abstractmethod
    def views(cls, image_size: int, view_options: Mapping[str, Any] | None) -> ViewsOf:
        """The views of one image the loss compares, as lightly's transform for this method makes them."""

    @abstractmethod
    def loss(self, backbone: nn.Module, views: list[Tensor], progress: Progress) -> Tensor:
        """The loss of a batch: ``views`` has one batch of normalized images per view, in :meth:`views`' order."""

    def trained_groups(self) -> list[dict[str, Any]]:
        """The method's trained parameters, as optimizer groups (an ``lr_factor`` times the backbone's rate)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def after_backward(self, progress: Progress) -> None:
        """What the method does to the gradients before the step (none by default)."""


def lightly_views(transform: type, view_options: Mapping[str, Any] | None, method: str, **sizes: Any) -> ViewsOf:
    """lightly's ``transform`` at ``sizes`` with ``view_options``, without its normalization (done on the device);
    one line naming ``data.view_options`` when lightly does not take them."""
    try:
        return transform(**{**sizes, "normalize": None, **(view_options or {})})
    except TypeError as error:
        raise UserError(f"data.view_options: {error} (the options of lightly's {method} transform)") from None


def check_positive(options: Mapping[str, Any], *names: str) -> None:
    for name in names:
        check(options[name] > 0, f"{option_name(name)} must be positive, got {options[name]}")
