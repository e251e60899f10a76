"""Training targets of OANet (section 3, eq. 1-2) for one image.

The instance branch is trained on boxes and masks of the visible (panoptic) instances, the
stuff branch on the semantic labels of stuff and thing classes ("stuff + object", Tab. 2) at
the stuff branch's stride 4 (cell ``(i, j)`` takes pixel ``(2 + 4 j, 2 + 4 i)``, as
:func:`~panoptic_ros.models.geometry.locations`), and the spatial ranking module on the thing
class of every cell (:mod:`.losses` keeps the cells where instance masks conflict).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from panoptic_ros.models.geometry import index_boxes, locations

IGNORE = 255


@dataclass
class OATargets:
    """Targets of one ``H x W`` image with ``G`` instances; grid ``h x w`` of stride 4.

    Attributes:
        semantic: ``[h, w] int64`` class ids, ``IGNORE`` on void.
        things: ``[h, w] int64`` thing index ``0..T-1`` of the cell's instance, -1 elsewhere.
        cell_ids: ``[h, w] int64`` instance id of each cell (the value in ``instance`` of the
            pixel it takes).
        instance: ``[H, W] int32`` instance ids (0: none), the mask targets' source.
        boxes: ``[G, 4] float32`` ``x1, y1, x2, y2`` (x2, y2 exclusive) in input pixels.
        classes: ``[G] int64`` thing index of each instance.
        ids: ``[G] int64`` each instance's value in ``instance``.
    """

    semantic: torch.Tensor
    things: torch.Tensor
    cell_ids: torch.Tensor
    instance: torch.Tensor
    boxes: torch.Tensor
    classes: torch.Tensor
    ids: torch.Tensor


def compute_targets(semantic: torch.Tensor, instance: torch.Tensor, *,
                    thing_classes: torch.Tensor, stride: int = 4,
                    void_id: int = 255) -> OATargets:
    """Targets of one sample.

    Args:
        semantic: ``[H, W]`` class ids, ``void_id`` on void.
        instance: ``[H, W]`` instance ids (any positive values; 0 for stuff, void and crowd).
        thing_classes: ``[T] int64`` class ids with instances (the thing index order).
        stride: of the stuff branch's output.
    """
    semantic = semantic.long()
    instance = instance.long()
    hh, ww = semantic.shape
    h, w = -(-hh // stride), -(-ww // stride)
    ids, index = torch.unique(instance, return_inverse=True)            # ids[0] may be 0
    boxes = index_boxes(index.view(hh, ww), ids.numel()).float()
    boxes[:, 2:] += 1
    cls_of = torch.zeros(ids.numel(), dtype=torch.long).scatter_reduce(
        0, index.flatten(), semantic.flatten(), 'amax', include_self=False)
    lut = torch.full((max(int(semantic.max()), void_id, int(thing_classes.max())) + 1,), -1,
                     dtype=torch.long)
    lut[thing_classes.long()] = torch.arange(thing_classes.numel())
    thing = lut[cls_of]
    keep = (ids > 0) & (thing >= 0)
    loc = locations(h, w, stride).long()
    lx, ly = loc[0].clamp(max=ww - 1), loc[1].clamp(max=hh - 1)
    cell_sem = semantic[ly, lx]
    cell_index = index.view(hh, ww)[ly, lx]
    things = torch.where(keep[cell_index], thing[cell_index], torch.full_like(cell_sem, -1))
    return OATargets(
        semantic=torch.where(cell_sem == void_id, torch.full_like(cell_sem, IGNORE), cell_sem),
        things=things, cell_ids=ids[cell_index], instance=instance.to(torch.int32),
        boxes=boxes[keep],
        classes=thing[keep], ids=ids[keep])
