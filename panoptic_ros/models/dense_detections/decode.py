"""The dense-detections decoding inside the exported graph (sections 3.2 and 4.1): the global
dense box map from levelness (eq. 14) and per-level detection candidates with static shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from panoptic_ros.models.geometry import decode_boxes


def dense_boxes(box_reg: list[torch.Tensor], levelness: torch.Tensor) -> torch.Tensor:
    """The global dense box map (eq. 14) on the levelness grid (stride 4).

    Each level's offsets ``(l, t, r, b)`` are upsampled bilinearly to the grid (offsets vary
    linearly across an object, so coarse levels still give sharp boxes), each pixel takes the
    level its levelness ranks first among the FPN levels, and offsets are decoded at the grid
    locations. Background is left to the semantic probabilities of eq. 5.

    Args:
        box_reg: ``L`` tensors ``[N, 4, h_i, w_i]``.
        levelness: ``[N, L + 1, H, W]`` logits; channel 0 is background.

    Returns:
        ``[N, 4, H, W]`` boxes ``x1, y1, x2, y2``.
    """
    size = levelness.shape[-2:]
    up = torch.stack([F.interpolate(r, size=size, mode='bilinear', align_corners=False)
                      for r in box_reg], 1)                             # [N, L, 4, H, W]
    level = levelness[:, 1:].argmax(dim=1)                              # [N, H, W]
    pick = level[:, None, None].expand(-1, 1, 4, -1, -1)
    return decode_boxes(up.gather(1, pick).squeeze(1), stride=4)


def level_candidates(box_reg: list[torch.Tensor], box_cls: list[torch.Tensor],
                     centerness: list[torch.Tensor], strides, threshold: float,
                     topk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detection candidates from every level (FCOS-style, section 4.1), with static shapes.

    A (location, class) pair is a candidate when its class probability exceeds
    ``threshold``; its score is that probability times the centerness probability; each level
    keeps its ``min(topk, T h_i w_i)`` best. Shapes depend only on the input size, so the
    function exports to ONNX (TopK, Gather, Where); slots that are not candidates have score 0.

    Args:
        box_reg, box_cls, centerness: per level ``[N, 4, h, w]``, ``[N, T, h, w]``,
            ``[N, 1, h, w]``.

    Returns:
        ``boxes [N, K, 4]`` (``x1, y1, x2, y2``), ``scores [N, K]`` (0: no candidate),
        ``classes [N, K] int64`` (box class ``0..T-1``); boxes and classes are 0 where the
        score is 0.
    """
    boxes, scores, classes = [], [], []
    for reg, cls, ctr, stride in zip(box_reg, box_cls, centerness, strides):
        n, t, h, w = cls.shape
        prob = cls.float().sigmoid()
        score = prob * ctr.float().sigmoid()                           # [N, T, h, w]
        score = torch.where(prob > threshold, score, torch.zeros_like(score)).flatten(1)
        top, idx = score.topk(min(topk, t * h * w), dim=1)             # [N, k]
        loc = idx % (h * w)
        dec = decode_boxes(reg.float(), stride).flatten(2)            # [N, 4, h*w]
        # empty slots (score 0) hold zeros: which of several tied empty slots top-k picks
        # is unspecified, so their boxes and classes would differ between engines
        full = top > 0
        box = dec.gather(2, loc[:, None].expand(-1, 4, -1)).transpose(1, 2)
        boxes.append(torch.where(full[..., None], box, torch.zeros_like(box)))
        scores.append(top)
        cls_idx = torch.div(idx, h * w, rounding_mode='floor')
        classes.append(torch.where(full, cls_idx, torch.zeros_like(cls_idx)))
    return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(classes, 1)
