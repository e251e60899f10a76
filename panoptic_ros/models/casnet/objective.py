"""Training objective of CASNet: targets (section III-B) and the loss of eq. 4."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from panoptic_ros.models.casnet.losses import LossConfig, casnet_loss
from panoptic_ros.models.casnet.targets import CASTargets, compute_targets


@dataclass
class CASNetObjective:
    """Targets and losses.

    Args:
        num_classes: semantic classes; ``thing_classes``: class ids with instances (the
            channels of the box-probability head, in this order).
        void_id: semantic value of void pixels in the samples.
        stride: the heads' grid (4: the HRNetV2 representation; the model's ``stride``).
        center_radius: centre region half-size in strides (FCOS centre sampling, 1.5).
        loss: :class:`~.losses.LossConfig` fields.
    """

    num_classes: int
    thing_classes: Sequence[int]
    void_id: int = 255
    stride: int = 4
    center_radius: float = 1.5
    loss: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loss_config = LossConfig(**self.loss)
        self._things = torch.tensor([int(c) for c in self.thing_classes], dtype=torch.long)

    def targets(self, semantic: torch.Tensor, instance: torch.Tensor) -> CASTargets:
        """Targets of one ``[H, W]`` sample at the network input size."""
        return compute_targets(semantic, instance, thing_classes=self._things,
                               stride=self.stride, radius=self.center_radius,
                               void_id=self.void_id)

    def __call__(self, raw: dict, targets: list[CASTargets]) -> dict[str, torch.Tensor]:
        return casnet_loss(raw, targets, self.loss_config)
