"""The OANet network (section 3, Fig. 2-4): one ResNet-FPN, a Mask R-CNN instance branch, a
stuff branch and the spatial ranking module.

* Trunk: backbone (a name from :mod:`panoptic_ros.models.backbones`; ResNet-50/101 in the
  paper) -> FPN ``P2..P5`` (:class:`~panoptic_ros.models.necks.semantic_fpn.TopDownFPN`) and
  ``P6`` (max-pooled ``P5``, as Mask R-CNN's FPN) -> a shared 3x3 conv + ReLU, "the 3x3
  convolution layer before the RPN head" up to which both branches share everything
  (section 3.1, Tab. 4 "+skip"): the RPN feature maps ``R2..R6``.
* Instance branch (Mask R-CNN): RPN 1x1 objectness and box deltas per anchor on ``R2..R6``
  (one anchor size per level, three aspect ratios); RoIAlign on ``P2..P5`` by box size (FPN
  eq. 1); box head (7x7 RoIAlign, 2 FC, class scores and class-specific deltas); mask head
  (14x14 RoIAlign, ``mask_convs`` 3x3 convs, a 2x deconv, 28x28 per class).
* Stuff branch (Fig. 3): per level ``R2..R5`` two 3x3 convs, upsampled to stride 4 and
  concatenated, a 3x3 conv and a 1x1 conv to all ``C`` classes (stuff and things: "stuff +
  object", Tab. 2).
* Spatial ranking module (section 3.2, Fig. 4): the binary instance masks in per-thing-class
  channels at stride 4, a large-kernel conv ``(1xk -> kx1) + (kx1 -> 1xk)`` (k = 7, Tab. 5)
  from ``T`` to ``T`` channels, softmax over the thing channels: the ranking score map.

``forward`` returns the trunk's maps and the dense heads' raw outputs (and, for training, the
module itself under ``heads``: the RoI heads run on proposals that the objective samples
against the ground truth). :meth:`OANet.decode` is the rest of inference with static shapes,
the end of the exported graph: proposals (per-level top-k, NMS, top-k), box head, detections
(class-wise NMS, top ``detections``), mask head, pasted masks, ranking scores (eq. 3).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from panoptic_ros.errors import PanopticError
from panoptic_ros.models.backbones import build_backbone, get_backbone
from panoptic_ros.models.backbones.norm import PixelNormalize
from panoptic_ros.models.necks.semantic_fpn import TopDownFPN, conv_gn_relu
from panoptic_ros.models.oanet.boxes import (clip_boxes, decode, flatten_level, level_anchors,
                                             static_nms)
from panoptic_ros.models.oanet.paste import paste_masks
from panoptic_ros.models.oanet.roi_align import multilevel_roi_align

STRIDE = 4                              # stuff branch and ranking module grid
RPN_STRIDES = (4, 8, 16, 32, 64)        # P2..P6
ROI_STRIDES = (4, 8, 16, 32)            # P2..P5
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)    # Fast R-CNN's box-delta scaling


def _with_image_index(boxes: torch.Tensor) -> torch.Tensor:
    """``[N, K, 4]`` boxes per image -> ``[N K, 5]`` RoIs ``(image index, x1, y1, x2, y2)``."""
    n, k, _ = boxes.shape
    image = torch.arange(n, device=boxes.device, dtype=boxes.dtype)
    return torch.cat([image[:, None, None].expand(-1, k, 1), boxes], -1).view(-1, 5)


class LargeKernel(nn.Module):
    """Global-convolution block (Peng et al., the paper's ref. [34]): ``(1xk -> kx1) +
    (kx1 -> 1xk)``, no normalisation or activation; ``[N, C_in, h, w] -> [N, C_out, h, w]``."""

    def __init__(self, in_channels: int, out_channels: int, k: int) -> None:
        super().__init__()
        if k < 1 or k % 2 == 0:
            raise PanopticError(f'srm_kernel must be a positive odd size, got {k!r}')
        p = k // 2
        self.a1 = nn.Conv2d(in_channels, out_channels, (1, k), padding=(0, p))
        self.a2 = nn.Conv2d(out_channels, out_channels, (k, 1), padding=(p, 0))
        self.b1 = nn.Conv2d(in_channels, out_channels, (k, 1), padding=(p, 0))
        self.b2 = nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a2(self.a1(x)) + self.b2(self.b1(x))


class OANet(nn.Module):
    """Mask R-CNN + stuff branch + spatial ranking on one FPN; normalisation in the graph.

    Args:
        num_classes: semantic classes ``C`` (the stuff branch's outputs).
        thing_classes: class ids with instances, ``T`` of them, in the order of the box and
            mask classes and the ranking channels.
        backbone, backbone_weights, pretrained, frozen_bn, frozen_stages: see
            :func:`~panoptic_ros.models.backbones.build_backbone`.
        fpn_channels: FPN and RPN-feature channels (256 in Mask R-CNN).
        stuff_channels: the stuff branch's convs (the paper gives none; 128).
        box_fc: width of the box head's two FC layers (1024 in Mask R-CNN).
        mask_convs, mask_channels: the mask head's 3x3 convs (4 x 256 in Mask R-CNN).
        anchor_sizes: one anchor size per level ``P2..P6`` (32..512 in Mask R-CNN).
        anchor_ratios: anchor height / width ratios (0.5, 1, 2).
        pre_nms_topk: proposals per level before NMS at inference (1000).
        post_nms_topk: proposals kept after NMS at inference (1000).
        rpn_nms: RPN NMS IoU (0.7).
        detections: detections per image (100, section 4.2).
        det_nms: class-wise NMS IoU of the detections (0.5).
        det_candidates: class-box candidates going into the detection NMS (top by score).
        min_score: class score below which a candidate is not a detection (0.05, as Mask
            R-CNN's test threshold).
        srm_threshold: detection score from which an instance goes into the ranking module's
            input (the instances the panoptic fusion pastes; 0.5).
        nms_rounds: fixed-point rounds of every NMS (:func:`~.boxes.static_nms`).
        srm_kernel: the ranking module's large kernel (7: "1x7 + 7x1", Tab. 5).
        sampling_ratio: RoIAlign samples per bin side (2; Mask R-CNN's adaptive 0 does not
            export).
        gn_groups: GroupNorm groups of the FPN and the stuff branch.
    """

    output_names = ('stuff_prob', 'boxes', 'scores', 'classes', 'masks', 'rank')
    stride = STRIDE

    def __init__(self, *, num_classes: int, thing_classes: Sequence[int] = (),
                 backbone: str = 'resnet50', backbone_weights: str | None = None,
                 pretrained: bool = False, frozen_bn: bool | None = None,
                 frozen_stages: int | None = None, fpn_channels: int = 256,
                 stuff_channels: int = 128, box_fc: int = 1024, mask_convs: int = 4,
                 mask_channels: int = 256,
                 anchor_sizes: Sequence[float] = (32, 64, 128, 256, 512),
                 anchor_ratios: Sequence[float] = (0.5, 1.0, 2.0), pre_nms_topk: int = 1000,
                 post_nms_topk: int = 1000, rpn_nms: float = 0.7, detections: int = 100,
                 det_nms: float = 0.5, det_candidates: int = 1000, min_score: float = 0.05,
                 srm_threshold: float = 0.5, nms_rounds: int = 8, srm_kernel: int = 7,
                 sampling_ratio: int = 2, gn_groups: int = 32) -> None:
        super().__init__()
        if len(thing_classes) == 0:
            raise PanopticError('OANet needs thing_classes (the detector classes)')
        if len(anchor_sizes) != len(RPN_STRIDES):
            raise PanopticError(f'anchor_sizes needs one size per level P2..P6 '
                                f'({len(RPN_STRIDES)}), got {list(anchor_sizes)}')
        self.num_classes = num_classes
        self.thing_classes = tuple(int(c) for c in thing_classes)
        t = len(self.thing_classes)
        self.anchor_sizes = tuple(float(s) for s in anchor_sizes)
        self.anchor_ratios = tuple(float(r) for r in anchor_ratios)
        self.pre_nms_topk, self.post_nms_topk = int(pre_nms_topk), int(post_nms_topk)
        self.rpn_nms, self.det_nms = float(rpn_nms), float(det_nms)
        self.detections, self.det_candidates = int(detections), int(det_candidates)
        self.min_score, self.srm_threshold = float(min_score), float(srm_threshold)
        self.nms_rounds, self.sampling_ratio = int(nms_rounds), int(sampling_ratio)
        spec = get_backbone(backbone)
        self.normalize = PixelNormalize(spec.pixel_mean, spec.pixel_std)
        self.backbone = build_backbone(backbone, weights=backbone_weights, pretrained=pretrained,
                                       frozen_bn=frozen_bn, frozen_stages=frozen_stages)
        self.fpn = TopDownFPN(self.backbone.out_channels, fpn_channels, gn_groups)
        self.rpn_conv = nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1)
        a = len(self.anchor_ratios)
        self.rpn_logits = nn.Conv2d(fpn_channels, a, 1)
        self.rpn_deltas = nn.Conv2d(fpn_channels, 4 * a, 1)
        for m in (self.rpn_conv, self.rpn_logits, self.rpn_deltas):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        self.stuff_levels = nn.ModuleList(
            nn.Sequential(conv_gn_relu(fpn_channels, stuff_channels, 3, gn_groups),
                          conv_gn_relu(stuff_channels, stuff_channels, 3, gn_groups))
            for _ in ROI_STRIDES)
        self.stuff_head = nn.Sequential(
            conv_gn_relu(stuff_channels * len(ROI_STRIDES), stuff_channels, 3, gn_groups),
            nn.Conv2d(stuff_channels, num_classes, 1))
        self.box_fc = nn.Sequential(nn.Flatten(), nn.Linear(fpn_channels * 49, box_fc),
                                    nn.ReLU(inplace=True), nn.Linear(box_fc, box_fc),
                                    nn.ReLU(inplace=True))
        self.box_cls = nn.Linear(box_fc, t + 1)
        self.box_deltas = nn.Linear(box_fc, 4 * t)
        nn.init.normal_(self.box_cls.weight, std=0.01)
        nn.init.normal_(self.box_deltas.weight, std=0.001)
        for m in (self.box_cls, self.box_deltas):
            nn.init.zeros_(m.bias)
        layers: list[nn.Module] = []
        for i in range(mask_convs):
            layers += [nn.Conv2d(fpn_channels if i == 0 else mask_channels, mask_channels, 3,
                                 padding=1), nn.ReLU(inplace=True)]
        ch = mask_channels if mask_convs else fpn_channels
        self.mask_head = nn.Sequential(*layers, nn.ConvTranspose2d(ch, mask_channels, 2, 2),
                                       nn.ReLU(inplace=True), nn.Conv2d(mask_channels, t, 1))
        self.srm = LargeKernel(t, t, srm_kernel)

    # ----------------------------------------------------------------------------- trunk
    def forward(self, images: torch.Tensor) -> dict:
        """
        Args:
            images: ``[N, 3, H, W]`` RGB, 0-255.

        Returns:
            ``features``: FPN maps ``P2..P5`` ``[N, F, H/s, W/s]`` (RoIAlign's inputs);
            ``rpn_logits``: per level ``P2..P6`` ``[N, A, h, w]``; ``rpn_deltas``: per level
            ``[N, 4A, h, w]``; ``stuff``: ``[N, C, H/4, W/4]`` logits; ``image_size``
            ``(H, W)``; ``heads``: this module (for the objective's RoI heads).
        """
        x = self.normalize(images)
        p = self.fpn(self.backbone(x))                                  # P2..P5
        p.append(F.max_pool2d(p[-1], kernel_size=1, stride=2))          # P6
        r = [F.relu(self.rpn_conv(level)) for level in p]
        size = r[0].shape[-2:]
        stuff = torch.cat([F.interpolate(head(level), size=size, mode='bilinear',
                                         align_corners=False) if i else head(level)
                           for i, (head, level) in enumerate(zip(self.stuff_levels, r))], 1)
        return {'features': p[:len(ROI_STRIDES)],
                'rpn_logits': [self.rpn_logits(level) for level in r],
                'rpn_deltas': [self.rpn_deltas(level) for level in r],
                'stuff': self.stuff_head(stuff),
                'image_size': tuple(images.shape[-2:]), 'heads': self}

    def anchors(self, raw: dict) -> list[torch.Tensor]:
        """Per level ``[h * w * A, 4]`` anchors (order of :func:`~.boxes.flatten_level`)."""
        return [level_anchors(lg.shape[-2], lg.shape[-1], s, size, self.anchor_ratios,
                              lg.device)
                for lg, s, size in zip(raw['rpn_logits'], RPN_STRIDES, self.anchor_sizes)]

    # ------------------------------------------------------------------------ proposals
    def proposals(self, raw: dict, pre_nms_topk: int, post_nms_topk: int) -> torch.Tensor:
        """RPN proposals with static shapes: each level's ``pre_nms_topk`` best anchors
        decoded and clipped, NMS per level (IoU ``rpn_nms``), then the ``post_nms_topk`` best
        of all levels (Mask R-CNN with FPN).

        Returns:
            ``[N, K, 4]`` boxes (no gradient); slots without a proposal are all-zero boxes.
        """
        hh, ww = raw['image_size']
        boxes, scores = [], []
        for lg, dl, anc in zip(raw['rpn_logits'], raw['rpn_deltas'], self.anchors(raw)):
            lg, dl = lg.detach().float(), dl.detach().float()
            s = flatten_level(lg, 1)[..., 0]                           # [N, h w A]
            d = flatten_level(dl, 4)                                   # [N, h w A, 4]
            k = min(pre_nms_topk, s.shape[1])
            s, idx = s.topk(k, dim=1)
            b = clip_boxes(decode(d.gather(1, idx[..., None].expand(-1, -1, 4)), anc[idx]),
                           hh, ww)
            ok = ((b[..., 2] - b[..., 0]) > 0) & ((b[..., 3] - b[..., 1]) > 0)
            keep = static_nms(b, s, self.rpn_nms, self.nms_rounds, valid=ok)
            boxes.append(b)
            scores.append(torch.where(keep, s, torch.full_like(s, -1e4)))
        b, s = torch.cat(boxes, 1), torch.cat(scores, 1)
        k = min(post_nms_topk, s.shape[1])
        s, idx = s.topk(k, dim=1)
        b = b.gather(1, idx[..., None].expand(-1, -1, 4))
        return torch.where((s > -1e4)[..., None], b, torch.zeros_like(b))

    # ------------------------------------------------------------------------ RoI heads
    def box_head(self, features: list[torch.Tensor], rois: torch.Tensor,
                 static: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``rois [R, 5]`` (image index, box) -> class logits ``[R, T + 1]`` (0: background)
        and class-specific deltas ``[R, T, 4]``."""
        x = self.box_fc(multilevel_roi_align(features, ROI_STRIDES, rois, 7,
                                             self.sampling_ratio, static=static))
        return self.box_cls(x), self.box_deltas(x).view(x.shape[0], -1, 4)

    def mask_logits(self, features: list[torch.Tensor], rois: torch.Tensor,
                    static: bool) -> torch.Tensor:
        """``rois [R, 5]`` -> mask logits ``[R, T, 28, 28]``."""
        return self.mask_head(multilevel_roi_align(features, ROI_STRIDES, rois, 14,
                                                   self.sampling_ratio, static=static))

    def ranking(self, masks: torch.Tensor, classes: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
        """The ranking score map (section 3.2): ``masks [N, D, h, w]`` binary (float) instance
        masks on the stride-4 grid, ``classes [N, D]`` thing index, ``valid [N, D] bool`` ->
        ``[N, T, h, w]`` logits (softmax over ``T`` gives the scores)."""
        onehot = F.one_hot(classes.long(), len(self.thing_classes)).float()
        onehot = onehot * valid[..., None].float()
        tensor = torch.einsum('ndt,ndhw->nthw', onehot, masks).clamp(max=1)
        return self.srm(tensor)

    # --------------------------------------------------------------------------- decode
    def decode(self, raw: dict) -> dict:
        """The exportable rest of inference, static shapes (``D = detections``, grid ``h x w``
        of stride 4).

        Returns:
            ``stuff_prob``: ``[N, C, h, w]`` softmax of the stuff branch;
            ``boxes``: ``[N, D, 4]`` ``x1, y1, x2, y2`` input pixels (0 on empty slots);
            ``scores``: ``[N, D]`` class probabilities (0: empty slot), decreasing;
            ``classes``: ``[N, D] int64`` thing index;
            ``masks``: ``[N, D, 28, 28]`` mask probabilities of the detected class;
            ``rank``: ``[N, D]`` spatial ranking score of each instance (eq. 3, with the mask
            indicator 1 inside the mask), 0 for detections under ``srm_threshold``.
        """
        hh, ww = raw['image_size']
        feats = [f.float() for f in raw['features']]
        n = feats[0].shape[0]
        t = len(self.thing_classes)
        props = self.proposals(raw, self.pre_nms_topk, self.post_nms_topk)    # [N, K, 4]
        k = props.shape[1]
        rois = _with_image_index(props)
        logits, deltas = self.box_head(feats, rois, static=True)
        prob = logits.float().softmax(-1)[:, 1:].reshape(n, k * t)           # [N, K T]
        boxes = clip_boxes(decode(deltas.float().view(n, k, t, 4), props[:, :, None],
                                  BOX_WEIGHTS), hh, ww).view(n, k * t, 4)
        real = ((props[..., 2] - props[..., 0]) > 0).repeat_interleave(t, 1)
        prob = torch.where(real & (prob >= self.min_score), prob, torch.zeros_like(prob))
        m = min(self.det_candidates, k * t)
        score, idx = prob.topk(m, dim=1)
        cls = idx % t
        box = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
        keep = static_nms(box, score, self.det_nms, self.nms_rounds, classes=cls,
                          valid=score > 0)
        score = torch.where(keep, score, torch.zeros_like(score))
        d = min(self.detections, m)
        score, pick = score.topk(d, dim=1)
        cls = cls.gather(1, pick)
        box = box.gather(1, pick[..., None].expand(-1, -1, 4))
        alive = score > 0
        box = torch.where(alive[..., None], box, torch.zeros_like(box))
        cls = torch.where(alive, cls, torch.zeros_like(cls))
        det_rois = _with_image_index(box)
        mlog = self.mask_logits(feats, det_rois, static=True).view(n, d, t, 28, 28)
        masks = mlog.float().gather(2, cls[:, :, None, None, None].expand(-1, -1, 1, 28, 28))
        masks = torch.sigmoid(masks[:, :, 0])
        stuff = raw['stuff'].float()
        size = stuff.shape[-2:]
        binary = (paste_masks(masks, box, size, STRIDE) > 0.5).float()     # [N, D, h, w]
        ranked = alive & (score >= self.srm_threshold)
        srm = self.ranking(binary, cls, ranked).softmax(1)                 # [N, T, h, w]
        per_class = torch.einsum('ndhw,nthw->ndt', binary, srm)
        rank = (per_class.gather(2, cls[..., None])[..., 0]
                / binary.flatten(2).sum(-1).clamp(min=1))
        return {'stuff_prob': stuff.softmax(1), 'boxes': box, 'scores': score,
                'classes': cls, 'masks': masks,
                'rank': torch.where(ranked, rank, torch.zeros_like(rank))}

    def infer(self, images: torch.Tensor) -> dict:
        """``decode(forward(images))``: what every engine computes."""
        return self.decode(self(images))
