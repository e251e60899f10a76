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


def vote_classes(iou: torch.Tensor, semantic_prob: torch.Tensor,
                 thing_classes: torch.Tensor) -> torch.Tensor:
    """Each query's thing class as the semantic head sees it: the class with the largest sum of
    semantic probability over the pixels, each weighted by its box's IoU with the query (eq. 6).

    Not in the paper, whose queries keep their detection class: a query whose box is right but
    whose class is wrong gets an empty mask from eq. 5 (the semantic head gives its pixels
    little probability of that class) and its object is lost.

    Args:
        iou: ``[J, H, W]`` from :func:`box_iou_map`.
        semantic_prob: ``[C, H, W]``.
        thing_classes: ``[T] int64`` the semantic class ids of the thing classes.

    Returns:
        ``[J] int64`` semantic class ids, all thing classes.
    """
    votes = torch.einsum('jhw,thw->jt', iou, semantic_prob[thing_classes])
    return thing_classes[votes.argmax(1)]


def construct_masks(iou: torch.Tensor, semantic_prob: torch.Tensor, query_classes: torch.Tensor,
                    sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Parameter-free mask construction (section 3.2, eq. 5-7).

    Args:
        iou: ``[J, H, W]`` IoU of each pixel's box with each query box after NMS
            (:func:`box_iou_map`).
        semantic_prob: ``[C, H, W]`` class probabilities.
        query_classes: ``[J] int64`` semantic class id of each query.
        sigma: threshold on the mask probability (0.3 in the paper, appendix A).

    Returns:
        ``masks [J, H, W] bool`` and ``probability [J, H, W]``.
    """
    prob = iou * semantic_prob[query_classes]
    return prob > sigma, prob
