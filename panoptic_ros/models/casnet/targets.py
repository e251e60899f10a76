"""Training targets of CASNet (section III-B), on the heads' grid of stride ``s``.

Grid cell ``(i, j)`` looks at input pixel ``(s // 2 + j s, s // 2 + i s)``
(:func:`~panoptic_ros.models.geometry.locations`). For a cell whose pixel lies in a
(non-crowd) instance:

* common attribute (eq. 2): the distances ``(l, t, r, b)`` from that pixel to the borders of
  its instance's box, divided by the stride;
* box probability (eq. 3): 1 in the channel of the instance's class on "the small area in the
  centre" of the box: the cells of the instance within ``radius`` (1.5 strides, FCOS centre
  sampling) of its box centre in x and in y, and, so that no instance lacks a positive, its
  cell nearest to the box centre; 0 everywhere else.

The semantic target stays at the input size (eq. 1; the loss upsamples the logits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panoptic_ros.models.geometry import instance_boxes, locations

IGNORE = 255


@dataclass
class CASTargets:
    """Targets of one image of ``H x W`` pixels, heads' grid ``h x w``.

    Attributes:
        semantic: ``[H, W] int64`` class ids, ``IGNORE`` on void.
        distances: ``[4, h, w] float32`` ``(l, t, r, b)`` in strides, 0 off instances.
        instance: ``[h, w] bool`` cells whose pixel is an instance's (where eq. 2 applies).
        box_prob: ``[T, h, w] float32`` 0/1 centre regions per thing class.
        valid: ``[h, w] bool`` cells eq. 3 sees (not void, not crowd).
    """

    semantic: torch.Tensor
    distances: torch.Tensor
    instance: torch.Tensor
    box_prob: torch.Tensor
    valid: torch.Tensor


def compute_targets(semantic: torch.Tensor, instance: torch.Tensor, *,
                    thing_classes: torch.Tensor, stride: int = 4, radius: float = 1.5,
                    void_id: int = 255) -> CASTargets:
    """Targets of one sample.

    Args:
        semantic: ``[H, W]`` class ids, ``void_id`` on void.
        instance: ``[H, W]`` instance ids ``1..K``; 0 for stuff, void and crowd.
        thing_classes: ``[T] int64`` class ids with instances (channel order of ``box_prob``).
        stride: of the heads' grid.
        radius: centre region half-size, in strides.
    """
    semantic = semantic.long()
    instance = instance.long()
    hh, ww = semantic.shape
    h, w = -(-hh // stride), -(-ww // stride)
    loc = locations(h, w, stride, semantic.device).long()                # [2, h, w] (x, y)
    lx, ly = loc[0].clamp(max=ww - 1), loc[1].clamp(max=hh - 1)
    cell_inst = instance[ly, lx]                                         # [h, w]
    cell_sem = semantic[ly, lx]
    boxes = instance_boxes(instance)                                     # [K + 1, 4]
    b = boxes[cell_inst].permute(2, 0, 1)                                # [4, h, w]
    x, y = loc[0].float(), loc[1].float()
    dist = torch.stack([x - b[0], y - b[1], b[2] - x, b[3] - y]) / stride
    on = cell_inst > 0
    dist = torch.where(on[None], dist.clamp(min=0), torch.zeros_like(dist))
    # centre regions
    t = thing_classes.numel()
    thing_index = torch.full((max(int(semantic.max()) + 1, void_id + 1),), -1, dtype=torch.long,
                             device=semantic.device)
    thing_index[thing_classes.long()] = torch.arange(t, device=semantic.device)
    cx = (b[0] + b[2]) / 2
    cy = (b[1] + b[3]) / 2
    dx, dy = (x - cx).abs(), (y - cy).abs()
    central = on & (dx <= radius * stride) & (dy <= radius * stride)
    k = int(cell_inst.max()) + 1
    d = torch.where(on, dx * dx + dy * dy, torch.full_like(dx, float('inf'))).flatten()
    nearest = torch.full((k,), float('inf'), device=d.device).scatter_reduce(
        0, cell_inst.flatten(), d, 'amin')
    central |= on & (d.view(h, w) == nearest[cell_inst])
    cls = thing_index[cell_sem]
    central &= cls >= 0
    box_prob = torch.zeros((t, h, w), device=semantic.device)
    ci = torch.nonzero(central, as_tuple=True)
    box_prob[cls[ci], ci[0], ci[1]] = 1.0
    crowd = thing_index[cell_sem].ge(0) & ~on
    return CASTargets(
        semantic=torch.where(semantic == void_id, torch.full_like(semantic, IGNORE), semantic),
        distances=dist.float(), instance=on, box_prob=box_prob,
        valid=(cell_sem != void_id) & ~crowd)
