"""Training objective of OANet: targets (:mod:`.targets`) and the loss of eq. 1 (:mod:`.losses`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from panoptic_ros.models.oanet.losses import LossConfig, oanet_loss
from panoptic_ros.models.oanet.targets import OATargets, compute_targets


@dataclass
class OANetObjective:
    """Targets and losses.

    Args:
        num_classes: semantic classes; ``thing_classes``: class ids with instances (the
            detector's classes, in this order).
        void_id: semantic value of void pixels in the samples.
        stride: the stuff branch's grid (4).
        loss: :class:`~.losses.LossConfig` fields.
    """

    num_classes: int
    thing_classes: Sequence[int]
    void_id: int = 255
    stride: int = 4
    loss: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loss_config = LossConfig(**self.loss)
        self._things = torch.tensor([int(c) for c in self.thing_classes], dtype=torch.long)

    def targets(self, semantic: torch.Tensor, instance: torch.Tensor) -> OATargets:
        """Targets of one ``[H, W]`` sample at the network input size."""
        return compute_targets(semantic, instance, thing_classes=self._things,
                               stride=self.stride, void_id=self.void_id)

    def __call__(self, raw: dict, targets: list[OATargets]) -> dict[str, torch.Tensor]:
        return oanet_loss(raw, targets, self.loss_config)
