"""The dense-detections network (paper section 4): ResNet-FPN and a unified panoptic head.

``forward`` returns raw tensors only; :mod:`.postprocess` turns them into a
:class:`~panoptic_ros.models.result.PanopticResult`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from panoptic_ros.models.backbones import build_backbone, get_backbone
from panoptic_ros.models.backbones.norm import PixelNormalize
from panoptic_ros.models.necks.fpn import FPN
from panoptic_ros.models.dense_detections.decode import dense_boxes, level_candidates


def _tower(channels: int, convs: int, groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1),
                   nn.GroupNorm(groups, channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UnifiedPanopticHead(nn.Module):
    """Per-level dense boxes and global levelness/semantics (section 4.2, figure 3).

    Args:
        channels: FPN channels.
        num_things: box classes (thing classes).
        num_classes: semantic classes (stuff + things).
        strides: FPN strides, finest first.
        tower_convs: Conv+GroupNorm+ReLU blocks per tower (4 in the paper).
    """

    def __init__(self, *, channels: int, num_things: int, num_classes: int,
                 strides: Sequence[int], tower_convs: int = 4, groups: int = 32,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        self.strides = tuple(strides)
        self.loc_tower = _tower(channels, tower_convs, groups)
        self.sem_tower = _tower(channels, tower_convs, groups)
        self.box_reg = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.box_cls = nn.Conv2d(channels, num_things, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(len(self.strides)))
        # one layer each on the concatenated, upsampled tower features (1x1: the concatenation
        # has len(strides) * channels channels at 1/4 resolution)
        self.levelness = nn.Conv2d(channels * len(self.strides), len(self.strides) + 1, 1)
        self.semantic = nn.Conv2d(channels * len(self.strides), num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.box_cls.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, features: list[torch.Tensor], image_size: tuple[int, int]) -> dict:
        """
        Args:
            features: FPN maps ``[N, channels, H/s, W/s]`` for each stride.
            image_size: ``(H, W)`` of the network input.

        Returns:
            ``box_reg``: per level ``[N, 4, h, w]`` distances ``l, t, r, b`` in pixels (>= 0);
            ``centerness``: per level ``[N, 1, h, w]`` logits; ``box_cls``: per level
            ``[N, T, h, w]`` logits; ``levelness``: ``[N, L + 1, H/4, W/4]`` logits (0 =
            background); ``semantic``: ``[N, C, H/4, W/4]`` logits.
        """
        size = (math.ceil(image_size[0] / 4), math.ceil(image_size[1] / 4))
        box_reg, centerness, box_cls, loc_up, sem_up = [], [], [], [], []
        for i, (f, stride) in enumerate(zip(features, self.strides)):
            loc = self.loc_tower(f)
            sem = self.sem_tower(f)
            box_reg.append(F.relu(self.box_reg(loc) * self.scales[i]) * stride)
            centerness.append(self.centerness(loc))
            box_cls.append(self.box_cls(sem))
            loc_up.append(F.interpolate(loc, size=size, mode='bilinear', align_corners=False))
            sem_up.append(F.interpolate(sem, size=size, mode='bilinear', align_corners=False))
        return {'box_reg': box_reg, 'centerness': centerness, 'box_cls': box_cls,
                'levelness': self.levelness(torch.cat(loc_up, 1)),
                'semantic': self.semantic(torch.cat(sem_up, 1))}


class DenseDetections(nn.Module):
    """Backbone-FPN with the unified panoptic head; the backbone's input normalisation inside
    the graph.

    Args:
        num_classes: semantic classes.
        thing_classes: semantic class id of each box class (``[T]``), e.g. Cityscapes
            trainIds 11-18.
        backbone: a name from :mod:`panoptic_ros.models.backbones` (ResNet-50 in the paper).
        backbone_weights: ImageNet weights file in the backbone's format, or None.
        pretrained: start from ImageNet weights (``backbone_weights`` or those the backbone
            ships with); False trains the backbone from scratch.
        fpn_channels: 256 in the paper.
        tower_convs: blocks per head tower (4 in the paper).
        frozen_bn: frozen batch norm in the backbone (the usual choice with ImageNet weights);
            default: frozen when pretrained, trainable from scratch.
        frozen_stages: backbone stages not trained (see
            :func:`~panoptic_ros.models.backbones.build_backbone`; default 1 when pretrained:
            the stem, as the paper's detectron-style ResNet).
        candidate_threshold, pre_nms_topk: detection candidates kept by :meth:`decode`
            (section 4.1; FCOS settings).
    """

    output_names = ('dense_boxes', 'semantic_prob', 'cand_boxes', 'cand_scores', 'cand_classes')

    def __init__(self, *, num_classes: int, thing_classes: Sequence[int],
                 backbone: str = 'resnet50', backbone_weights: str | None = None,
                 pretrained: bool = False, fpn_channels: int = 256, tower_convs: int = 4,
                 frozen_bn: bool | None = None, frozen_stages: int | None = None,
                 candidate_threshold: float = 0.05, pre_nms_topk: int = 1000) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer('thing_classes', torch.tensor(list(thing_classes), dtype=torch.long),
                             persistent=False)
        spec = get_backbone(backbone)
        self.normalize = PixelNormalize(spec.pixel_mean, spec.pixel_std)
        self.candidate_threshold = candidate_threshold
        self.pre_nms_topk = pre_nms_topk
        self.backbone = build_backbone(backbone, weights=backbone_weights, pretrained=pretrained,
                                       frozen_bn=frozen_bn, frozen_stages=frozen_stages)
        self.fpn = FPN(self.backbone.out_channels, fpn_channels)
        self.strides = tuple(self.fpn.strides)
        self.head = UnifiedPanopticHead(channels=fpn_channels, num_things=len(thing_classes),
                                        num_classes=num_classes, strides=self.strides,
                                        tower_convs=tower_convs)

    def forward(self, images: torch.Tensor) -> dict:
        """
        Args:
            images: ``[N, 3, H, W]`` RGB, 0-255 (any float or uint8 dtype).

        Returns:
            The raw outputs of :class:`UnifiedPanopticHead`.
        """
        x = self.normalize(images)
        return self.head(self.fpn(self.backbone(x)), tuple(images.shape[-2:]))

    def decode(self, raw: dict) -> dict:
        """The exportable part of inference: raw outputs to static-shape engine outputs.

        Returns:
            ``dense_boxes``: ``[N, 4, H/4, W/4]`` each pixel's box ``x1, y1, x2, y2`` (eq. 14);
            ``semantic_prob``: ``[N, C, H/4, W/4]`` class probabilities;
            ``cand_boxes``: ``[N, K, 4]``, ``cand_scores``: ``[N, K]`` (0: empty slot),
            ``cand_classes``: ``[N, K] int64`` box class: the per-level top detection
            candidates (``K = sum_i min(pre_nms_topk, T h_i w_i)``).
        """
        boxes, scores, classes = level_candidates(
            raw['box_reg'], raw['box_cls'], raw['centerness'], self.strides,
            self.candidate_threshold, self.pre_nms_topk)
        return {'dense_boxes': dense_boxes([r.float() for r in raw['box_reg']],
                                           raw['levelness'].float()),
                'semantic_prob': raw['semantic'].float().softmax(1),
                'cand_boxes': boxes, 'cand_scores': scores, 'cand_classes': classes}

    def infer(self, images: torch.Tensor) -> dict:
        """``decode(forward(images))``: what every engine computes."""
        return self.decode(self(images))
