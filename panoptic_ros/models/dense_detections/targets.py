"""Training targets of the dense-detections model (section 4.1), vectorised.

A feature-map location of stride ``s`` at ``(x, y)`` looks at image pixel
``(s // 2 + x s, s // 2 + y s)``. When that pixel lies inside a (non-crowd) instance mask it
is a foreground location of that instance only (masks do not overlap), with the offsets
``(l, t, r, b)`` to the instance's box (eq. 8); it stays on level ``i`` only when
``m_{i-1} <= max(l, t, r, b) <= m_i`` (eq. 9), and gets a centerness target (eq. 10) and the
instance's box class. Levelness targets (which level a pixel's box belongs to, 0 for
background) and semantic targets live on the 1/4 grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from panoptic_ros.models.geometry import instance_boxes

# FCOS size ranges m_i for strides 8..128 (the paper's "heuristic maximum object size").
SIZE_RANGES = (0, 64, 128, 256, 512, float('inf'))
IGNORE = 255


@dataclass
class DenseTargets:
    """Targets of one image.

    Attributes:
        box: per level ``[4, h, w]`` offsets ``l, t, r, b`` (pixels; 0 where not foreground).
        box_class: per level ``[h, w] int64`` box class ``0..T-1``, ``-1`` background.
        centerness: per level ``[h, w]`` in ``[0, 1]``.
        instance: per level ``[h, w] int64`` instance id of the location (0 background).
        levelness: ``[H/4, W/4] int64`` level ``1..L`` of the pixel's box, 0 background.
        semantic: ``[H/4, W/4] int64`` class ids, ``IGNORE`` for void.
        instance_quarter: ``[H/4, W/4] int64`` instance id on the 1/4 grid (0 none), for the
            mask loss.
        boxes: ``[K + 1, 4]`` box ``x1, y1, x2, y2`` of each instance id (row 0 unused).
    """

    box: list[torch.Tensor]
    box_class: list[torch.Tensor]
    centerness: list[torch.Tensor]
    instance: list[torch.Tensor]
    levelness: torch.Tensor
    semantic: torch.Tensor
    instance_quarter: torch.Tensor
    boxes: torch.Tensor


def _sample(grid: torch.Tensor, stride: int, out_h: int, out_w: int) -> torch.Tensor:
    """Values of ``grid [H, W]`` at the pixels locations of a stride-``s`` map look at."""
    ys = (torch.arange(out_h) * stride + stride // 2).clamp(max=grid.shape[0] - 1)
    xs = (torch.arange(out_w) * stride + stride // 2).clamp(max=grid.shape[1] - 1)
    return grid[ys][:, xs]


def _offsets(inst: torch.Tensor, boxes: torch.Tensor, stride: int) -> torch.Tensor:
    h, w = inst.shape
    ys = (torch.arange(h) * stride + stride // 2).float()[:, None].expand(h, w)
    xs = (torch.arange(w) * stride + stride // 2).float()[None, :].expand(h, w)
    b = boxes[inst]                                         # [h, w, 4]
    return torch.stack([xs - b[..., 0], ys - b[..., 1], b[..., 2] - xs, b[..., 3] - ys], 0)


def box_instance_map(instance: torch.Tensor) -> torch.Tensor:
    """Weak supervision (section 5.6): every pixel inside an instance's box belongs to it.

    Boxes are painted from the largest to the smallest, so where boxes overlap the smaller
    one wins (the ambiguity rule of FCOS).
    """
    boxes = instance_boxes(instance).long()
    out = torch.zeros_like(instance)
    area = (boxes[1:, 2] - boxes[1:, 0]) * (boxes[1:, 3] - boxes[1:, 1])
    for k in (torch.argsort(area, descending=True) + 1).tolist():   # one slice per instance
        x1, y1, x2, y2 = boxes[k].tolist()
        out[y1:y2, x1:x2] = k
    return out


def compute_targets(semantic: torch.Tensor, instance: torch.Tensor, thing_index: torch.Tensor,
                    strides: Sequence[int], size_ranges: Sequence[float] = SIZE_RANGES,
                    void_id: int = 255, weak: bool = False) -> DenseTargets:
    """Targets of one image.

    Args:
        semantic: ``[H, W]`` class ids, ``void_id`` on void.
        instance: ``[H, W]`` instance ids ``1..K``, 0 for stuff, void and crowd.
        thing_index: ``[C] int64`` box class of each semantic class (-1 for stuff).
        strides: FPN strides, finest first; ``size_ranges`` has ``len(strides) + 1`` bounds.
        weak: boxes-only supervision (section 5.6): foreground is "inside a box".
    """
    h, w = semantic.shape
    instance = instance.long()
    semantic = semantic.long()
    boxes = instance_boxes(instance)
    if weak:
        classes = torch.zeros(boxes.shape[0], dtype=torch.long)
        classes[instance[instance > 0]] = semantic[instance > 0]
        instance = box_instance_map(instance)
        semantic = torch.where(instance > 0, classes[instance], semantic)
    inst_class = torch.full((boxes.shape[0],), -1, dtype=torch.long)
    fg_px = instance > 0
    inst_class[instance[fg_px]] = thing_index[semantic[fg_px]]
    out = DenseTargets([], [], [], [], None, None, None, boxes)
    for i, s in enumerate(strides):
        hi, wi = -(-h // s), -(-w // s)
        inst = _sample(instance, s, hi, wi)
        off = _offsets(inst, boxes, s)
        m = off.max(0).values
        keep = (inst > 0) & (m >= size_ranges[i]) & (m <= size_ranges[i + 1]) & (
            off.min(0).values >= 0)
        lr = off[[0, 2]].clamp(min=0)
        tb = off[[1, 3]].clamp(min=0)
        ctr = torch.sqrt((lr.min(0).values / lr.max(0).values.clamp(min=1e-6)) *
                         (tb.min(0).values / tb.max(0).values.clamp(min=1e-6)))
        out.box.append(torch.where(keep[None], off, torch.zeros_like(off)))
        out.box_class.append(torch.where(keep, inst_class[inst], torch.full_like(inst, -1)))
        out.centerness.append(torch.where(keep, ctr, torch.zeros_like(ctr)))
        out.instance.append(torch.where(keep, inst, torch.zeros_like(inst)))
    hq, wq = -(-h // 4), -(-w // 4)
    inst_q = _sample(instance, 4, hq, wq)
    off_q = _offsets(inst_q, boxes, 4).max(0).values
    level = torch.zeros_like(inst_q)
    for i in range(len(strides)):
        level = torch.where((inst_q > 0) & (level == 0) & (off_q >= size_ranges[i]) &
                            (off_q <= size_ranges[i + 1]), torch.full_like(level, i + 1), level)
    sem_q = _sample(semantic, 4, hq, wq)
    out.levelness = level
    out.semantic = torch.where(sem_q == void_id, torch.full_like(sem_q, IGNORE), sem_q)
    out.instance_quarter = inst_q
    return out
