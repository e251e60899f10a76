"""Training objective of the dense-detections model: targets (4.1) and losses (4.3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from panoptic_ros.models.dense_detections.losses import LossConfig, dense_detections_loss
from panoptic_ros.models.dense_detections.targets import DenseTargets, compute_targets
from panoptic_ros.models.necks.fpn import FPN

STRIDES = FPN.strides


@dataclass
class DenseDetectionsObjective:
    """Targets and the loss of eq. 19.

    Args:
        num_classes: semantic classes; ``thing_classes``: class id of each box class.
        weak: boxes-only supervision (section 5.6; also switches the mask loss off).
        void_id: semantic value of void pixels in the samples.
        loss: :class:`LossConfig` fields (``semantic_weight`` is lambda of eq. 19).
    """

    num_classes: int
    thing_classes: Sequence[int]
    weak: bool = False
    void_id: int = 255
    loss: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.thing_index = torch.full((self.num_classes,), -1, dtype=torch.long)
        self.thing_index[torch.as_tensor(list(self.thing_classes), dtype=torch.long)] = \
            torch.arange(len(self.thing_classes))
        loss = dict(self.loss)
        if self.weak:
            loss['mask_loss'] = False
        self.loss_config = LossConfig(**loss)

    def targets(self, semantic: torch.Tensor, instance: torch.Tensor) -> DenseTargets:
        """Targets of one ``[H, W]`` sample at the network input size."""
        return compute_targets(semantic, instance, self.thing_index, STRIDES,
                               void_id=self.void_id, weak=self.weak)

    def __call__(self, raw: dict, targets: list[DenseTargets]) -> dict[str, torch.Tensor]:
        return dense_detections_loss(raw, targets, STRIDES, self.loss_config)
