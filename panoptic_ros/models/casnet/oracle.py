"""Perfect raw outputs made from the training targets: the ceiling of targets + inference.

:func:`oracle_outputs` gives the stride-4 maps (the layout of ``CASNet.forward``) that a network
reproducing its targets would produce: semantic logits saying each cell's class (the class of
the pixel the cell looks at), the target distances, and box logits certain of the centre
regions. Fed through ``decode`` and the post-processing, they show what the architecture can
represent at an input size; the tests use them, and so does the ground-truth-semantics upper
bound (paper Tab. IV).
"""

from __future__ import annotations

import torch

from panoptic_ros.models.casnet.targets import IGNORE, CASTargets
from panoptic_ros.models.geometry import locations

# Logit magnitude of a certain decision.
_BIG = 20.0


def semantic_logits(semantic: torch.Tensor, num_classes: int, stride: int = 4) -> torch.Tensor:
    """``[1, C, h, w]`` logits certain of the class of each cell's pixel of ``semantic [H, W]``
    (``IGNORE`` cells get all classes unlikely)."""
    hh, ww = semantic.shape
    h, w = -(-hh // stride), -(-ww // stride)
    loc = locations(h, w, stride, semantic.device).long()
    cell = semantic[loc[1].clamp(max=hh - 1), loc[0].clamp(max=ww - 1)].long()
    cell = torch.where(cell == IGNORE, torch.full_like(cell, num_classes), cell)
    onehot = torch.nn.functional.one_hot(cell, num_classes + 1)[..., :num_classes]
    return ((onehot.permute(2, 0, 1).float() * 2 - 1) * _BIG)[None]


def oracle_outputs(t: CASTargets, num_classes: int, stride: int = 4) -> dict:
    """Raw outputs (batch 1) that the targets ``t`` call perfect.

    Returns:
        ``semantic [1, C, h, w]``, ``distances [1, 4, h, w]`` strides, ``box_logits [1, T,
        h, w]``.
    """
    return {'semantic': semantic_logits(t.semantic, num_classes, stride),
            'distances': t.distances[None].clone(),
            'box_logits': ((t.box_prob * 2 - 1) * _BIG)[None]}
