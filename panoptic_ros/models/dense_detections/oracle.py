"""Perfect raw outputs made from the training targets: the ceiling of targets + inference.

Feeding :func:`oracle_outputs` through ``decode`` and the post-processing shows what the
architecture can represent at a given input size, whatever the network learns: objects lost
here (poles, far persons, bicycle frames on the 1/4 grid) are lost for every trained model.
Used by the tests and by ``benchmarks/oracle_ceiling.py`` to choose the input size.
"""

from __future__ import annotations

import numpy as np
import torch

from panoptic_ros.models.dense_detections.targets import DenseTargets, _offsets, _sample

# Logit magnitude of a certain decision.
_BIG = 20.0


def nearest_instance(instance: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` int64: every pixel labelled with its nearest instance id (as the smooth
    offsets of a network extend beyond an object); all zeros when there is none."""
    import cv2

    inst = instance.numpy()
    if not inst.any():
        return torch.zeros_like(instance, dtype=torch.long)
    _, labels = cv2.distanceTransformWithLabels((inst == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(inst)
    lut = np.zeros(labels.max() + 1, np.int64)
    lut[labels[ys, xs]] = inst[ys, xs]
    return torch.from_numpy(lut[labels])


def oracle_outputs(t: DenseTargets, instance: torch.Tensor, strides, num_things: int,
                   num_classes: int, extend: bool = True) -> dict:
    """Raw outputs (batch 1, the layout of ``UnifiedPanopticHead.forward``) that the targets
    ``t`` of ``instance [H, W]`` call perfect: offsets on every cell to the box of the nearest
    object (``extend=False``: only inside objects), classes, centerness and levelness exactly
    where the targets have them, one-hot semantics."""
    raw = {'box_reg': [], 'centerness': [], 'box_cls': []}
    near = nearest_instance(instance) if extend else instance.long()
    for i, stride in enumerate(strides):
        fg = t.box_class[i] >= 0
        inst = _sample(near, stride, *fg.shape)
        raw['box_reg'].append(_offsets(inst, t.boxes, stride).clamp(min=0)[None])
        raw['centerness'].append(torch.where(fg, _BIG, -_BIG)[None, None])
        cls = torch.full((num_things,) + fg.shape, -_BIG)
        cls[t.box_class[i].clamp(min=0), torch.arange(fg.shape[0])[:, None],
            torch.arange(fg.shape[1])[None]] = torch.where(fg, _BIG, -_BIG)
        raw['box_cls'].append(cls[None])
    raw['levelness'] = torch.nn.functional.one_hot(
        t.levelness, len(strides) + 1).permute(2, 0, 1)[None] * _BIG
    valid = t.semantic < num_classes
    onehot = torch.nn.functional.one_hot(t.semantic.clamp(max=num_classes - 1),
                                         num_classes).permute(2, 0, 1).float() * _BIG
    raw['semantic'] = (onehot * valid)[None]
    return raw
