"""Training objective of the contours model: targets (section IV-A) and the loss of eq. 4."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from panoptic_ros.models.contours.losses import LossConfig, contours_loss
from panoptic_ros.models.contours.targets import ContourTargets, compute_targets


@dataclass
class ContoursObjective:
    """Targets and losses.

    Args:
        num_classes: semantic classes; ``thing_classes``: class ids with instances (the
            targets read instances from the instance map, so they are not needed there).
        void_id: semantic value of void pixels in the samples.
        dilation_rate: contour ground-truth thickness (Table II; 2 in the paper).
        loss: :class:`~.losses.LossConfig` fields (the weights of eq. 4, the Huber switch of
            Table I).
    """

    num_classes: int
    thing_classes: Sequence[int]
    void_id: int = 255
    dilation_rate: int = 2
    loss: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.loss_config = LossConfig(**self.loss)

    def targets(self, semantic: torch.Tensor, instance: torch.Tensor) -> ContourTargets:
        """Targets of one ``[H, W]`` sample at the network input size."""
        return compute_targets(semantic, instance, void_id=self.void_id,
                               dilation_rate=self.dilation_rate)

    def __call__(self, raw: dict, targets: list[ContourTargets]) -> dict[str, torch.Tensor]:
        return contours_loss(raw, targets, self.loss_config)
