"""Losses of OANet (eq. 1-2): ``L = L_rpn.cls + L_rpn.bbox + L_cls + L_bbox + L_mask +
lambda L_seg + L_srm`` with ``lambda = 0.25`` (Tab. 1; 1 "could not converge").

* RPN (Faster R-CNN): anchors labelled by IoU (>= 0.7 foreground, < 0.3 background, each
  ground truth's best anchors foreground), ``rpn_batch`` sampled per image, half foreground at
  most; BCE on the sampled objectness logits and L1 on the foreground deltas, both divided by
  the number sampled.
* Box head (Fast R-CNN): proposals plus the ground-truth boxes, labelled at IoU 0.5,
  ``roi_batch`` per image with a quarter foreground; cross-entropy over ``T + 1`` classes and
  L1 on the foreground's class-specific deltas (weights 10, 10, 5, 5), divided by the number
  sampled.
* Mask head: per-pixel BCE of the ground-truth class's 28x28 logits on the foreground RoIs
  ("average binary cross-entropy"); the target of a mask cell is whether at least half of its
  2x2 samples of the RoI fall on the instance.
* Stuff branch: cross-entropy over all ``C`` classes ("stuff + object") at stride 4, void
  ignored.
* Spatial ranking (eq. 2): cross-entropy of the ranking map over the thing channels on the
  cells where instance masks of different classes overlap, the label being the visible
  (panoptic) thing class there; other cells are ignored. The module's input holds the
  ground-truth masks of the sampled foreground RoIs' instances and their predicted masks
  (detached, at 0.5): the panoptic ground truth does not overlap, the predictions do where the
  network must decide (the notes' option; the paper trains on overlapping COCO instances).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from panoptic_ros.models.geometry import box_iou
from panoptic_ros.models.oanet.boxes import encode, flatten_level, match, sample
from panoptic_ros.models.oanet.model import BOX_WEIGHTS, STRIDE, OANet
from panoptic_ros.models.oanet.paste import paste_masks
from panoptic_ros.models.oanet.targets import IGNORE, OATargets


@dataclass(frozen=True)
class LossConfig:
    """Loss weights and sampling (defaults: the paper's and Mask R-CNN's)."""

    stuff_weight: float = 0.25          # lambda (Tab. 1)
    srm_weight: float = 1.0
    rpn_batch: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_iou: tuple = (0.3, 0.7)         # background below, foreground from
    roi_batch: int = 512
    roi_positive_fraction: float = 0.25
    roi_iou: float = 0.5
    pre_nms_topk: int = 2000            # training proposals per level
    post_nms_topk: int = 1000           # training proposals per image


def mask_targets(instance: torch.Tensor, boxes: torch.Tensor, ids: torch.Tensor,
                 size: int = 28) -> torch.Tensor:
    """Mask targets of RoIs: ``instance [H, W]`` id image, ``boxes [R, 4]`` RoIs, ``ids [R]``
    the matched instance's id -> ``[R, size, size]`` float 0/1 (2x2 nearest samples per cell,
    at least half on the instance)."""
    hh, ww = instance.shape
    steps = (torch.arange(2 * size, device=boxes.device, dtype=torch.float32) + 0.5) / (2 * size)
    xs = boxes[:, 0:1] + steps * (boxes[:, 2:3] - boxes[:, 0:1])           # [R, 2 size]
    ys = boxes[:, 1:2] + steps * (boxes[:, 3:4] - boxes[:, 1:2])
    xi = xs.floor().long().clamp(0, ww - 1)
    yi = ys.floor().long().clamp(0, hh - 1)
    vals = instance.long()[yi[:, :, None], xi[:, None, :]]                 # [R, 2s, 2s]
    hit = (vals == ids[:, None, None]).float()
    return (F.avg_pool2d(hit[:, None], 2)[:, 0] >= 0.5).float()


def rpn_loss(raw: dict, model: OANet, targets: list[OATargets],
             cfg: LossConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """RPN objectness and box losses, summed over images / total sampled anchors."""
    anchors = torch.cat(model.anchors(raw), 0)
    logits = torch.cat([flatten_level(x, 1)[..., 0] for x in raw['rpn_logits']], 1).float()
    deltas = torch.cat([flatten_level(x, 4) for x in raw['rpn_deltas']], 1).float()
    cls_sum = logits.new_zeros(())
    box_sum = logits.new_zeros(())
    count = 0
    for n, tg in enumerate(targets):
        gt = tg.boxes.to(anchors.device)
        labels, matched = match(box_iou(gt, anchors), cfg.rpn_iou[1], cfg.rpn_iou[0],
                                low_quality=True)
        pos, neg = sample(labels, cfg.rpn_batch, cfg.rpn_positive_fraction)
        idx = torch.cat([pos, neg])
        y = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).float()
        cls_sum = cls_sum + F.binary_cross_entropy_with_logits(logits[n, idx], y,
                                                               reduction='sum')
        if pos.numel():
            want = encode(gt[matched[pos]], anchors[pos])
            box_sum = box_sum + (deltas[n, pos] - want).abs().sum()
        count += idx.numel()
    count = max(count, 1)
    return cls_sum / count, box_sum / count


def roi_losses(raw: dict, model: OANet, targets: list[OATargets],
               cfg: LossConfig) -> dict[str, torch.Tensor]:
    """Box classification, box regression, mask and spatial ranking losses."""
    feats = raw['features']
    device = feats[0].device
    props = model.proposals(raw, cfg.pre_nms_topk, cfg.post_nms_topk)
    rois, labels, reg, fg_rois, fg_cls, fg_ids = [], [], [], [], [], []
    for n, tg in enumerate(targets):
        gt = tg.boxes.to(device)
        p = props[n]
        p = torch.cat([p[(p[:, 2] - p[:, 0]) > 0], gt])
        lab, matched = match(box_iou(gt, p), cfg.roi_iou, cfg.roi_iou, low_quality=False)
        pos, neg = sample(lab, cfg.roi_batch, cfg.roi_positive_fraction)
        idx = torch.cat([pos, neg])
        cls = torch.zeros(idx.numel(), dtype=torch.long, device=device)
        if pos.numel():
            cls[:pos.numel()] = tg.classes.to(device)[matched[pos]] + 1
        rois.append(torch.cat([torch.full((idx.numel(), 1), float(n), device=device),
                               p[idx]], 1))
        labels.append(cls)
        reg.append(encode(gt[matched[pos]], p[pos], BOX_WEIGHTS) if pos.numel()
                   else p.new_zeros((0, 4)))
        fg_rois.append(rois[-1][:pos.numel()])
        fg_cls.append(cls[:pos.numel()] - 1)
        fg_ids.append(tg.ids.to(device)[matched[pos]])
    rois_all, labels_all = torch.cat(rois), torch.cat(labels)
    logits, deltas = model.box_head(feats, rois_all, static=False)
    sampled = max(labels_all.numel(), 1)
    loss_cls = F.cross_entropy(logits.float(), labels_all, reduction='sum') / sampled
    fg = labels_all > 0
    want = torch.cat(reg)
    got = deltas.float()[fg, labels_all[fg] - 1]
    loss_box = (got - want).abs().sum() / sampled
    fg_r, fg_c = torch.cat(fg_rois), torch.cat(fg_cls)
    zero = logits.sum() * 0
    if fg_r.shape[0] == 0:
        return {'box_cls': loss_cls, 'box_reg': loss_box, 'mask': zero, 'srm': zero}
    mlog = model.mask_logits(feats, fg_r, static=False).float()
    mlog = mlog[torch.arange(fg_c.numel(), device=device), fg_c]               # [R, 28, 28]
    mtarget = torch.cat([mask_targets(tg.instance.to(device), r[:, 1:], i)
                         for tg, r, i in zip(targets, fg_rois, fg_ids)])
    loss_mask = F.binary_cross_entropy_with_logits(mlog, mtarget)
    return {'box_cls': loss_cls, 'box_reg': loss_box, 'mask': loss_mask,
            'srm': srm_loss(raw, model, targets, fg_rois, fg_cls, fg_ids, mlog)}


def srm_loss(raw: dict, model: OANet, targets: list[OATargets], fg_rois: list[torch.Tensor],
             fg_cls: list[torch.Tensor], fg_ids: list[torch.Tensor],
             mask_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on the cells where masks of different thing classes conflict."""
    h, w = raw['stuff'].shape[-2:]
    t = len(model.thing_classes)
    device = mask_logits.device
    pred = (mask_logits.detach().sigmoid() > 0.5).float()
    tensors, labels, start = [], [], 0
    for tg, r, c, ids in zip(targets, fg_rois, fg_cls, fg_ids):
        m = pred[start:start + r.shape[0]]
        start += r.shape[0]
        pasted = paste_masks(m[None], r[None, :, 1:], (h, w), STRIDE)[0] > 0.5    # [R, h, w]
        # the ground-truth masks of the matched instances, on the same cells
        gt = tg.cell_ids.to(device)[None] == ids[:, None, None]
        tensor = torch.einsum('rt,rhw->thw', F.one_hot(c, t).float(),
                              (pasted | gt).float()).clamp(max=1)
        things = tg.things.to(device)
        conflict = (tensor.sum(0) >= 2) & (things >= 0)
        tensors.append(tensor)
        labels.append(torch.where(conflict, things, torch.full_like(things, IGNORE)))
    logits = model.srm(torch.stack(tensors))
    lab = torch.stack(labels)
    n_conf = int((lab != IGNORE).sum())
    if n_conf == 0:
        return logits.sum() * 0
    return F.cross_entropy(logits.float(), lab, ignore_index=IGNORE)


def oanet_loss(raw: dict, targets: list[OATargets], cfg: LossConfig) -> dict[str, torch.Tensor]:
    """All terms of eq. 1 and their weighted sum ``total``."""
    model: OANet = raw['heads']
    device = raw['stuff'].device
    rpn_cls, rpn_box = rpn_loss(raw, model, targets, cfg)
    roi = roi_losses(raw, model, targets, cfg)
    sem = torch.stack([tg.semantic for tg in targets]).to(device)
    stuff = F.cross_entropy(raw['stuff'].float(), sem, ignore_index=IGNORE)
    total = (rpn_cls + rpn_box + roi['box_cls'] + roi['box_reg'] + roi['mask']
             + cfg.stuff_weight * stuff + cfg.srm_weight * roi['srm'])
    return {'total': total, 'rpn_cls': rpn_cls, 'rpn_box': rpn_box, **roi, 'stuff': stuff}
