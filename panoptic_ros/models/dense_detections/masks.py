"""Parameter-free mask construction of dense detections (section 3.2, eq. 5-7)."""

from __future__ import annotations

import torch

_EPS = 1e-6


def box_iou_map(boxes: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """IoU between every pixel's box and each query box (eq. 6).

    Args:
        boxes: ``[4, H, W]`` the global dense boxes ``x1, y1, x2, y2``.
        queries: ``[J, 4]``.

    Returns:
        ``[J, H, W]``.
    """
    q = queries[:, :, None, None]
    iw = (torch.minimum(boxes[2], q[:, 2]) - torch.maximum(boxes[0], q[:, 0])).clamp(min=0)
    ih = (torch.minimum(boxes[3], q[:, 3]) - torch.maximum(boxes[1], q[:, 1])).clamp(min=0)
    inter = iw * ih
    area_p = ((boxes[2] - boxes[0]).clamp(min=0) * (boxes[3] - boxes[1]).clamp(min=0))
    area_q = (q[:, 2] - q[:, 0]).clamp(min=0) * (q[:, 3] - q[:, 1]).clamp(min=0)
    return inter / (area_p[None] + area_q - inter).clamp(min=_EPS)


def construct_masks(boxes: torch.Tensor, semantic_prob: torch.Tensor, queries: torch.Tensor,
                    query_classes: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter-free mask construction (section 3.2, eq. 5-7).

    Args:
        boxes: ``[4, H, W]`` global dense boxes.
        semantic_prob: ``[C, H, W]`` class probabilities.
        queries: ``[J, 4]`` query boxes (after NMS).
        query_classes: ``[J] int64`` semantic class id of each query.
        sigma: threshold on the mask probability (0.3 in the paper, appendix A).

    Returns:
        ``masks [J, H, W] bool`` and ``probability [J, H, W]``.
    """
    prob = box_iou_map(boxes, queries) * semantic_prob[query_classes]
    return prob > sigma, prob
