"""Perfect engine outputs made from the training targets: the ceiling of OANet's
representation (28x28 masks in their boxes, stride-4 stuff) and its panoptic fusion.

Unlike the dense architectures, OANet's detections come out of the RoI heads inside the graph,
so the oracle is at the level of the engine outputs (:meth:`~.model.OANet.decode`): every
ground-truth instance as a detection of score 1 with its box and its 28x28 mask target, ranked
by area (smaller in front), and stuff probabilities certain of each cell's class.
"""

from __future__ import annotations

import torch

from panoptic_ros.models.oanet.losses import mask_targets
from panoptic_ros.models.oanet.targets import IGNORE, OATargets


def oracle_outputs(t: OATargets, num_classes: int, detections: int = 100) -> dict:
    """Engine outputs (batch 1) that the targets ``t`` call perfect; at most ``detections``
    instances (the largest boxes first when there are more)."""
    g = t.boxes.shape[0]
    area = (t.boxes[:, 2] - t.boxes[:, 0]) * (t.boxes[:, 3] - t.boxes[:, 1])
    keep = torch.argsort(area, descending=True)[:detections]
    d = detections
    boxes = torch.zeros(d, 4)
    scores = torch.zeros(d)
    classes = torch.zeros(d, dtype=torch.long)
    masks = torch.zeros(d, 28, 28)
    rank = torch.zeros(d)
    k = keep.numel()
    if g:
        boxes[:k] = t.boxes[keep]
        scores[:k] = 1.0
        classes[:k] = t.classes[keep]
        masks[:k] = mask_targets(t.instance, t.boxes[keep], t.ids[keep])
        rank[:k] = 1.0 / (1.0 + area[keep] / area.max().clamp(min=1.0))
    sem = t.semantic
    cell = torch.where(sem == IGNORE, torch.full_like(sem, num_classes), sem)
    onehot = torch.nn.functional.one_hot(cell, num_classes + 1)[..., :num_classes]
    return {'stuff_prob': onehot.permute(2, 0, 1).float()[None], 'boxes': boxes[None],
            'scores': scores[None], 'classes': classes[None], 'masks': masks[None],
            'rank': rank[None]}
