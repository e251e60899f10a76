"""CASNet's instance inference (section III-C) as fixed-K tensor operations.

1. Seeds: the ``K`` highest box probabilities over every thing channel and cell (after an
   optional ``k x k`` max-pool peak test), kept when above a threshold (0.5, "e.g." in the
   paper), then class-wise NMS on the boxes their cells predict.
2. Voting: every cell whose semantic argmax is a thing class predicts a box; it votes for the
   same-class seed whose box has the highest IoU with its own. When several seeds are within
   ``tie`` of that best IoU ("approximate the same"), the one whose box centre is nearest to
   the centre of the cell's box wins. A cell with no same-class seed overlapping its box gets
   no instance. ``mode='centre'`` is the ablation: every cell goes to the same-class seed with
   the nearest box centre, IoU ignored.
3. Support: seeds no cell voted for are dropped. Every cell ends with at most one instance:
   no overlaps by construction.

No loop over seeds or cells; the only loops are the NMS fixed point (``K`` iterations at most,
a handful in practice) and chunks of ``budget`` cell-seed pairs at a time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from panoptic_ros.models.geometry import box_iou, nms

DEFAULT_BUDGET = 1 << 22          # cell-seed pairs per chunk (16 MiB of float32)


def select_seeds(box_prob: torch.Tensor, boxes: torch.Tensor, *, k: int, threshold: float,
                 nms_iou: float, peak_kernel: int = 1) -> dict[str, torch.Tensor]:
    """Step 1 for one image.

    Args:
        box_prob: ``[T, h, w]`` box probabilities.
        boxes: ``[4, h, w]`` every cell's box, ``x1, y1, x2, y2``.
        k: seeds considered (fixed; fewer when the grid has fewer cells).
        threshold: a seed's probability must exceed it.
        nms_iou: a seed is suppressed by a kept, more probable seed of its class whose box
            overlaps more than this.
        peak_kernel: 1 (off) or an odd size: only local maxima of their channel are seeds.

    Returns:
        ``score [K]``, ``thing [K] int64`` (channel), ``cell [K] int64`` (``i w + j``),
        ``box [K, 4]`` and ``valid [K] bool`` (above threshold and kept by NMS).
    """
    t, h, w = box_prob.shape
    prob = box_prob.float()
    if peak_kernel > 1:
        peak = F.max_pool2d(prob[None], peak_kernel, 1, peak_kernel // 2)[0]
        prob = torch.where(prob >= peak, prob, torch.zeros_like(prob))
    k = min(k, t * h * w)
    score, idx = prob.flatten().topk(k)
    thing, cell = idx // (h * w), idx % (h * w)
    box = boxes.flatten(1).index_select(1, cell).T.float()
    valid = score > threshold
    valid = nms(box, score, thing, nms_iou, valid)
    return {'score': score, 'thing': thing, 'cell': cell, 'box': box, 'valid': valid}


def vote(cell_boxes: torch.Tensor, cell_thing: torch.Tensor, seed_boxes: torch.Tensor,
         seed_thing: torch.Tensor, seed_valid: torch.Tensor, *, tie: float = 0.05,
         mode: str = 'iou', budget: int = DEFAULT_BUDGET) -> torch.Tensor:
    """Step 2: the seed each cell votes for.

    Args:
        cell_boxes: ``[P, 4]`` boxes the cells predict; ``cell_thing``: ``[P] int64`` their
            thing channel (semantic argmax).
        seed_boxes: ``[K, 4]``; ``seed_thing``: ``[K] int64``; ``seed_valid``: ``[K] bool``.
        tie: IoUs within this of the best are ties, decided by centre distance.
        mode: ``iou`` (the paper) or ``centre`` (nearest box centre, the ablation).

    Returns:
        ``[P] int64`` seed index, -1 for none.
    """
    p, k = cell_boxes.shape[0], seed_boxes.shape[0]
    out = torch.full((p,), -1, dtype=torch.long, device=cell_boxes.device)
    if p == 0 or k == 0:
        return out
    seed_c = (seed_boxes[:, :2] + seed_boxes[:, 2:]) / 2
    step = max(1, budget // k)
    for start in range(0, p, step):
        b = cell_boxes[start:start + step].float()
        ok = (cell_thing[start:start + step, None] == seed_thing[None]) & seed_valid[None]
        c = (b[:, :2] + b[:, 2:]) / 2
        d2 = ((c[:, None] - seed_c[None]) ** 2).sum(-1)
        inf = torch.full_like(d2, float('inf'))
        if mode == 'centre':
            d2 = torch.where(ok, d2, inf)
            best_d, choice = d2.min(1)
            out[start:start + step] = torch.where(torch.isfinite(best_d), choice,
                                                  torch.full_like(choice, -1))
            continue
        iou = torch.where(ok, box_iou(b, seed_boxes), torch.full_like(d2, -1.0))
        best = iou.max(1).values
        cand = iou >= (best - tie)[:, None]
        choice = torch.where(cand, d2, inf).argmin(1)
        out[start:start + step] = torch.where(best > 0, choice, torch.full_like(choice, -1))
    return out
