"""The one result type passed from inference to the ROS layer, the evaluator and the bag tools."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property

import cv2
import numpy as np
import torch


@dataclass
class PanopticResult:
    """Panoptic segmentation of one image, on the device that computed it.

    Post-processing works on a grid usually coarser than the image. The result keeps the label
    maps on that grid and brings them to the image size (nearest neighbour) on first access,
    so that a consumer pays only for the maps it reads (the node skips outputs nobody
    subscribes to). The segment statistics are exact for the image size.

    Attributes:
        grid_semantic, grid_instance, grid_panoptic: ``[h, w] int32`` label maps on the
            post-processing grid.
        size: ``(H, W)`` of the image.
        semantic: ``[H, W] int32`` class ids; ``void_id`` on void (computed on access).
        instance: ``[H, W] int32`` instance ids ``1..S_things``, unique in the image; 0 for
            stuff and void (computed on access).
        panoptic: ``[H, W] int32`` ``class_id * label_divisor + instance_id``; -1 on void
            (computed on access).
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

    grid_semantic: torch.Tensor
    grid_instance: torch.Tensor
    grid_panoptic: torch.Tensor
    size: tuple[int, int]
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

    @cached_property
    def semantic(self) -> torch.Tensor:
        return upsample_nearest(self.grid_semantic, self.size)

    @cached_property
    def instance(self) -> torch.Tensor:
        return upsample_nearest(self.grid_instance, self.size)

    @cached_property
    def panoptic(self) -> torch.Tensor:
        return upsample_nearest(self.grid_panoptic, self.size)

    def to(self, device: str | torch.device) -> 'PanopticResult':
        """Copy of the result with every tensor on ``device``."""
        kw = {f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
              for f in fields(self) for v in [getattr(self, f.name)]}
        return PanopticResult(**kw)


def nearest_sources(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out] int32`` source index of each output pixel of a nearest-neighbour resize.

    Taken from OpenCV's ``INTER_NEAREST`` itself (``floor(i * n_in / n_out)``), so that
    :func:`upsample_nearest` on CPU and on GPU give the same image.
    """
    return cv2.resize(np.arange(n_in, dtype=np.int32)[None], (n_out, 1),
                      interpolation=cv2.INTER_NEAREST)[0]


def upsample_nearest(labels: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a label image, ``[h, w] int32 -> [H, W] int32``.

    OpenCV on CPU (about 4x faster than torch's gather there), index gathers elsewhere.
    """
    if tuple(labels.shape) == tuple(out_size):
        return labels
    if labels.device.type == 'cpu':
        return torch.from_numpy(cv2.resize(labels.contiguous().numpy(), out_size[::-1],
                                           interpolation=cv2.INTER_NEAREST))
    rows = torch.from_numpy(nearest_sources(labels.shape[0], out_size[0])).to(labels.device)
    cols = torch.from_numpy(nearest_sources(labels.shape[1], out_size[1])).to(labels.device)
    return labels.index_select(0, rows).index_select(1, cols)
