"""Box machinery of the OANet instance branch (Mask R-CNN, He et al. 2017; Faster R-CNN, Ren et
al. 2015): anchors per FPN level, box-delta coding, IoU matching, balanced sampling, and NMS with
a fixed number of rounds that exports with static shapes.

Pure torch on the inputs' device. Boxes are ``x1, y1, x2, y2`` in input-image pixels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from panoptic_ros.models.geometry import box_iou

# Faster R-CNN clamps log-scale deltas so that exp() stays finite: log(1000 / 16)
DELTA_CLAMP = math.log(1000.0 / 16)


def cell_anchors(size: float, ratios: Sequence[float]) -> torch.Tensor:
    """The ``A = len(ratios)`` anchors of one cell, centred on 0: ``[A, 4]``; each has area
    ``size ** 2`` and height / width = ratio."""
    r = torch.tensor([float(x) for x in ratios])
    w = size / torch.sqrt(r)
    h = size * torch.sqrt(r)
    return torch.stack([-w / 2, -h / 2, w / 2, h / 2], 1)


def level_anchors(height: int, width: int, stride: int, size: float, ratios: Sequence[float],
                  device=None) -> torch.Tensor:
    """Anchors of one level, ``[height * width * A, 4]``, ordered (y, x, anchor): the order of a
    head output ``[N, A, h, w]`` flattened by :func:`flatten_level`. Cell centres are at
    ``(i + 0.5) * stride`` as :func:`panoptic_ros.models.geometry.locations` puts them."""
    base = cell_anchors(size, ratios).to(device)
    ys = torch.arange(height, device=device, dtype=torch.float32) * stride + stride // 2
    xs = torch.arange(width, device=device, dtype=torch.float32) * stride + stride // 2
    cy, cx = torch.meshgrid(ys, xs, indexing='ij')
    shift = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
    return (shift + base[None]).reshape(-1, 4)


def flatten_level(x: torch.Tensor, per_anchor: int) -> torch.Tensor:
    """``[N, A * per_anchor, h, w]`` head output -> ``[N, h * w * A, per_anchor]`` in the
    (y, x, anchor) order of :func:`level_anchors`."""
    n, c, h, w = x.shape
    a = c // per_anchor
    return x.view(n, a, per_anchor, h, w).permute(0, 3, 4, 1, 2).reshape(n, h * w * a,
                                                                         per_anchor)


def encode(boxes: torch.Tensor, reference: torch.Tensor,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Regression targets ``(dx, dy, dw, dh)`` of ``boxes`` relative to ``reference`` (both
    ``[K, 4]``), scaled by ``weights`` (Faster R-CNN's parametrisation, eq. 2)."""
    rw = reference[:, 2] - reference[:, 0]
    rh = reference[:, 3] - reference[:, 1]
    rx = reference[:, 0] + 0.5 * rw
    ry = reference[:, 1] + 0.5 * rh
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    bx = boxes[:, 0] + 0.5 * bw
    by = boxes[:, 1] + 0.5 * bh
    wx, wy, ww, wh = weights
    return torch.stack([wx * (bx - rx) / rw, wy * (by - ry) / rh,
                        ww * torch.log(bw / rw), wh * torch.log(bh / rh)], 1)


def decode(deltas: torch.Tensor, reference: torch.Tensor,
           weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Inverse of :func:`encode`: ``deltas [..., 4]`` on ``reference [..., 4]`` (broadcast) ->
    boxes ``[..., 4]``; ``dw, dh`` are clamped at :data:`DELTA_CLAMP`."""
    rw = reference[..., 2] - reference[..., 0]
    rh = reference[..., 3] - reference[..., 1]
    rx = reference[..., 0] + 0.5 * rw
    ry = reference[..., 1] + 0.5 * rh
    wx, wy, ww, wh = weights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=DELTA_CLAMP)
    dh = (deltas[..., 3] / wh).clamp(max=DELTA_CLAMP)
    cx, cy = rx + dx * rw, ry + dy * rh
    w, h = rw * torch.exp(dw), rh * torch.exp(dh)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)


def clip_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boxes ``[..., 4]`` clipped to the image ``[0, width] x [0, height]``."""
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def match(iou: torch.Tensor, high: float, low: float,
          low_quality: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Label candidates by their best IoU with the ground truth (Faster R-CNN section 3.1.2).

    Args:
        iou: ``[G, K]`` IoU of ``G`` ground-truth boxes with ``K`` candidates (``G`` may be 0).
        high, low: a candidate is foreground at IoU >= ``high``, background below ``low``,
            ignored in between.
        low_quality: also make each ground truth's best candidates foreground (every IoU
            equal to its maximum, when that maximum is above 0), as the RPN does.

    Returns:
        ``labels [K] int64``: 1 foreground, 0 background, -1 ignored; ``matched [K] int64``:
        the ground-truth index of each candidate (0 where ``G`` is 0).
    """
    k = iou.shape[1]
    if iou.shape[0] == 0:
        return (torch.zeros(k, dtype=torch.long, device=iou.device),
                torch.zeros(k, dtype=torch.long, device=iou.device))
    best, matched = iou.max(0)
    labels = torch.full((k,), -1, dtype=torch.long, device=iou.device)
    labels[best < low] = 0
    labels[best >= high] = 1
    if low_quality:
        top = iou.max(1, keepdim=True).values
        labels[((iou == top) & (top > 0)).any(0)] = 1
    return labels, matched


def sample(labels: torch.Tensor, num: int, positive_fraction: float,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced random sampling of labelled candidates (Faster R-CNN: 256 anchors, half
    positive; Fast R-CNN: 512 RoIs, a quarter positive).

    Args:
        labels: ``[K]`` 1 foreground, 0 background, -1 ignored.
        num: candidates to take; ``positive_fraction`` of them at most are foreground, the rest
            background (fewer when there are not enough).

    Returns:
        Indices of the sampled foreground and background candidates (``int64``).
    """
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(pos.numel(), int(num * positive_fraction))
    n_neg = min(neg.numel(), num - n_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator, device='cpu')[:n_pos]
              .to(labels.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator, device='cpu')[:n_neg]
              .to(labels.device)]
    return pos, neg


def static_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, rounds: int,
               classes: torch.Tensor | None = None,
               valid: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy NMS as ``rounds`` steps of its fixed point, with static shapes (exportable).

    Candidates must be sorted by decreasing score. Greedy NMS keeps candidate ``j`` when no
    kept, higher-scoring candidate of its class overlaps it by more than ``iou_threshold``;
    ``keep <- valid & ~any_i(keep_i & suppresses_ij)`` reaches that answer in at most as many
    rounds as the longest chain of suppressions (a suppressed box that would itself have
    suppressed another): after ``t`` rounds the first ``t`` candidates are settled, and chains
    longer than 2-3 are rare in detection outputs. With ``rounds`` at least the candidate count
    the result is exactly :func:`panoptic_ros.models.geometry.nms`'s.

    Args:
        boxes: ``[N, K, 4]``, sorted by decreasing ``scores [N, K]`` (ties: any order).
        iou_threshold: IoU above which the higher-scoring box suppresses.
        rounds: fixed-point steps (the graph unrolls them).
        classes: ``[N, K]`` integer classes; boxes of different classes never suppress each
            other (``None``: class-agnostic).
        valid: ``[N, K] bool`` candidates; others are neither kept nor suppress.

    Returns:
        ``[N, K] bool`` kept.
    """
    n, k, _ = boxes.shape
    iou = box_iou(boxes, boxes)                                          # [N, K, K]
    upper = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)
    suppress = (iou > iou_threshold) & upper
    if classes is not None:
        suppress = suppress & (classes[:, :, None] == classes[:, None, :])
    ok = (torch.ones(n, k, dtype=torch.bool, device=boxes.device) if valid is None
          else valid.bool())
    sup = suppress.float()
    keep = ok
    for _ in range(rounds):
        # [N, 1, K] @ [N, K, K]: how many kept candidates suppress each one
        hits = torch.bmm(keep.float()[:, None], sup)[:, 0]
        keep = ok & (hits < 0.5)
    return keep

