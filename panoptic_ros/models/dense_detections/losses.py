"""Losses of the dense-detections model (sections 4.2-4.3, eq. 11-19).

``L = L_box_reg + L_center + L_levelness + L_box_cls + lambda L_semantics + L_mask``:

* ``L_box_reg``: IoU loss (-ln IoU, UnitBox) on foreground locations, over ``N_fg`` (eq. 11);
* ``L_center``: BCE on centerness at foreground locations, over ``N_fg`` (eq. 12);
* ``L_box_cls``: sigmoid focal loss (alpha 0.25, gamma 2), averaged over all locations of all
  levels (section 4.2);
* ``L_levelness``: cross-entropy on the 1/4 grid (eq. 13);
* ``L_semantics``: cross-entropy bootstrapped to the worst 30% of pixels (eq. 15);
* ``L_mask``: the explicit mask loss over query boxes (eq. 16-18).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.models.dense_detections.targets import IGNORE, DenseTargets
from panoptic_ros.models.dense_detections.decode import dense_boxes
from panoptic_ros.models.dense_detections.masks import box_iou_map
from panoptic_ros.models.geometry import box_iou, decode_boxes, nms


def iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``-ln IoU`` of boxes given as offsets from the same location.

    Args:
        pred, target: ``[K, 4]`` distances ``l, t, r, b`` (>= 0).

    Returns:
        ``[K]`` losses.
    """
    pred_area = (pred[:, 0] + pred[:, 2]) * (pred[:, 1] + pred[:, 3])
    target_area = (target[:, 0] + target[:, 2]) * (target[:, 1] + target[:, 3])
    w = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 2], target[:, 2])
    h = torch.minimum(pred[:, 1], target[:, 1]) + torch.minimum(pred[:, 3], target[:, 3])
    inter = w * h
    union = pred_area + target_area - inter
    return -torch.log((inter + 1.0) / (union + 1.0))


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al.); ``logits`` and 0/1 ``targets`` of equal shape."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction='none')
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return a_t * (1 - p_t) ** gamma * ce


def bootstrapped_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                               fraction: float = 0.3) -> torch.Tensor:
    """Cross-entropy over the worst ``fraction`` of the labelled pixels (eq. 15).

    Args:
        logits: ``[N, C, H, W]``.
        target: ``[N, H, W]`` class ids, ``IGNORE`` for void.
    """
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction='none').flatten()
    valid = (target != IGNORE).flatten()
    n = int(valid.sum())
    if n == 0:
        return logits.sum() * 0
    k = max(1, int(round(fraction * n)))
    return ce[valid].topk(k).values.mean()


@dataclass(frozen=True)
class LossConfig:
    """Weights and switches (defaults: the paper's Cityscapes settings)."""

    semantic_weight: float = 1.0      # lambda: 1 on Cityscapes, 0.4 on COCO (section 4.3)
    bootstrap_fraction: float = 0.3
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    mask_loss: bool = True            # off in the weakly supervised mode (section 5.6)
    mask_queries: int = 50            # query boxes per image for the mask loss
    mask_nms_threshold: float = 0.6


def dense_detections_loss(raw: dict, targets: list[DenseTargets], strides,
                          config: LossConfig = LossConfig()) -> dict[str, torch.Tensor]:
    """All loss terms for a batch; ``total`` is their weighted sum (eq. 19).

    Args:
        raw: model outputs for ``N`` images (see ``UnifiedPanopticHead.forward``).
        targets: ``N`` targets from :func:`compute_targets` on the network input size.
    """
    device = raw['semantic'].device
    reg_l, ctr_l, n_fg, cls_sum, n_loc = [], [], 0, 0.0, 0
    for lvl in range(len(strides)):
        box_t = torch.stack([t.box[lvl] for t in targets]).to(device)          # [N, 4, h, w]
        cls_t = torch.stack([t.box_class[lvl] for t in targets]).to(device)    # [N, h, w]
        ctr_t = torch.stack([t.centerness[lvl] for t in targets]).to(device)
        fg = cls_t >= 0
        reg_p = raw['box_reg'][lvl].float()
        reg_l.append(iou_loss(reg_p.permute(0, 2, 3, 1)[fg], box_t.permute(0, 2, 3, 1)[fg]))
        ctr_l.append(F.binary_cross_entropy_with_logits(
            raw['centerness'][lvl][:, 0].float()[fg], ctr_t[fg], reduction='none'))
        logits = raw['box_cls'][lvl].float()
        onehot = torch.zeros_like(logits)
        onehot.scatter_(1, cls_t.clamp(min=0)[:, None], fg[:, None].to(logits.dtype))
        cls_sum = cls_sum + sigmoid_focal_loss(logits, onehot, config.focal_alpha,
                                               config.focal_gamma).sum()
        n_fg += int(fg.sum())
        n_loc += fg.numel()
    norm = max(n_fg, 1)
    losses = {
        'box_reg': torch.cat(reg_l).sum() / norm,
        'center': torch.cat(ctr_l).sum() / norm,
        'box_cls': cls_sum / max(n_loc, 1),
    }
    lev_t = torch.stack([t.levelness for t in targets]).to(device)
    losses['levelness'] = F.cross_entropy(raw['levelness'].float(), lev_t)
    sem_t = torch.stack([t.semantic for t in targets]).to(device)
    losses['semantics'] = bootstrapped_cross_entropy(raw['semantic'].float(), sem_t,
                                                     config.bootstrap_fraction)
    losses['mask'] = (mask_loss(raw, targets, strides, config) if config.mask_loss
                      else torch.zeros((), device=device))
    losses['total'] = (losses['box_reg'] + losses['center'] + losses['levelness'] +
                       losses['box_cls'] + config.semantic_weight * losses['semantics'] +
                       losses['mask'])
    return losses


def mask_loss_from_maps(p_loc: torch.Tensor, in_mask: torch.Tensor,
                        beta: torch.Tensor) -> torch.Tensor:
    """Eq. 16-18 for given maps.

    Args:
        p_loc: ``[Q, H, W]`` IoU of every pixel's box with each query box.
        in_mask: ``[Q, H, W] bool`` ground-truth mask of each query's instance.
        beta: ``[Q]`` IoU of each query with its target box.

    Returns:
        ``mean_j beta_j / N_j (E_FP_j + E_FN_j)``.
    """
    n_j = in_mask.flatten(1).sum(1).clamp(min=1)
    e_fp = (p_loc * ~in_mask).flatten(1).sum(1)
    e_fn = ((1 - p_loc) * in_mask).flatten(1).sum(1)
    return (beta / n_j * (e_fp + e_fn)).mean()


def mask_loss(raw: dict, targets: list[DenseTargets], strides,
              config: LossConfig = LossConfig()) -> torch.Tensor:
    """Explicit mask loss (eq. 16-18), averaged over the images' query boxes.

    Queries are the predicted boxes of foreground locations (the ``mask_queries`` best by
    predicted score, after NMS); each is associated with the instance its location was
    assigned to. ``beta_j`` (IoU of query and target box) is a weight without gradient.
    """
    device = raw['semantic'].device
    gboxes = dense_boxes([r.float() for r in raw['box_reg']], raw['levelness'].float())
    terms = []
    for n, t in enumerate(targets):
        boxes, scores, inst = [], [], []
        for lvl, stride in enumerate(strides):
            fg = (t.box_class[lvl] >= 0).to(device).flatten()
            if not fg.any():
                continue
            dec = decode_boxes(raw['box_reg'][lvl][n:n + 1].float(), stride)[0].flatten(1).T
            prob = raw['box_cls'][lvl][n].float().sigmoid().amax(0).flatten()
            ctr = raw['centerness'][lvl][n, 0].float().sigmoid().flatten()
            boxes.append(dec[fg])
            scores.append((prob * ctr)[fg].detach())
            inst.append(t.instance[lvl].to(device).flatten()[fg])
        if not boxes:
            continue
        boxes, scores, inst = torch.cat(boxes), torch.cat(scores), torch.cat(inst)
        keep = nms(boxes.detach(), scores, inst, config.mask_nms_threshold)
        idx = torch.nonzero(keep).flatten()
        idx = idx[scores[idx].argsort(descending=True)][:config.mask_queries]
        q, q_inst = boxes[idx], inst[idx]
        target_boxes = t.boxes.to(device)[q_inst]
        beta = box_iou(q.detach(), target_boxes).diagonal()
        p_loc = box_iou_map(gboxes[n], q)                                    # [Q, h, w]
        in_mask = t.instance_quarter.to(device)[None] == q_inst[:, None, None]
        terms.append(mask_loss_from_maps(p_loc, in_mask, beta))
    if not terms:
        return raw['semantic'].sum() * 0
    return torch.stack(terms).mean()
