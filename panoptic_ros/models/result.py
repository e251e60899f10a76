"""The one result type passed from inference to the ROS layer, the evaluator and the bag tools."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class PanopticResult:
    """Panoptic segmentation of one image, on the device that computed it.

    Attributes:
        semantic: ``[H, W] int64`` class ids; ``void_id`` on void.
        instance: ``[H, W] int32`` instance ids ``1..S_things``, unique in the image; 0 for
            stuff and void.
        panoptic: ``[H, W] int32`` ``class_id * label_divisor + instance_id``; -1 on void.
        segment_ids: ``[S] int32`` panoptic id of each segment (its value in ``panoptic``).
        segment_classes: ``[S] int64`` class id.
        segment_instance_ids: ``[S] int32`` value in ``instance`` (0 for stuff).
        segment_is_thing: ``[S] bool``.
        segment_scores: ``[S] float32`` detection score (things) or mean class probability
            (stuff).
        segment_areas: ``[S] int64`` pixels.
        segment_boxes: ``[S, 4] int64`` ``x, y, width, height`` in pixels.
        segment_centroids: ``[S, 2] float32`` ``x, y`` centre of mass in pixels.
        void_id: semantic value of void pixels.
        label_divisor: multiplier of the class id in ``panoptic``.
        timings_ms: stage name -> milliseconds, filled by whoever ran the stages.
    """

    semantic: torch.Tensor
    instance: torch.Tensor
    panoptic: torch.Tensor
    segment_ids: torch.Tensor
    segment_classes: torch.Tensor
    segment_instance_ids: torch.Tensor
    segment_is_thing: torch.Tensor
    segment_scores: torch.Tensor
    segment_areas: torch.Tensor
    segment_boxes: torch.Tensor
    segment_centroids: torch.Tensor
    void_id: int
    label_divisor: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def num_segments(self) -> int:
        return int(self.segment_ids.numel())

    def to(self, device: str | torch.device) -> 'PanopticResult':
        """Copy of the result with every tensor on ``device``."""
        kw = {k: (v.to(device) if isinstance(v, torch.Tensor) else v)
              for k, v in self.__dict__.items()}
        return PanopticResult(**kw)
